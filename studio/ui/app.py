"""Entry points of the desktop app: `run_app` for people, `take_screenshots` for docs and checks."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, Qt
from PySide6.QtWidgets import QApplication

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
    save models.png, explore.png, mix.png and export.png; returns the written paths."""
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
    window.close()
    window.deleteLater()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return written


def _wait(app: QApplication, condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """Let the event loop run until `condition()` holds (renders land as queued signals)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            print("take_screenshots: gave up waiting for renders", file=sys.stderr)
            return
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()
