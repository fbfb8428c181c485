"""StyleGAN3's camera: translate and rotate the image continuously through the network's input transform."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFormLayout, QGroupBox, QPushButton, QWidget

from studio.engine.state import RenderState
from studio.ui.widgets.float_slider import FloatSlider

# Half an image width either way; further out the network shows what lies beyond its training crops.
TRANSLATE_REACH = 0.5


class CameraBox(QGroupBox):
    """Move x/y (image widths) and rotate (degrees) sliders; `changed` carries the RenderState fields set."""

    changed = Signal(dict)
    centred = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Camera (StyleGAN3)", parent)
        self.translate_x = FloatSlider(-TRANSLATE_REACH, TRANSLATE_REACH, 0.005, 0.0, decimals=3)
        self.translate_x.setToolTip("Move the image right (+) or left (−), in image widths")
        self.translate_y = FloatSlider(-TRANSLATE_REACH, TRANSLATE_REACH, 0.005, 0.0, decimals=3)
        self.translate_y.setToolTip("Move the image down (+) or up (−), in image widths")
        self.rotate = FloatSlider(-180.0, 180.0, 0.5, 0.0, decimals=1)
        self.rotate.setToolTip("Rotate the image, in degrees")
        for name, slider in self.fields().items():
            slider.value_changed.connect(lambda value, name=name: self.changed.emit({name: value}))
        centre = QPushButton("Centre", toolTip="Back to no translation and no rotation")
        centre.clicked.connect(self.centred)
        form = QFormLayout(self)
        form.addRow("Move x", self.translate_x)
        form.addRow("Move y", self.translate_y)
        form.addRow("Rotate °", self.rotate)
        form.addRow("", centre)

    def fields(self) -> dict[str, FloatSlider]:
        return {"translate_x": self.translate_x, "translate_y": self.translate_y, "rotate": self.rotate}

    def show_state(self, state: RenderState) -> None:
        for name, slider in self.fields().items():
            slider.set_value(getattr(state, name))
