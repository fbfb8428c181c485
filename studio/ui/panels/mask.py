"""Mask panel: paint a region on the canvas, and every change made after (a seed, a slider, a mix) applies only
inside it. The image as it was when the mask was started stays outside; the generator blends the features of
both under the mask, from the chosen block on, so the edges stay seamless."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.engine.masking import rasterize
from studio.engine.state import Mask, MaskStroke, RenderState
from studio.ui.controller import StudioController
from studio.ui.widgets.canvas import Canvas
from studio.ui.widgets.float_slider import FloatSlider
from studio.ui.widgets.mask_overlay import MaskOverlay

OVERLAY_PX = 256  # the tint on the canvas is drawn from a raster this size at most (the engine uses full size)
DEFAULT_BLEND_FROM = 8


class MaskPanel(QWidget):
    def __init__(self, controller: StudioController, canvas: Canvas, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.overlay = MaskOverlay(canvas)
        self.overlay.stroke_started.connect(self._stroke_started)
        self.overlay.stroke_moved.connect(self._stroke_moved)
        self.overlay.stroke_finished.connect(self._stroke_finished)
        self._stroke_base: RenderState | None = None

        self.paint = QPushButton("Paint mask")
        self.paint.setCheckable(True)
        self.paint.setToolTip("Drag on the image to paint the region that later changes may touch")
        self.paint.toggled.connect(self.overlay.set_painting)
        self.size = FloatSlider(1, 60, 1, 16, decimals=0)
        self.size.setToolTip("Brush diameter, in % of the image width")
        self.size.value_changed.connect(self._brush_changed)
        self.hardness = FloatSlider(0, 100, 1, 50, decimals=0)
        self.hardness.setToolTip("How much of the brush paints fully before it fades out (%)")
        self.erase = QCheckBox("Erase")
        self.erase.setToolTip("The brush removes mask instead of adding it")
        self.invert = QCheckBox("Invert")
        self.invert.setToolTip("Changes apply outside the painted region instead of inside it")
        self.invert.toggled.connect(self._invert)
        self.clear = QPushButton("Clear mask")
        self.clear.setToolTip("Remove the mask: the changes made since apply to the whole image again")
        self.clear.clicked.connect(self.clear_mask)
        self.blend_from = QComboBox()
        self.blend_from.setToolTip(
            "The generator block from which the two images' features are blended under the mask: coarser blocks "
            "fit the edit to its surroundings more, finer ones keep it closer to the edit alone"
        )
        self.blend_from.currentIndexChanged.connect(self._blend_from_changed)
        self.show_mask = QCheckBox("Show the mask", checked=True)
        self.show_mask.toggled.connect(self.overlay.set_shown)
        self.status = QLabel()
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)

        toggles = QHBoxLayout()
        for widget in (self.erase, self.invert, self.show_mask):
            toggles.addWidget(widget)
        box = QGroupBox("Mask brush")
        form = QFormLayout(box)
        form.addRow(self.paint)
        form.addRow("Size", self.size)
        form.addRow("Hardness", self.hardness)
        form.addRow(toggles)
        form.addRow("Blend from", self.blend_from)
        form.addRow(self.clear)
        hint = QLabel(
            "With a mask, every change — a seed, a direction, a mix — applies only inside it; the image as it was "
            "when you started painting stays outside. A masked image costs about two renders."
        )
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(hint)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._brush_changed()

        controller.state_changed.connect(self._sync)
        controller.model_changed.connect(self._model_changed)
        self._model_changed()

    # --- painting -----------------------------------------------------------------------------------------

    def _brush_changed(self, *_args) -> None:
        self.overlay.radius = self.size.value() / 200
        self.overlay.update()

    def _stroke(self, points: tuple) -> MaskStroke:
        return MaskStroke(points, self.overlay.radius, self.hardness.value() / 100, self.erase.isChecked())

    def _stroke_started(self, _point: tuple) -> None:
        self._stroke_base = self.controller.state
        self.controller.begin_gesture()

    def _stroke_moved(self, points: tuple) -> None:
        """A stroke being drawn: previews as a slider drag does, and becomes one undo step when let go."""
        base = self._stroke_base
        if base is None:
            return
        mask = base.mask or Mask(base, blend_from=self.blend_from.currentData() or DEFAULT_BLEND_FROM)
        self.controller.edit(base.replace(mask=mask.replace(strokes=(*mask.strokes, self._stroke(points)))))

    def _stroke_finished(self, points: tuple) -> None:
        self._stroke_moved(points)
        self._stroke_base = None
        self.controller.end_gesture()

    def _change_mask(self, **changes) -> None:
        state = self.controller.state
        if state is not None and state.mask is not None:
            self.controller.commit(state.replace(mask=state.mask.replace(**changes)))

    def _invert(self, inverted: bool) -> None:
        self._change_mask(invert=inverted)

    def _blend_from_changed(self, _index: int) -> None:
        if self.blend_from.currentData() is not None:
            self._change_mask(blend_from=self.blend_from.currentData())

    def clear_mask(self) -> None:
        state = self.controller.state
        if state is not None and state.mask is not None:
            self.controller.commit(state.replace(mask=None))

    # --- following the state ------------------------------------------------------------------------------

    def _sync(self, state: RenderState | None) -> None:
        mask = state.mask if state is not None else None
        session = self.controller.session
        size = min(session.resolution, OVERLAY_PX) if session is not None else OVERLAY_PX
        self.overlay.set_coverage(rasterize(mask, size) if mask is not None and mask.strokes else None)
        for widget, value in ((self.invert, mask is not None and mask.invert),):
            widget.blockSignals(True)
            widget.setChecked(value)
            widget.blockSignals(False)
        if mask is not None:
            index = self.blend_from.findData(mask.blend_from)
            self.blend_from.blockSignals(True)
            self.blend_from.setCurrentIndex(index)
            self.blend_from.blockSignals(False)
        self.invert.setEnabled(mask is not None)
        self.clear.setEnabled(mask is not None)
        strokes = len(mask.strokes) if mask is not None else 0
        self.status.setText(
            f"Mask of {strokes} stroke(s): changes apply {'outside' if mask.invert else 'inside'} it."
            if mask is not None else "No mask: changes apply to the whole image."
        )

    def _model_changed(self) -> None:
        session = self.controller.session
        blocks = getattr(session.G.synthesis, "block_resolutions", None) if session is not None else None
        unsupported = session is not None and blocks is None  # StyleGAN3 has no per-resolution blocks to blend in
        if unsupported:
            session = None
        self.setEnabled(session is not None)
        self.blend_from.blockSignals(True)
        self.blend_from.clear()
        if session is not None:
            for res in session.G.synthesis.block_resolutions:
                self.blend_from.addItem(f"{res} px block", res)
            default = DEFAULT_BLEND_FROM if DEFAULT_BLEND_FROM in session.G.synthesis.block_resolutions else None
            self.blend_from.setCurrentIndex(self.blend_from.findData(default or session.resolution // 2))
        self.blend_from.blockSignals(False)
        if session is None:
            self.paint.setChecked(False)
        self._sync(self.controller.state)
        if unsupported:
            self.status.setText("Masks work on StyleGAN2 models.")
