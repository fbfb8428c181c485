"""The per-layer mixing strip: one cell per w layer, coloured by the source it takes its style from.

Click or drag across cells to give them to the active source, like painting.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

# Distinct hues that read on both themes; the first is the current image (the base of the mix).
SOURCE_COLOURS = ("#5b6770", "#ff5fa2", "#36d1dc", "#a1d96b", "#ffb547", "#9b7bff", "#ff7a5c", "#4dd4a1")


def source_colour(index: int) -> QColor:
    return QColor(SOURCE_COLOURS[index % len(SOURCE_COLOURS)])


class LayerStrip(QWidget):
    """`assignment[i]` is the source index of layer i; `changed(list)` after each user paint stroke step."""

    changed = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.assignment: list[int] = []
        self.active = 0
        self.setMinimumHeight(40)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Each cell is one layer, coarse (left) to fine (right): click or drag to give layers "
                        "to the selected source")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(300, 40)

    def set_assignment(self, assignment: list[int]) -> None:
        self.assignment = list(assignment)
        self.update()

    def _cell(self, index: int) -> QRectF:
        width = self.width() / max(len(self.assignment), 1)
        return QRectF(index * width + 1, 1, width - 2, self.height() - 2)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for index, source in enumerate(self.assignment):
            rect = self._cell(index)
            colour = source_colour(source)
            painter.setPen(QPen(colour.darker(140), 1))
            painter.setBrush(colour)
            painter.drawRoundedRect(rect, 3, 3)
            painter.setPen(QColor("#101418") if colour.lightness() > 110 else QColor("#f0f0f0"))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(index))

    def _paint_at(self, x: float) -> None:
        if not self.assignment:
            return
        index = int(x / self.width() * len(self.assignment))
        if 0 <= index < len(self.assignment) and self.assignment[index] != self.active:
            self.assignment[index] = self.active
            self.update()
            self.changed.emit(list(self.assignment))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        self._paint_at(event.position().x())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._paint_at(event.position().x())

