"""Timeline panel: keyframes of whole images on a time axis, scrubbing, real-time playback, project files and
background exports (MP4 with the timeline inside, GIF, PNG sequence).

Playback renders previews on a worker thread and always asks for the frame of *now*: when a frame takes longer
than 1/fps, the frames in between are skipped rather than shown late. Clicking a keyframe shows it in Explore and
keeps it in step with every change made there, until the playhead is moved or playback starts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.engine.timeline import EASINGS, MAX_DURATION, MAX_FPS, Animator, Timeline
from studio.engine.timeline_export import MAX_SIZE, MP4_BLOCK, export_timeline, read_timeline, save_timeline
from studio.ui import settings
from studio.ui.controller import StudioController
from studio.ui.widgets.timeline_strip import TimelineStrip
from studio.ui.workers import Task, TaskRunner

THUMB_PX = 80
EXPORT_FORMATS = (("MP4 (H.264)", ".mp4"), ("GIF", ".gif"), ("PNG sequence", ""))
LAST_FOLDER = "timeline/folder"


class TimelinePanel(QWidget):
    frame_ready = Signal(object, str)  # uint8 RGB frame and a caption, for the canvas

    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.timeline = Timeline()
        self.editing: int | None = None  # the keyframe that follows the changes made in Explore
        self.frames_shown = 0  # playback frames that reached the canvas (the rest were skipped)
        self.last_written: Path | None = None
        self._animator: Animator | None = None
        self._frame_task: Task | None = None
        self._wanted: tuple[float, bool] | None = None
        self._thumbs_task: Task | None = None
        self._frames = TaskRunner(max_threads=1, parent=self)
        self._exports = TaskRunner(max_threads=1, parent=self)
        self._export_task: Task | None = None
        self._clock = QElapsedTimer()
        self._play_from = 0.0
        self._ticker = QTimer(self, timeout=self._tick)
        self._ticker.setTimerType(Qt.TimerType.PreciseTimer)

        self.strip = TimelineStrip()
        self.strip.snap = lambda t: self.timeline.snap(t)
        self.strip.scrubbed.connect(lambda t: self.seek(t, preview=True))
        self.strip.scrub_finished.connect(lambda t: self.seek(t, preview=False))
        self.strip.keyframe_clicked.connect(self.edit_keyframe)
        self.strip.keyframe_moved.connect(self.move_keyframe)

        self.add_button = QPushButton("Add current image")
        self.add_button.setToolTip("Make the image in Explore a keyframe at the playhead (replacing one there)")
        self.add_button.clicked.connect(self.add_current)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(lambda on: self.play() if on else self.pause())
        self.time_label = QLabel()
        self.easing = QComboBox()
        self.easing.addItems(list(EASINGS))
        self.easing.setToolTip("How the selected keyframe moves on to the next one")
        self.easing.currentTextChanged.connect(self._set_easing)
        self.edit_label = QLabel()
        self.edit_label.setObjectName("hint")

        self.duration = QDoubleSpinBox(minimum=0.5, maximum=MAX_DURATION, value=self.timeline.duration, suffix=" s")
        self.duration.setDecimals(2)
        self.duration.setToolTip("Length of the animation; it cannot end before its last keyframe")
        self.fps = QSpinBox(minimum=1, maximum=MAX_FPS, value=self.timeline.fps, suffix=" fps")
        self.loop = QCheckBox("Loop", checked=self.timeline.loop)
        self.loop.setToolTip("Return from the last keyframe to the first at the end, seamlessly")
        self.bpm = QDoubleSpinBox(minimum=0, maximum=1000, decimals=1, specialValueText="no BPM", suffix=" BPM")
        self.bpm.setToolTip("Snap keyframes to the beats of this tempo (0: no snapping)")
        self.noise = QCheckBox("Animate noise")
        self.noise.setToolTip("Let the constant noise drift smoothly, coming back to itself once per loop")
        for widget in (self.duration, self.bpm):
            widget.setKeyboardTracking(False)
            widget.valueChanged.connect(self._options_changed)
        self.fps.setKeyboardTracking(False)
        self.fps.valueChanged.connect(self._options_changed)
        self.loop.toggled.connect(self._options_changed)
        self.noise.toggled.connect(self._options_changed)

        open_button = QPushButton("Open…")
        open_button.clicked.connect(self._open_dialog)
        save_button = QPushButton("Save…")
        save_button.clicked.connect(self._save_dialog)
        self.export_format = QComboBox()
        for label, suffix in EXPORT_FORMATS:
            self.export_format.addItem(label, suffix)
        self.size = QSpinBox(minimum=0, maximum=MAX_SIZE, singleStep=MP4_BLOCK, suffix=" px")
        self.size.setSpecialValueText("full size")
        self.size.setMinimumWidth(130)
        self.size.setToolTip("Frame size of the export (full: the model's resolution)")
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._export_dialog)
        self.progress = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_export)
        self.status = QLabel()
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        for widget in (self.add_button, self.remove_button, self.play_button, self.time_label):
            top.addWidget(widget)
        top.addWidget(QLabel("Easing"))
        top.addWidget(self.easing)
        top.addWidget(self.edit_label, 1)
        top.addWidget(open_button)
        top.addWidget(save_button)
        options = QHBoxLayout()
        for label, widget in (("Duration", self.duration), ("Rate", self.fps)):
            options.addWidget(QLabel(label))
            options.addWidget(widget)
        for widget in (self.loop, self.bpm, self.noise):
            options.addWidget(widget)
        options.addStretch(1)
        options.addWidget(QLabel("Export"))
        for widget in (self.export_format, self.size, self.export_button, self.progress, self.cancel_button):
            options.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(top)
        layout.addWidget(self.strip)
        layout.addLayout(options)
        layout.addWidget(self.status)
        self._set_exporting(False)

        controller.state_changed.connect(self._follow_explore)
        controller.model_changed.connect(self._model_changed)
        self._model_changed()

    # --- the timeline -------------------------------------------------------------------------------------

    def set_timeline(self, timeline: Timeline, thumbnails: bool = True) -> None:
        """Show `timeline` (the one source of truth; the widgets follow it)."""
        self.timeline = timeline
        self._animator = None
        count = len(timeline.keyframes)
        if self.editing is not None and self.editing >= count:
            self._stop_editing()
        if self.strip.selected is not None and self.strip.selected >= count:
            self.strip.selected = None
        for widget, value in (
            (self.duration, timeline.duration), (self.fps, timeline.fps), (self.loop, timeline.loop),
            (self.bpm, timeline.bpm or 0), (self.noise, timeline.animate_noise),
        ):
            widget.blockSignals(True)
            widget.setChecked(value) if isinstance(widget, QCheckBox) else widget.setValue(value)
            widget.blockSignals(False)
        last = timeline.keyframes[-1].time if timeline.keyframes else 0.0
        self.duration.setMinimum(max(0.5, last))
        self.strip.duration = timeline.duration
        self.strip.times = [k.time for k in timeline.keyframes]
        self.strip.bpm = timeline.bpm
        self.strip.playhead = min(self.strip.playhead, timeline.duration)
        self._sync_selection()
        if thumbnails:
            self._render_thumbnails()
        self.strip.update()
        self._show_time()

    def add_current(self) -> None:
        state = self.controller.state
        if state is None:
            return
        time = self.timeline.snap(self.strip.playhead)
        timeline = self.timeline.with_keyframe(state, time)
        self._stop_editing()
        self.set_timeline(timeline)
        self.strip.selected = next(i for i, k in enumerate(timeline.keyframes) if k.time == time)
        self._sync_selection()

    def remove_selected(self) -> None:
        if self.strip.selected is not None:
            index, self.strip.selected = self.strip.selected, None
            self._stop_editing()
            self.set_timeline(self.timeline.without(index))

    def move_keyframe(self, index: int, time: float) -> None:
        """Move keyframe `index` to `time` (snapped); one already there is replaced by it."""
        timeline = self.timeline.moved(index, time)
        following = self.editing is not None
        self.set_timeline(timeline)
        new_index = next(i for i, k in enumerate(timeline.keyframes) if k.time == self.timeline.snap(time))
        self.strip.selected = new_index
        if following:
            self.editing = new_index
        self._sync_selection()

    def edit_keyframe(self, index: int) -> None:
        """Show keyframe `index` on the canvas and in Explore; changes made there update it."""
        self.pause()
        key = self.timeline.keyframes[index]
        self.strip.selected = self.editing = index
        self.strip.playhead = key.time
        self._sync_selection()
        self._show_time()
        self.controller.commit(key.state)

    def _follow_explore(self, state) -> None:
        if self.editing is not None and state is not None and state != self.timeline.keyframes[self.editing].state:
            self.set_timeline(self.timeline.with_state(self.editing, state), thumbnails=False)
            self._render_thumbnails(only=self.editing)

    def _stop_editing(self) -> None:
        self.editing = None
        self._sync_selection()

    def _sync_selection(self) -> None:
        selected = self.strip.selected
        self.remove_button.setEnabled(selected is not None)
        self.easing.setEnabled(selected is not None)
        if selected is not None:
            self.easing.blockSignals(True)
            self.easing.setCurrentText(self.timeline.keyframes[selected].easing)
            self.easing.blockSignals(False)
        text = (
            f"Editing keyframe {self.editing + 1} in Explore" if self.editing is not None
            else f"{len(self.timeline.keyframes)} keyframes · {self.timeline.num_frames} frames"
        )
        if selected is not None and any(camera := self.timeline.keyframes[selected].state.camera):
            text += " · camera x {:+.3f} y {:+.3f} ↻ {:+.1f}°".format(*camera)
        self.edit_label.setText(text)
        self.strip.update()

    def _set_easing(self, easing: str) -> None:
        if self.strip.selected is not None:
            self.set_timeline(self.timeline.with_easing(self.strip.selected, easing), thumbnails=False)

    def _options_changed(self, *_args) -> None:
        try:
            timeline = self.timeline.replace(
                duration=self.duration.value(), fps=self.fps.value(), loop=self.loop.isChecked(),
                bpm=self.bpm.value() or None, animate_noise=self.noise.isChecked(),
            )
        except ValueError as exc:
            self.controller.message.emit("error", str(exc))
            self.set_timeline(self.timeline, thumbnails=False)
            return
        self.set_timeline(timeline, thumbnails=False)

    def _render_thumbnails(self, only: int | None = None) -> None:
        keys = self.timeline.keyframes
        indices = [only] if only is not None else list(range(len(keys)))
        if only is None:
            self.strip.thumbnails = {}
            if self._thumbs_task is not None:
                self._thumbs_task.cancel()

        def landed(item: tuple[int, QImage]) -> None:
            position, image = item
            self.strip.thumbnails[indices[position]] = image
            self.strip.update()

        task = self.controller.render_thumbnails([keys[i].state for i in indices], THUMB_PX, landed)
        if only is None:
            self._thumbs_task = task

    # --- playback and scrubbing ---------------------------------------------------------------------------

    def seek(self, time: float, preview: bool = False) -> None:
        """Put the playhead at `time` and show that frame (leaving the keyframe being edited alone)."""
        self._stop_editing()
        self.strip.playhead = min(max(time, 0.0), self.timeline.duration)
        self.strip.update()
        self._show_time()
        self._request_frame(self.strip.playhead, preview)

    def play(self) -> None:
        if not self.timeline.keyframes or self.controller.session is None:
            self.play_button.setChecked(False)
            if self.controller.session is not None:
                self.controller.message.emit("error", "Add a keyframe first: the timeline is empty.")
            return
        self._stop_editing()
        self.frames_shown = 0
        start = self.strip.playhead
        self._play_from = 0.0 if not self.timeline.loop and start >= self.timeline.duration else start
        self._clock.start()
        self._ticker.start(max(1000 // self.timeline.fps, 5))
        self.play_button.setChecked(True)
        self.play_button.setText("Pause")

    def pause(self) -> None:
        self._ticker.stop()
        self.play_button.blockSignals(True)
        self.play_button.setChecked(False)
        self.play_button.blockSignals(False)
        self.play_button.setText("Play")

    def playing(self) -> bool:
        return self._ticker.isActive()

    def _tick(self) -> None:
        time = self._play_from + self._clock.elapsed() / 1000
        if self.timeline.loop:
            time %= self.timeline.duration
        elif time >= self.timeline.duration:
            time = self.timeline.duration
            self.pause()
        # Playback steps on the frame grid, so it shows the frames an export would contain.
        time = math.floor(time * self.timeline.fps + 1e-6) / self.timeline.fps
        self.strip.playhead = time
        self.strip.update()
        self._show_time()
        self._request_frame(time, preview=True)

    def _request_frame(self, time: float, preview: bool) -> None:
        session = self.controller.session
        if session is None or not self.timeline.keyframes:
            return
        if self._frame_task is not None and not self._frame_task.ended:
            self._wanted = (time, preview)  # only the newest wish survives: late frames are skipped
            return
        if self._animator is None or self._animator.session is not session:
            self._animator = Animator(session, self.timeline)
        animator = self._animator
        self._frame_task = self._frames.start(
            lambda _task: (time, preview, animator.render(time, preview)),
            on_finished=self._frame_landed,
            on_failed=lambda text: self.controller.message.emit("error", f"Rendering the timeline failed: {text}"),
        )

    def _frame_landed(self, result: tuple[float, bool, np.ndarray]) -> None:
        time, preview, image = result
        self.frames_shown += 1
        caption = f"timeline {time:.2f} s · frame {round(time * self.timeline.fps)}"
        self.frame_ready.emit(image, caption + (" · preview" if preview else ""))
        if self._wanted is not None:
            wanted, self._wanted = self._wanted, None
            self._request_frame(*wanted)

    def _show_time(self) -> None:
        self.time_label.setText(f"{self.strip.playhead:6.2f} / {self.timeline.duration:.2f} s")

    def frame_busy(self) -> bool:
        return (self._frame_task is not None and not self._frame_task.ended) or self._wanted is not None

    # --- files --------------------------------------------------------------------------------------------

    def _folder(self) -> Path:
        saved = settings.app_settings().value(LAST_FOLDER, "")
        return Path(str(saved)) if saved and Path(str(saved)).is_dir() else Path.home()

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a timeline", str(self._folder()), "Timelines (*.json *.mp4);;All files (*)"
        )
        if path:
            settings.app_settings().setValue(LAST_FOLDER, str(Path(path).parent))
            self.open_file(Path(path))

    def _save_dialog(self) -> None:
        if self.controller.session is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the timeline", str(self._folder() / "timeline.json"), "Timeline (*.json)"
        )
        if path:
            settings.app_settings().setValue(LAST_FOLDER, str(Path(path).parent))
            self.save_file(Path(path))

    def save_file(self, path: Path) -> Path | None:
        if self.controller.session is None:
            return None
        try:
            written = save_timeline(self.timeline, self.controller.session, path)
        except Exception as exc:  # ExportError says which file and what to do
            self._fail(str(exc))
            return None
        self.status.setStyleSheet("")
        self.status.setText(f"Saved {written}")
        return written

    def open_file(self, path: Path) -> bool:
        """Open a timeline project (or an MP4 exported with one), opening its model if another is shown."""
        try:
            timeline, recipe = read_timeline(path)
        except ValueError as exc:
            self._fail(f"Could not open {path.name}: {exc}")
            return False
        c = self.controller
        model_id = recipe.get("model_id")
        entry = c.entry
        if model_id and (entry is None or entry.id != model_id):
            entry = next((e for e in c.library.entries() if e.id == model_id), None)
            if entry is None:
                name = recipe.get("model_name") or model_id
                self._fail(
                    f"{path.name} was made with the model “{name}”, which is not in your library: import it first."
                )
                return False
        if timeline.has_camera and entry is not None and entry.meta.get("family") != "stylegan3":
            timeline = timeline.without_camera()  # StyleGAN2 has no input transform to move
            c.message.emit("info", f"{path.name} moves the camera, which this StyleGAN2 model cannot: ignored.")
        if entry is not c.entry:
            c.open_model(entry, timeline.keyframes[0].state)
        self.pause()
        self._stop_editing()
        self.strip.selected = None
        self.strip.playhead = 0.0
        self.set_timeline(timeline)
        self.status.setStyleSheet("")
        self.status.setText(f"Opened {path.name}")
        c.message.emit("info", f"Opened the timeline of {path.name}.")
        return True

    # --- export -------------------------------------------------------------------------------------------

    def _export_dialog(self) -> None:
        suffix = self.export_format.currentData()
        if suffix:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export the animation", str(self._folder() / f"animation{suffix}"), f"Video (*{suffix})"
            )
        else:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export frames into a new folder", str(self._folder() / "animation-frames"), "Folder (*)"
            )
        if path:
            settings.app_settings().setValue(LAST_FOLDER, str(Path(path).parent))
            self.export(Path(path))

    def export(self, path: Path) -> Task | None:
        """Render the timeline into `path` (.mp4, .gif, or a new folder of PNGs) in the background."""
        session = self.controller.session
        if session is None:
            return None
        if self.exporting():
            self._fail("An export is still running: wait for it or cancel it.")
            return None
        if not self.timeline.keyframes:
            self._fail("Add a keyframe first: the timeline is empty.")
            return None
        timeline, size = self.timeline, self.size.value() or None
        self._set_exporting(True)
        self.status.setStyleSheet("")
        self.status.setText("Rendering the animation…")
        self._export_task = self._exports.start(
            lambda task: export_timeline(session, timeline, path, size, task.progress, task.cancelled),
            on_finished=self._exported,
            on_failed=self._fail,
            on_progress=self._progressed,
        )
        return self._export_task

    def _progressed(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.status.setText(message)

    def _exported(self, written: Path | None) -> None:
        self._set_exporting(False)
        self.last_written = written
        if written is None:
            self.status.setText("Cancelled; nothing saved.")
            return
        self.status.setText(f"Saved {written}")
        self.controller.message.emit("info", f"Saved {written}")

    def _fail(self, text: str) -> None:
        self._set_exporting(False)
        self.status.setStyleSheet("color: #e0707a;")
        self.status.setText(text)
        self.controller.message.emit("error", text)

    def _set_exporting(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.progress.setRange(0, 0)
        self.export_button.setEnabled(not running)
        if not running:
            self._export_task = None

    def cancel_export(self) -> None:
        if self._export_task is not None:
            self._export_task.cancel()
            self.status.setText("Cancelling…")

    def exporting(self) -> bool:
        return self._export_task is not None and not self._export_task.ended

    def busy(self) -> bool:
        return self.exporting() or self.frame_busy()

    def _model_changed(self) -> None:
        has_model = self.controller.session is not None
        self.setEnabled(has_model)
        self.pause()
        self._animator = None
        if has_model and self.timeline.keyframes:
            self._render_thumbnails()
        if has_model:
            self.size.setSpecialValueText(f"full size ({self.controller.session.resolution} px)")

    def shutdown(self) -> None:
        self.pause()
        self._exports.shutdown()
        self._frames.shutdown()
