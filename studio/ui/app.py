"""Entry points of the desktop app: `run_app` for people, `take_screenshots` for docs and checks."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QCoreApplication, QEvent, Qt
from PySide6.QtWidgets import QApplication

from studio.engine.datasets import DatasetStore
from studio.ui import settings
from studio.ui.main_window import MainWindow
from studio.ui.theme import app_icon, apply_theme

SCREENSHOT_SIZE = (1440, 900)


def create_application(argv: list[str]) -> QApplication:
    """The QApplication, themed and named (names decide where Qt keeps its own caches)."""
    app = QApplication.instance()
    if app is None:
        QCoreApplication.setOrganizationName("GAN Studio")
        QCoreApplication.setApplicationName("GAN Studio")
        QApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(["gan-studio", *argv])
    app.setWindowIcon(app_icon())
    theme = str(settings.app_settings().value(settings.THEME, "dark"))
    if app.property("ganStudioTheme") != theme:  # restyling every widget again costs a second
        apply_theme(app, theme)
    return app


def run_app(argv: list[str]) -> int:
    """Show the main window; `argv` (after the program name) may name models or PNGs to open."""
    app = create_application(argv)
    window = MainWindow()
    app.aboutToQuit.connect(window.close)  # a quit from outside the window still saves and stops cleanly
    window.show()
    window.open_initial_model()
    files = [Path(arg) for arg in argv if not arg.startswith("-") and Path(arg).is_file()]
    if files:
        window.open_paths(files)
    return app.exec()


def take_screenshots(out_dir: Path) -> list[Path]:
    """Open the window offscreen on the default model, visit each panel once its renders have finished, and
    save models.png, explore.png, mix.png and export.png; then dataset.png (a real import of procedural
    images) and train.png (a short real run of a tiny network on them), both kept in a temporary folder, not
    in the user's data. Returns the written paths."""
    if QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = create_application([])
    window = MainWindow(persist_layout=False)
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    window.open_initial_model()
    c = window.controller
    _wait(app, lambda: not window.busy() and not c.loading and (c.session is None or c.settled()))
    if c.session is not None:
        _wait(app, lambda: bool(c.directions) and not window.explore_panel.grid_busy())

    written = []

    def shoot(name: str, dock: str, prepare: Callable[[], None] | None = None) -> None:
        window.docks[dock].show()
        window.docks[dock].raise_()
        if prepare is not None and c.session is not None:
            prepare()
        _wait(app, lambda: c.session is None or (c.settled() and not window.busy()))
        path = out_dir / f"{name}.png"
        window.grab().save(str(path))
        written.append(path)

    shoot("models", "Models")
    shoot("explore", "Explore")
    shoot("mix", "Mix", window.mix_panel.show_example)
    shoot("export", "Export")
    with tempfile.TemporaryDirectory(prefix="gan-studio-shots-") as scratch:
        _shoot_dataset_and_train(app, window, Path(scratch), shoot)
    window.close()
    window.deleteLater()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return written


_SHOT_RESOLUTION = 32
# A network small enough to show a live run within seconds on a CPU.
_TINY_RUN = {
    "channel_base": 256, "channel_max": 32, "z_dim": 32, "w_dim": 32, "map_layers": 2, "batch": 8,
    "kimg": 1.0, "time_budget_s": None, "sample_kimg": 0.04, "snap_kimg": 0.1, "progress_interval_s": 0.25,
    "metrics_kimg": 0.08, "metrics_n": 40,
}


def _shoot_dataset_and_train(app: QApplication, window: MainWindow, scratch: Path, shoot) -> None:
    store = DatasetStore(scratch / "datasets")
    dataset, train = window.dataset_panel, window.train_panel
    dataset.store = train.datasets = store
    train.runs_root = scratch / "runs"
    train.environment = {"OMP_NUM_THREADS": "1"}  # a demo run beside the GUI: no threads fighting for cores
    window.docks["Dataset"].show()
    window.docks["Dataset"].raise_()
    dataset.resolution.setCurrentIndex(dataset.resolution.findData(_SHOT_RESOLUTION))
    window.open_paths([_example_images(scratch / "my drawings")])
    _wait(app, lambda: dataset.report is not None and not dataset.busy())
    shoot("dataset", "Dataset")
    dataset.prepare("my drawings")
    _wait(app, lambda: dataset.dataset == "my drawings" and not dataset.busy())
    window.docks["Train"].show()
    window.docks["Train"].raise_()
    train.select(base="scratch", dataset="my drawings")
    train.overrides = dict(_TINY_RUN)
    train.start()
    _wait(app, lambda: not train.running() or (len(train.samples()) >= 4 and train.fd.points() >= 2), timeout_s=300)
    if train.failure is not None or len(train.samples()) < 4:
        raise ScreenshotError(f"the demo training run failed: {train.failure or 'it ended without samples'}")
    shoot("train", "Train")
    train.stop()
    _wait(app, lambda: not train.running())


def _example_images(folder: Path) -> Path:
    """Forty procedural 'drawings' (soft discs on gradients), one exact copy and two broken files."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:96, :128] / 96.0
    for i in range(40):
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        image = top * (1 - yy[..., None]) + bottom * yy[..., None]
        for _ in range(3):
            cx, cy, r = rng.uniform(0.2, 1.1), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.3)
            inside = np.clip((r - np.hypot(xx - cx, yy - cy)) * 40, 0, 1)[..., None]
            image = image * (1 - inside) + rng.uniform(0, 255, 3) * inside
        Image.fromarray(image.astype(np.uint8)).save(folder / f"drawing-{i:02d}.png")
    (folder / "drawing-00 copy.png").write_bytes((folder / "drawing-00.png").read_bytes())
    (folder / "unfinished.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("remember to scan the rest of the sketchbook\n")
    return folder


class ScreenshotError(RuntimeError):
    """The window did not reach the state a screenshot should show (a render hung, the demo run failed)."""


def _wait(app: QApplication, condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Let the event loop run until `condition()` holds (renders land as queued signals)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ScreenshotError(f"gave up after {timeout_s:g} s waiting for the window to finish its work")
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()
