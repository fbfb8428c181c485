"""Explore's "Blend models" box: the open model's coarse layers with another library model's fine ones.

Picking a model opens a `BlendSession` (the image keeps its seed and edits); the swap resolution and softness
sliders change the curve, which the render thread applies to the changed blocks only before the next frame.
The blend can be added to the library or saved as .safetensors, named after both parents.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from models.checkpoints import save_checkpoint
from studio.engine.blending import BlendCurve, BlendSession
from studio.engine.files import export_errors
from studio.engine.library import ModelEntry
from studio.engine.state import RenderState
from studio.ui.controller import StudioController
from studio.ui.widgets.float_slider import FloatSlider
from studio.ui.workers import Task

REST_MS = 150  # after the sliders rest, the full-resolution render follows
MAX_SOFTNESS = 3.0  # octaves


class LibraryCombo(QComboBox):
    """A combo box that refills itself (`refill()`) as it opens, so models imported meanwhile are offered."""

    def __init__(self, refill, parent: QWidget | None = None):
        super().__init__(parent)
        self._refill = refill

    def showPopup(self) -> None:  # noqa: N802 (Qt override)
        self._refill()
        super().showPopup()


class BlendBox(QGroupBox):
    library_changed = Signal()  # a blend was added to the library
    curve_changed = Signal()  # the blended model changed under the current state

    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__("Blend models", parent)
        self.controller = controller
        self.export_task: Task | None = None
        self._rest = QTimer(self, singleShot=True, interval=REST_MS, timeout=lambda: controller.rerender(False))

        self.partner = LibraryCombo(self._fill_partners)
        self.partner.setToolTip("Blend with… another model of the library: its layers from the swap on")
        self.partner.activated.connect(lambda _index: self.blend_with(self.partner.currentData()))
        self.at = QSlider(Qt.Orientation.Horizontal)
        self.at.setToolTip("From this resolution on, the layers come from the second model")
        self.at.valueChanged.connect(self._curve_moved)
        self.at_label = QLabel()
        self.at_label.setMinimumWidth(52)
        self.softness = FloatSlider(0.0, MAX_SOFTNESS, 0.05, 0.0)
        self.softness.setToolTip("0: a hard swap · more: a gradual hand-over, this many octaves wide")
        self.softness.value_changed.connect(lambda _value: self._curve_moved())
        self.add_button = QPushButton("Add to library", toolTip="Keep the blend as a model of its own")
        self.add_button.clicked.connect(self.add_to_library)
        self.save_button = QPushButton("Save .safetensors…")
        self.save_button.clicked.connect(self.save_dialog)
        self.status = QLabel()
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)

        at_row = QHBoxLayout()
        at_row.addWidget(self.at, 1)
        at_row.addWidget(self.at_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.save_button)
        form = QFormLayout(self)
        form.addRow("Blend with…", self.partner)
        form.addRow("Swap at", at_row)
        form.addRow("Softness", self.softness)
        form.addRow(buttons)
        form.addRow(self.status)
        controller.model_changed.connect(self._sync)
        controller.loading_changed.connect(lambda loading: loading or self._sync())
        self._sync()

    # --- state ------------------------------------------------------------------------------------------

    def blend(self) -> BlendSession | None:
        session = self.controller.session
        return session if isinstance(session, BlendSession) else None

    def base(self) -> ModelEntry | None:
        """The model giving the coarse layers: the open model, or the first parent of an open blend."""
        blend = self.blend()
        return blend.parents[0] if blend is not None else self.controller.entry

    def resolutions(self) -> list[int]:
        session = self.controller.session
        return list(getattr(session.G.synthesis, "block_resolutions", [])) if session is not None else []

    def curve(self) -> BlendCurve:
        resolutions = self.resolutions()
        at = resolutions[min(self.at.value(), len(resolutions) - 1)] if resolutions else 4
        return BlendCurve(at, self.softness.value())

    def _sync(self) -> None:
        """Show the open session: the partner list, and a blend's curve in the sliders (without applying)."""
        base, blend = self.base(), self.blend()
        self._fill_partners()
        resolutions = self.resolutions()
        self.at.blockSignals(True)
        self.at.setRange(0, max(len(resolutions) - 1, 0))
        curve = blend.curve if blend is not None else None
        self.at.setValue(resolutions.index(curve.at) if curve and curve.at in resolutions else len(resolutions) // 2)
        self.at.blockSignals(False)
        self.softness.set_value(curve.width if curve else 0.0)
        self._update_labels()
        for widget in (self.at, self.softness, self.add_button, self.save_button):
            widget.setEnabled(blend is not None)
        if base is None:
            self.status.setText("Open a model to blend it with another one.")
        elif self.partner.count() == 1:
            self.status.setText("Import a second model of the same architecture (a fine-tune, say) to blend with.")
        elif blend is None:
            self.status.setText(f"Pick a model: {base.name}'s coarse layers with its fine layers.")

    def _fill_partners(self) -> None:
        """The library's other models, the open blend's partner selected (without signalling a choice)."""
        base, blend = self.base(), self.blend()
        self.partner.blockSignals(True)
        self.partner.clear()
        self.partner.addItem("No blend", None)
        if base is not None:
            for entry in self.controller.library.entries():
                if entry.id != base.id:
                    self.partner.addItem(entry.name, entry)
        if blend is not None:
            self.partner.setCurrentIndex(max(self.partner.findText(blend.parents[1].name), 0))
        self.partner.blockSignals(False)

    def _update_labels(self) -> None:
        resolutions = self.resolutions()
        if resolutions:
            self.at_label.setText(f"{resolutions[min(self.at.value(), len(resolutions) - 1)]} px")
        blend = self.blend()
        if blend is not None:
            a, b = blend.parents
            self.status.setText(f"{a.name} below, {b.name} from there on ({self.curve().describe()}).")

    # --- actions ----------------------------------------------------------------------------------------

    def blend_with(self, partner: ModelEntry | None, curve: BlendCurve | None = None,
                   state: RenderState | None = None) -> Task | None:
        """Open the blend of the base model with `partner` (None: the base alone again), keeping the image."""
        base = self.base()
        if base is None:
            return None
        state = state or self.controller.state
        if partner is None:
            return self.controller.open_model(base, state)
        curve = curve or self.curve()
        self.status.setText(f"Blending {base.name} with {partner.name}…")
        return self.controller.open_model(
            base, state, lambda device, precision: BlendSession(base, partner, curve, device, precision)
        )

    def restore(self, spec: dict, state: RenderState) -> str | None:
        """Open the blend a recipe records; the problem as text when its parents are not in the library."""
        try:
            curve = BlendCurve.from_dict(spec)
            ids = spec["a"]["id"], spec["b"]["id"]
        except (KeyError, TypeError, ValueError) as exc:
            return f"its blend record is damaged ({exc})"
        entries = {entry.id: entry for entry in self.controller.library.entries()}
        missing = [spec[k].get("name") or spec[k]["id"] for k, i in zip("ab", ids, strict=True) if i not in entries]
        if missing:
            return f"it blends “{'” and “'.join(missing)}”, not in your library: import the parent models first"
        a, b = (entries[i] for i in ids)
        self.controller.open_model(a, state, lambda device, precision: BlendSession(a, b, curve, device, precision))
        return None

    def _curve_moved(self) -> None:
        self._update_labels()
        blend = self.blend()
        if blend is None:
            return
        blend.set_curve(self.curve())
        self.controller.entry = blend.entry  # exports record the curve as it stands
        self.controller.rerender(preview=True)
        self._rest.start()
        self.curve_changed.emit()

    def add_to_library(self) -> Task | None:
        blend = self.blend()
        if blend is None:
            return None
        name = f"{blend.entry.name} ({self.curve().describe()})"

        def work(_task: Task) -> ModelEntry:
            bundle = blend.export_bundle(f"{name}.safetensors")  # waits for a render holding the model
            with tempfile.TemporaryDirectory(prefix="gan-studio-blend-") as scratch:
                path = Path(scratch) / "blend.safetensors"
                save_checkpoint(path, bundle)
                return self.controller.library.import_model(path, name=name)

        def done(entry: ModelEntry) -> None:
            self.library_changed.emit()
            self.controller.message.emit("info", f"Added “{entry.name}” to the library.")

        self.export_task = self.controller.tasks.start(
            work, on_finished=done, on_failed=lambda text: self.controller.message.emit("error", text)
        )
        return self.export_task

    def save_dialog(self) -> None:
        blend = self.blend()
        if blend is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the blended model", str(Path.home() / "blend.safetensors"), "Models (*.safetensors)"
        )
        if path:
            self.save(Path(path))

    def save(self, path: Path) -> Task | None:
        blend = self.blend()
        if blend is None:
            return None
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")

        def work(_task: Task) -> Path:
            bundle = blend.export_bundle(path.name)
            with export_errors(path):
                save_checkpoint(path, bundle)
            return path

        self.export_task = self.controller.tasks.start(
            work,
            on_finished=lambda out: self.controller.message.emit("info", f"Saved the blended model as {out}."),
            on_failed=lambda text: self.controller.message.emit("error", text),
        )
        return self.export_task
