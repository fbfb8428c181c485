"""Export panel: the current image, batches of seeds, contact sheets, interpolation videos and latents.
Every export runs off the GUI thread, one at a time, with progress and Cancel; errors say what to do."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.engine.export import (
    EASINGS,
    FORMATS,
    UPSCALES,
    export_batch,
    export_grid,
    export_image,
    export_latents,
    export_video,
)
from studio.engine.state import SEED_LIMIT, RenderState
from studio.ui import settings
from studio.ui.controller import StudioController
from studio.ui.widgets.scroll_column import scroll_column
from studio.ui.workers import Task, TaskRunner

FORMAT_LABELS = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "tiff": "TIFF"}
LAST_FOLDER = "export/folder"


class ExportPanel(QWidget):
    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self._runner = TaskRunner(max_threads=1, parent=self)
        self._task: Task | None = None
        self.last_written: object = None

        scroll = scroll_column(self._image_box(), self._seeds_box(), self._video_box(), self._latents_box())

        self.progress = QProgressBar()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        bar = QHBoxLayout()
        bar.addWidget(self.progress, 1)
        bar.addWidget(self.cancel_button)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 6)
        outer.addWidget(scroll, 1)
        outer.addLayout(bar)
        outer.addWidget(self.status)
        self._set_running(False)

        controller.model_changed.connect(lambda: self.setEnabled(controller.session is not None))
        self.setEnabled(controller.session is not None)

    # --- construction -----------------------------------------------------------------------------------

    def _image_box(self) -> QGroupBox:
        self.format = QComboBox()
        for fmt in FORMATS:
            self.format.addItem(FORMAT_LABELS[fmt], fmt)
        self.upscale = QComboBox()
        for factor in UPSCALES:
            self.upscale.addItem(f"× {factor}", factor)
        self.upscale.setToolTip("Lanczos upscaling of the rendered image")
        button = QPushButton("Export image…")
        button.clicked.connect(self.export_current_dialog)
        box = QGroupBox("Current image")
        form = QFormLayout(box)
        form.addRow("Format", self.format)
        form.addRow("Upscale", self.upscale)
        form.addRow(self._hint("Every format carries the recipe: drop the file back to restore the image."))
        form.addRow(button)
        self._buttons = [button]
        return box

    def _seeds_box(self) -> QGroupBox:
        self.first_seed = QSpinBox(minimum=0, maximum=SEED_LIMIT)
        self.count = QSpinBox(minimum=1, maximum=1000, value=16)
        self.columns = QSpinBox(minimum=0, maximum=32, specialValueText="auto")
        batch = QPushButton("Export images…")
        batch.setToolTip("One file per seed, in the format and upscale chosen above")
        batch.clicked.connect(self._batch_dialog)
        sheet = QPushButton("Export contact sheet…")
        sheet.setToolTip("All the seeds on one captioned PNG")
        sheet.clicked.connect(self._sheet_dialog)
        buttons = QHBoxLayout()
        buttons.addWidget(batch)
        buttons.addWidget(sheet)
        box = QGroupBox("Seeds")
        form = QFormLayout(box)
        form.addRow("First seed", self.first_seed)
        form.addRow("Count", self.count)
        form.addRow("Sheet columns", self.columns)
        form.addRow(self._hint("The current edits, truncation, noise and mixing apply to every seed."))
        form.addRow(buttons)
        self._buttons += [batch, sheet]
        return box

    def _video_box(self) -> QGroupBox:
        self.keyframes = QComboBox()
        self.keyframes.addItem("Favourites", "favourites")
        self.keyframes.addItem("Random seeds", "random")
        self.random_keys = QSpinBox(minimum=2, maximum=64, value=4, suffix=" keyframes")
        self.keyframes.currentIndexChanged.connect(
            lambda _i: self.random_keys.setEnabled(self.keyframes.currentData() == "random")
        )
        self.random_keys.setEnabled(False)
        self.seconds = QDoubleSpinBox(minimum=0.5, maximum=600, value=6.0, suffix=" s", decimals=1)
        self.fps = QSpinBox(minimum=1, maximum=60, value=24, suffix=" fps")
        self.easing = QComboBox()
        self.easing.addItems(list(EASINGS))
        self.easing.setToolTip("smooth slows down at each keyframe")
        self.loop = QCheckBox("Loop back to the first keyframe")
        self.video_format = QComboBox()
        self.video_format.addItem("MP4 (H.264)", ".mp4")
        self.video_format.addItem("GIF", ".gif")
        keys = QHBoxLayout()
        keys.addWidget(self.keyframes, 1)
        keys.addWidget(self.random_keys)
        timing = QHBoxLayout()
        timing.addWidget(self.seconds)
        timing.addWidget(self.fps)
        button = QPushButton("Export video…")
        button.clicked.connect(self._video_dialog)
        box = QGroupBox("Interpolation video")
        form = QFormLayout(box)
        form.addRow("Through", keys)
        form.addRow("Length", timing)
        form.addRow("Easing", self.easing)
        form.addRow("", self.loop)
        form.addRow("Format", self.video_format)
        form.addRow(button)
        self._buttons.append(button)
        return box

    def _latents_box(self) -> QGroupBox:
        self.latents_of = QComboBox()
        self.latents_of.addItem("the current image", "current")
        self.latents_of.addItem("the favourites", "favourites")
        self.latents_of.addItem("the seeds above", "seeds")
        button = QPushButton("Export latents (.npy)…")
        button.clicked.connect(self._latents_dialog)
        box = QGroupBox("Latents")
        form = QFormLayout(box)
        form.addRow("Of", self.latents_of)
        form.addRow(self._hint("w+ as float32 [N, layers, w_dim], exactly as rendered."))
        form.addRow(button)
        self._buttons.append(button)
        return box

    @staticmethod
    def _hint(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("hint")
        label.setWordWrap(True)
        return label

    # --- dialogs (ask where, then export) ----------------------------------------------------------------

    def _folder(self) -> Path:
        saved = settings.app_settings().value(LAST_FOLDER, "")
        if saved and Path(str(saved)).is_dir():
            return Path(str(saved))
        pictures = Path.home() / "Pictures"
        return pictures if pictures.is_dir() else Path.home()

    def _remember(self, folder: Path) -> None:
        settings.app_settings().setValue(LAST_FOLDER, str(folder))

    def _stem(self) -> str:
        c = self.controller
        name = c.entry.name if c.entry is not None else "image"
        return f"{name}-seed{c.state.seed if c.state is not None else 0}"

    def _ask_file(self, title: str, name: str, filter_text: str) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self, title, str(self._folder() / name), filter_text)
        if not path:
            return None
        self._remember(Path(path).parent)
        return Path(path)

    def export_current_dialog(self) -> None:
        if self.controller.state is None:
            return
        fmt = self.format.currentData()
        suffix = FORMATS[fmt]
        path = self._ask_file("Export image", self._stem() + suffix, f"{FORMAT_LABELS[fmt]} (*{suffix})")
        if path:
            self.export_current(path)

    def _batch_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export images into", str(self._folder()))
        if folder:
            self._remember(Path(folder))
            self.export_seeds(Path(folder))

    def _sheet_dialog(self) -> None:
        path = self._ask_file("Export contact sheet", f"{self._stem()}-sheet.png", "PNG (*.png)")
        if path:
            self.export_sheet(path)

    def _video_dialog(self) -> None:
        suffix = self.video_format.currentData()
        path = self._ask_file("Export video", f"{self._stem()}-video{suffix}", f"Video (*{suffix})")
        if path:
            self.export_video(path)

    def _latents_dialog(self) -> None:
        path = self._ask_file("Export latents", f"{self._stem()}-latents.npy", "NumPy array (*.npy)")
        if path:
            self.export_latents(path)

    # --- exports (also what tests drive) -----------------------------------------------------------------

    def export_current(self, path: Path) -> Task | None:
        c = self.controller
        session, state, entry, shown = c.session, c.state, c.entry, c.full_image(c.state)
        fmt, upscale = self.format.currentData(), self.upscale.currentData()
        return self._start(
            "Saving the image",
            lambda task: export_image(
                shown if shown is not None else session.render(state), path, fmt, upscale, state, entry
            ),
        )

    def _seed_states(self) -> list[RenderState]:
        state = self.controller.state
        first = self.first_seed.value()
        last = min(first + self.count.value(), SEED_LIMIT + 1)
        return [state.replace(seed=seed, w=None) for seed in range(first, last)]

    def export_seeds(self, folder: Path) -> Task | None:
        session, state = self.controller.session, self.controller.state
        seeds = [s.seed for s in self._seed_states()]
        fmt, upscale = self.format.currentData(), self.upscale.currentData()
        return self._start(
            f"Exporting {len(seeds)} images",
            lambda task: export_batch(
                session, seeds, state, folder, task.progress, task.cancelled, fmt, upscale
            ),
        )

    def export_sheet(self, path: Path) -> Task | None:
        session, states = self.controller.session, self._seed_states()
        columns = self.columns.value() or None
        return self._start(
            "Rendering the contact sheet",
            lambda task: export_grid(session, states, path, columns, task.progress, task.cancelled),
        )

    def video_keyframes(self) -> list[RenderState]:
        state = self.controller.state
        if self.keyframes.currentData() == "favourites":
            return list(self.controller.favourites)
        count = self.random_keys.value()
        return [state.replace(seed=random.randrange(SEED_LIMIT), w=None) for _ in range(count)]

    def export_video(self, path: Path) -> Task | None:
        keys = self.video_keyframes()
        if len(keys) < 2:
            self._fail("A video needs two keyframes or more: bookmark images with F, or choose random seeds.")
            return None
        session = self.controller.session
        seconds, fps = self.seconds.value(), self.fps.value()
        easing, loop = self.easing.currentText(), self.loop.isChecked()
        return self._start(
            "Rendering the video",
            lambda task: export_video(
                session, keys, path, seconds, fps, easing, loop, task.progress, task.cancelled
            ),
        )

    def export_latents(self, path: Path) -> Task | None:
        which = self.latents_of.currentData()
        states = {
            "current": [self.controller.state],
            "favourites": list(self.controller.favourites),
            "seeds": self._seed_states(),
        }[which]
        if not states:
            self._fail("There are no favourites yet: bookmark images with F first.")
            return None
        session = self.controller.session
        return self._start("Saving latents", lambda task: export_latents(session, states, path))

    # --- running ----------------------------------------------------------------------------------------

    def _start(self, title: str, work: Callable[[Task], object]) -> Task | None:
        if self.controller.session is None or self.controller.state is None:
            return None
        if self.busy():
            self._fail("Another export is still running: wait for it or cancel it.")
            return None
        self._set_running(True)
        self.status.setStyleSheet("")
        self.status.setText(f"{title}…")
        self._task = self._runner.start(
            work, on_finished=self._finished, on_failed=self._fail, on_progress=self._progressed
        )
        return self._task

    def _progressed(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if message:
            self.status.setText(message)

    def _finished(self, written: object) -> None:
        cancelled = self._task is not None and self._task.cancelled()
        self._set_running(False)
        self.last_written = written
        if isinstance(written, list):
            where = f"{len(written)} files in {written[0].parent}" if written else ""
        else:
            where = str(written) if written is not None else ""
        if cancelled:
            kept = f"; kept the {where} finished before." if where else "; nothing saved."
            self.status.setText("Cancelled" + kept)
            return
        self.status.setText(f"Saved {where}")
        self.controller.message.emit("info", f"Saved {where}")

    def _fail(self, text: str) -> None:
        self._set_running(False)
        self.status.setStyleSheet("color: #e0707a;")
        self.status.setText(text)
        self.controller.message.emit("error", text)

    def _set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.progress.setRange(0, 0)
        for button in self._buttons:
            button.setEnabled(not running)
        if not running:
            self._task = None

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.status.setText("Cancelling…")

    def busy(self) -> bool:
        return self._task is not None and not self._task.ended

    def shutdown(self) -> None:
        self._runner.shutdown()
