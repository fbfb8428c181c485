"""The timeline track: a ruler in seconds (and beats when a BPM is set), keyframes as thumbnails on the track,
and the playhead.

Press on empty track to scrub (drag to keep scrubbing); press on a keyframe and drag to move it in time; a
press on a keyframe without a drag opens it (`keyframe_clicked`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

MARGIN = 24  # room for the first and last thumbnails to overhang the ends of the track
RULER = 18
THUMB = 40
DRAG_START_PX = 4
PLAYHEAD = QColor("#ff5f5f")
KEY = QColor("#36d1dc")
SELECTED = QColor("#ffb547")


class TimelineStrip(QWidget):
    scrubbed = Signal(float)  # the playhead was placed (while scrubbing too)
    scrub_finished = Signal(float)
    keyframe_clicked = Signal(int)
    keyframe_moved = Signal(int, float)  # index and new time, when a drag ends

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.duration = 8.0
        self.times: list[float] = []
        self.thumbnails: dict[int, QImage] = {}
        self.selected: int | None = None
        self.playhead = 0.0
        self.bpm: float | None = None
        self.snap: Callable[[float], float] = lambda t: t
        self._press: tuple[str, int, float] | None = None  # ("key", index, x) or ("scrub", -1, x)
        self._drag_time: float | None = None
        self.setMinimumHeight(RULER + THUMB + 30)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(False)
        self.setToolTip("Click to place the playhead, drag a keyframe to move it, click a keyframe to edit it")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(600, RULER + THUMB + 30)

    # --- geometry -----------------------------------------------------------------------------------------

    def x_of(self, time: float) -> float:
        return MARGIN + (self.width() - 2 * MARGIN) * time / self.duration

    def time_of(self, x: float) -> float:
        width = max(self.width() - 2 * MARGIN, 1)
        return min(max((x - MARGIN) / width * self.duration, 0.0), self.duration)

    def key_rect(self, index: int) -> QRectF:
        time = self._drag_time if self._dragging(index) else self.times[index]
        return QRectF(self.x_of(time) - THUMB / 2, RULER + 4, THUMB, THUMB)

    def _track_y(self) -> float:
        return RULER + THUMB + 16

    def _dragging(self, index: int) -> bool:
        return self._drag_time is not None and self._press is not None and self._press[:2] == ("key", index)

    # --- painting -----------------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().text().color()
        muted = QColor(text)
        muted.setAlpha(90)
        left, right = self.x_of(0), self.x_of(self.duration)
        if self.bpm:
            beat = 60.0 / self.bpm
            painter.setPen(QPen(muted, 1, Qt.PenStyle.DotLine))
            for i in range(int(self.duration / beat) + 1):
                x = self.x_of(i * beat)
                painter.drawLine(QPointF(x, RULER), QPointF(x, self.height()))
        step = _ruler_step(self.duration, (right - left) / 60)
        painter.setPen(QPen(text, 1))
        for i in range(int(self.duration / step + 1e-6) + 1):
            x = self.x_of(i * step)
            painter.drawLine(QPointF(x, RULER - 5), QPointF(x, RULER))
            painter.drawText(QRectF(x - 30, 0, 60, RULER - 5), Qt.AlignmentFlag.AlignCenter, f"{i * step:g} s")
        y = self._track_y()
        painter.setPen(QPen(muted, 3))
        painter.drawLine(QPointF(left, y), QPointF(right, y))
        for index in range(len(self.times)):
            rect = self.key_rect(index)
            colour = SELECTED if index == self.selected else KEY
            thumbnail = self.thumbnails.get(index)
            if thumbnail is not None and not thumbnail.isNull():
                painter.drawImage(rect, thumbnail)
            else:
                painter.fillRect(rect, muted)
            painter.setPen(QPen(colour, 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect)
            cx = rect.center().x()
            painter.setBrush(colour)
            diamond = [QPointF(cx, y - 6), QPointF(cx + 6, y), QPointF(cx, y + 6), QPointF(cx - 6, y)]
            painter.drawPolygon(QPolygonF(diamond))
        x = self.x_of(self.playhead)
        painter.setPen(QPen(PLAYHEAD, 2))
        painter.drawLine(QPointF(x, RULER - 2), QPointF(x, self.height()))

    # --- mouse --------------------------------------------------------------------------------------------

    def key_at(self, x: float, y: float) -> int | None:
        """The keyframe under (x, y): on its thumbnail or its marker on the track; the last drawn wins."""
        for index in reversed(range(len(self.times))):
            rect = self.key_rect(index).adjusted(0, 0, 0, self._track_y() + 7 - self.key_rect(index).bottom())
            if rect.contains(QPointF(x, y)):
                return index
        return None

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() != Qt.MouseButton.LeftButton:
            return
        pos = event.position()
        index = self.key_at(pos.x(), pos.y())
        if index is not None:
            self._press = ("key", index, pos.x())
        else:
            self._press = ("scrub", -1, pos.x())
            self._scrub(pos.x())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if self._press is None or not event.buttons() & Qt.MouseButton.LeftButton:
            return
        kind, _index, start = self._press
        x = event.position().x()
        if kind == "scrub":
            self._scrub(x)
        elif self._drag_time is not None or abs(x - start) >= DRAG_START_PX:
            self._drag_time = self.snap(self.time_of(x))
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        press, drag, self._press, self._drag_time = self._press, self._drag_time, None, None
        if press is None:
            return
        kind, index, _start = press
        if kind == "scrub":
            self.scrub_finished.emit(self.playhead)
        elif drag is not None:
            self.keyframe_moved.emit(index, drag)
        else:
            self.keyframe_clicked.emit(index)
        self.update()

    def _scrub(self, x: float) -> None:
        self.playhead = self.time_of(x)
        self.update()
        self.scrubbed.emit(self.playhead)


def _ruler_step(duration: float, max_labels: float) -> float:
    """A round number of seconds between ruler labels that keeps them from crowding."""
    for step in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if duration / step <= max(max_labels, 1):
            return step
    return math.ceil(duration / 10)
