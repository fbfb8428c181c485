"""The mask brush on the canvas: a transparent layer over the image that shows the painted mask and, while the
brush is on, turns mouse drags into strokes (points in image fractions, 0-1)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

from studio.ui.widgets.canvas import Canvas

TINT = (255, 95, 162)  # the pink of the first mixing source: reads on light and dark images
TINT_ALPHA = 120


class MaskOverlay(QWidget):
    stroke_started = Signal(tuple)  # the first point
    stroke_moved = Signal(tuple)  # every point so far
    stroke_finished = Signal(tuple)

    def __init__(self, canvas: Canvas):
        super().__init__(canvas.view())
        self.canvas = canvas
        self.radius = 0.08  # in fractions of the image width
        self.painting = False
        self.shown = True
        self._tint = QImage()
        self._points: list[tuple[float, float]] = []
        self._cursor: QPointF | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setMouseTracking(True)
        canvas.view().installEventFilter(self)
        self.setGeometry(canvas.view().rect())
        self.show()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if watched is self.canvas.view() and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.canvas.view().rect())
        return False

    def set_painting(self, painting: bool) -> None:
        self.painting = painting
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, not painting)
        self.setCursor(Qt.CursorShape.CrossCursor if painting else Qt.CursorShape.ArrowCursor)
        self.update()

    def set_coverage(self, coverage: np.ndarray | None) -> None:
        """Show `coverage` ([H, W] in [0, 1]) tinted over the image; None shows no mask."""
        if coverage is None:
            self._tint = QImage()
        else:
            rgba = np.empty((*coverage.shape, 4), np.uint8)
            rgba[..., :3] = TINT
            rgba[..., 3] = np.round(coverage * TINT_ALPHA).astype(np.uint8)
            height, width = coverage.shape
            self._tint = QImage(rgba.data, width, height, 4 * width, QImage.Format.Format_RGBA8888).copy()
        self.update()

    def set_shown(self, shown: bool) -> None:
        self.shown = shown
        self.update()

    # --- painting -----------------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        rect = QRectF(self.canvas.image_rect())
        if self.shown and not self._tint.isNull() and not rect.isEmpty():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(rect, self._tint)
        if self.painting and self._cursor is not None and rect.width() > 0:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(QColor(255, 255, 255, 220), 1.5))
            r = self.radius * rect.width()
            painter.drawEllipse(self._cursor, r, r)
            painter.setPen(QPen(QColor(0, 0, 0, 160), 1, Qt.PenStyle.DashLine))
            painter.drawEllipse(self._cursor, r + 1.5, r + 1.5)

    def _fraction(self, pos: QPointF) -> tuple[float, float] | None:
        rect = QRectF(self.canvas.image_rect())
        if rect.isEmpty():
            return None
        return ((pos.x() - rect.x()) / rect.width(), (pos.y() - rect.y()) / rect.height())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        point = self._fraction(event.position())
        if event.button() == Qt.MouseButton.LeftButton and point is not None:
            self._points = [point]
            self.stroke_started.emit(point)
            self.stroke_moved.emit(tuple(self._points))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        self._cursor = event.position()
        self.update()
        point = self._fraction(event.position())
        if not self._points or point is None or not event.buttons() & Qt.MouseButton.LeftButton:
            return
        last = self._points[-1]
        # Points closer than a quarter of the brush add nothing to the capsule the stroke paints.
        if np.hypot(point[0] - last[0], point[1] - last[1]) >= self.radius / 4:
            self._points.append(point)
            self.stroke_moved.emit(tuple(self._points))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.MouseButton.LeftButton and self._points:
            points, self._points = tuple(self._points), []
            self.stroke_finished.emit(points)

    def leaveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._cursor = None
        self.update()
