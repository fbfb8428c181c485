"""Explore's "Start from your own image" box: load an image (button or a drop on the panel), see it fitted
(crop, pad or stretch), project it into the model on a worker thread with the reconstruction growing beside the
target, then carry on from the result with every slider. Cancel keeps the best latent found so far."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.engine.blending import BlendSession
from studio.engine.projection import (
    ProjectionOptions,
    ProjectionProgress,
    ProjectionResult,
    default_starts,
    file_origin,
    load_target,
    project,
)
from studio.engine.recipe import note_projection, read_recipe
from studio.engine.session import Session
from studio.ui.controller import StudioController
from studio.ui.images import to_qimage
from studio.ui.workers import Task
from training.dataset import FIT_MODES, IMAGE_EXTENSIONS

PREVIEW = 128
DEFAULT_STEPS = 300
FITTED = {"crop": "cropped", "pad": "padded", "stretch": "stretched"}


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProjectBox(QGroupBox):
    """Projection controls; `drop_target` (the Explore panel) takes image drops for it."""

    def __init__(self, controller: StudioController, drop_target: QWidget, parent: QWidget | None = None):
        super().__init__("Start from your own image", parent)
        self.controller = controller
        self.path: Path | None = None
        self.target = None  # uint8 RGB at the model's resolution
        self.task: Task | None = None
        self.result: ProjectionResult | None = None
        self._session: Session | None = None

        self.open_button = QPushButton("Project image…", toolTip="Find the nearest image this model can make")
        self.open_button.clicked.connect(self.open_dialog)
        self.fit = QComboBox(toolTip="How a non-square image becomes square")
        self.fit.addItems(list(FIT_MODES))
        self.fit.currentTextChanged.connect(lambda _mode: self._reload())
        self.steps = QSpinBox(minimum=20, maximum=5000, value=DEFAULT_STEPS, singleStep=50, suffix=" steps")
        self.starts = QSpinBox(minimum=1, maximum=16, value=ProjectionOptions.starts, suffix=" starts")
        self.starts.setToolTip(
            "Starting points optimised side by side; the nearest result is kept. More find hard images more "
            "often and take longer on a CPU (4 took 2.5-3 times as long as 1 at 64 px, 4.2 times at 256 px), so "
            "each model opens with 4 on a GPU or at up to 64 px, else 1"
        )
        self.w_plus = QCheckBox("Per layer (w+)", checked=True)
        self.w_plus.setToolTip("Finish by letting every layer take its own latent: closer, a little less editable")
        self.target_view, self.result_view = QLabel(), QLabel()
        for view, text in ((self.target_view, "Target"), (self.result_view, "Reconstruction")):
            view.setFixedSize(PREVIEW, PREVIEW)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view.setObjectName("hint")
            view.setText(text)
            view.setToolTip(text)
        self.progress = QProgressBar(textVisible=False)
        self.status = QLabel("Drop an image on this panel, or choose one.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.start_button = QPushButton("Project", enabled=False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", enabled=False, toolTip="Stop and keep the best result so far")
        self.cancel_button.clicked.connect(self.cancel)

        options = QHBoxLayout()
        options.addWidget(self.open_button)
        options.addWidget(self.fit)
        options.addWidget(self.steps)
        options.addWidget(self.starts)
        views = QGridLayout()
        views.addWidget(self.target_view, 0, 0)
        views.addWidget(self.result_view, 0, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.w_plus, 1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(options)
        layout.addLayout(views)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        drop_target.setAcceptDrops(True)
        drop_target.installEventFilter(self)
        controller.model_changed.connect(self._model_changed)

    # --- loading ----------------------------------------------------------------------------------------

    def open_dialog(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in sorted(IMAGE_EXTENSIONS))
        path, _ = QFileDialog.getOpenFileName(self, "Project an image", str(Path.home()), f"Images ({patterns})")
        if path:
            self.load(Path(path))

    def load(self, path: Path) -> bool:
        """Show `path` fitted to the model as the target; False (and a message) when it cannot be used."""
        session = self.controller.session
        if session is None:
            self.controller.message.emit("info", "Open a model first, then project an image into it.")
            return False
        try:
            target = load_target(path, session.resolution, self.fit.currentText())
        except ValueError as exc:
            self.controller.message.emit("error", str(exc))
            return False
        self.path, self.target = path, target
        self._show(self.target_view, target)
        self.result_view.clear()
        self.result_view.setText("Reconstruction")
        self.progress.setValue(0)
        fitted = FITTED[self.fit.currentText()]
        self.status.setText(f"{path.name}, {fitted} to {session.resolution} px. Press Project.")
        self.start_button.setEnabled(not self.running())
        return True

    def _model_changed(self) -> None:
        """Another model: starts that suit it, and the target fitted to it."""
        session = self.controller.session
        if session is not None and not self.running():
            self.starts.setValue(default_starts(session.device, session.resolution))
        self._reload()

    def _reload(self) -> None:
        """A new fit or model: the target is fitted again (not while a projection of it runs)."""
        if self.path is not None and not self.running():
            self.load(self.path)

    # --- projecting -------------------------------------------------------------------------------------

    def running(self) -> bool:
        return self.task is not None and not self.task.ended

    def start(self) -> Task | None:
        session = self.controller.session
        if session is None or self.target is None or self.running():
            return None
        options = ProjectionOptions(
            steps=self.steps.value(), w_plus=self.w_plus.isChecked(), starts=self.starts.value()
        )
        path, fit, target = self.path, self.fit.currentText(), self.target
        self._session, self.result = session, None

        def work(task: Task) -> tuple[ProjectionResult, dict]:
            G = session.blended_generator() if isinstance(session, BlendSession) else session.G
            result = project(G, target, options, progress=task.emit_item, cancel=task.cancelled)
            return result, file_origin(path, fit, options, result)

        self.task = self.controller.tasks.start(
            work, on_finished=self._finished, on_failed=self._failed, on_item=self._progressed
        )
        self.progress.setRange(0, options.steps)
        self.progress.setValue(0)
        self.status.setText("Starting…")
        self._set_running(True)
        return self.task

    def cancel(self) -> None:
        if self.running():
            self.task.cancel()
            self.status.setText("Stopping; the best result so far is kept…")

    def _progressed(self, step: ProjectionProgress) -> None:
        self.progress.setValue(step.step)
        self.status.setText(
            f"Step {step.step} of {step.steps} ({step.phase}) · {step.steps_per_s:.1f} steps/s · "
            f"ETA {_duration(step.eta_s)} · perceptual {step.perceptual:.3f}"
        )
        if step.image is not None:
            self._show(self.result_view, step.image)

    def _finished(self, out: tuple[ProjectionResult, dict]) -> None:
        result, origin = out
        self._set_running(False)
        self.result = result
        self._show(self.result_view, result.image)
        session = self._session
        if session is not self.controller.session:
            self.status.setText("The model changed during the projection; its result was not applied.")
            return
        state = result.state(session.model_id, self.controller.state)
        note_projection(state.w, origin)
        self.controller.commit(state)
        stopped = "Stopped" if result.cancelled else "Done"
        self.status.setText(
            f"{stopped} after {result.steps_done} steps in {_duration(result.seconds)}: PSNR {result.psnr:.1f} dB, "
            f"perceptual {result.perceptual:.3f}. The sliders now edit the projection."
        )

    def _failed(self, text: str) -> None:
        self._set_running(False)
        self.status.setText("The projection failed.")
        self.controller.message.emit("error", f"Projection failed: {text}")

    def _set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.start_button.setEnabled(not running and self.target is not None)
        for widget in (self.open_button, self.fit, self.steps, self.starts, self.w_plus):
            widget.setEnabled(not running)

    @staticmethod
    def _show(view: QLabel, image) -> None:
        view.setPixmap(QPixmap.fromImage(to_qimage(image)).scaled(
            PREVIEW, PREVIEW, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        ))

    # --- drops on the panel -----------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        """An image without a recipe dropped on the panel is loaded here; anything else (models, exported images,
        folders) goes on to the main window as before."""
        if event.type() in (QEvent.Type.DragEnter, QEvent.Type.Drop):
            path = _projectable(event.mimeData().urls())
            if path is None:
                event.ignore()
                return False
            event.acceptProposedAction()
            if event.type() == QEvent.Type.Drop:
                self.load(path)
            return True
        return super().eventFilter(watched, event)


def _projectable(urls) -> Path | None:
    """The one local image file of a drop that carries no GAN Studio recipe (those restore their state)."""
    if len(urls) != 1 or not urls[0].isLocalFile():
        return None
    path = Path(urls[0].toLocalFile())
    if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file() or read_recipe(path) is not None:
        return None
    return path
