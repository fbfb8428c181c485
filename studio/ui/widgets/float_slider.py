"""A labelled slider over a float range: what every continuous control in the panels is made of."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget


class FloatSlider(QWidget):
    """Emits `value_changed(float)` only for user moves; `set_value` updates silently (undo, restore)."""

    value_changed = Signal(float)

    def __init__(
        self, minimum: float, maximum: float, step: float, value: float, decimals: int = 2,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self._minimum, self._step, self._decimals = minimum, step, decimals
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, round((maximum - minimum) / step))
        self.slider.setPageStep(max(self.slider.maximum() // 10, 1))
        self._label = QLabel()
        self._label.setMinimumWidth(44)
        self._label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self._label)
        self.set_value(value)
        self.slider.valueChanged.connect(self._moved)

    def value(self) -> float:
        return round(self._minimum + self.slider.value() * self._step, 6)

    def set_value(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round((value - self._minimum) / self._step))
        self.slider.blockSignals(False)
        self._label.setText(f"{self.value():.{self._decimals}f}")

    def _moved(self) -> None:
        self._label.setText(f"{self.value():.{self._decimals}f}")
        self.value_changed.emit(self.value())
