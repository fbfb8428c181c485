"""The layout the side panels share: their group boxes stacked in a column that scrolls vertically."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea, QVBoxLayout, QWidget


def scroll_column(*boxes: QWidget) -> QScrollArea:
    """`boxes` top to bottom, extra height left empty below them, no horizontal scrolling (docks are narrow)."""
    content = QWidget()
    layout = QVBoxLayout(content)
    for box in boxes:
        layout.addWidget(box)
    layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(content)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return scroll
