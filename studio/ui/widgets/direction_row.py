"""One latent direction's controls: name, amount slider, layer range (preset or custom), reorder, rename."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QSpinBox, QToolButton, QWidget

from studio.engine.session import Direction
from studio.ui.widgets.float_slider import FloatSlider

CUSTOM = "custom"
SLIDER_STEPS = 400


class DirectionRow(QWidget):
    """`changed(id, amount, (start, end))` on every user edit; `set_edit` updates without emitting."""

    changed = Signal(str, float, tuple)
    move_requested = Signal(str, int)  # -1 up, +1 down
    rename_requested = Signal(str)

    def __init__(
        self, direction: Direction, presets: dict[str, tuple[int, int]], num_ws: int, amount_range: float,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.direction_id = direction.id
        self.method = direction.method
        self.default_layers = tuple(direction.default_layers)
        self._presets = presets
        name = direction.name
        self.name_label = QLabel(name)
        self.name_label.setToolTip(f"{direction.method} · strength {direction.strength:.3g}")
        self.slider = FloatSlider(-amount_range, amount_range, 2 * amount_range / SLIDER_STEPS, 0.0)
        self.slider.setToolTip(f"{name}: move the latent along this direction")
        self.layers = QComboBox()
        self.layers.addItems([*presets, CUSTOM])
        self.layers.setToolTip("Layers the edit moves: coarse = pose and shape, fine = colour and texture")
        self.start = QSpinBox(minimum=0, maximum=num_ws - 1, toolTip="First layer")
        self.end = QSpinBox(minimum=1, maximum=num_ws, toolTip="Layer after the last one")
        up = QToolButton(text="▲", autoRaise=True, toolTip="Move up")
        down = QToolButton(text="▼", autoRaise=True, toolTip="Move down")
        rename = QToolButton(text="✎", autoRaise=True, toolTip="Rename this direction")
        up.clicked.connect(lambda: self.move_requested.emit(self.direction_id, -1))
        down.clicked.connect(lambda: self.move_requested.emit(self.direction_id, 1))
        rename.clicked.connect(lambda: self.rename_requested.emit(self.direction_id))

        layout = QGridLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setVerticalSpacing(0)
        layout.addWidget(self.name_label, 0, 0)
        layout.addWidget(self.layers, 0, 1)
        layout.addWidget(self.start, 0, 2)
        layout.addWidget(self.end, 0, 3)
        layout.addWidget(up, 0, 4)
        layout.addWidget(down, 0, 5)
        layout.addWidget(rename, 0, 6)
        layout.addWidget(self.slider, 1, 0, 1, 7)
        layout.setColumnStretch(0, 1)

        self.set_edit(0.0, self.default_layers)
        self.slider.value_changed.connect(lambda _v: self._emit())
        self.layers.currentTextChanged.connect(self._preset_chosen)
        self.start.valueChanged.connect(lambda _v: self._emit())
        self.end.valueChanged.connect(lambda _v: self._emit())

    def amount(self) -> float:
        return self.slider.value()

    def layer_range(self) -> tuple[int, int]:
        start, end = self.start.value(), self.end.value()
        return (start, max(end, start + 1))

    def set_edit(self, amount: float, layers: tuple[int, int]) -> None:
        for widget in (self.layers, self.start, self.end):
            widget.blockSignals(True)
        self.slider.set_value(amount)
        self.start.setValue(layers[0])
        self.end.setValue(layers[1])
        preset = next((name for name, span in self._presets.items() if tuple(span) == tuple(layers)), CUSTOM)
        self.layers.setCurrentText(preset)
        self._show_custom(preset == CUSTOM)
        for widget in (self.layers, self.start, self.end):
            widget.blockSignals(False)

    def _preset_chosen(self, name: str) -> None:
        self._show_custom(name == CUSTOM)
        if name != CUSTOM:
            start, end = self._presets[name]
            for spin, value in ((self.start, start), (self.end, end)):
                spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(False)
        self._emit()

    def _show_custom(self, custom: bool) -> None:
        self.start.setVisible(custom)
        self.end.setVisible(custom)

    def _emit(self) -> None:
        self.changed.emit(self.direction_id, self.amount(), self.layer_range())
