"""Two tiny QPainter charts (no plotting dependency): a bar histogram and line curves over time."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

PALETTE = ("#4fa3ff", "#ff9f43", "#6ad18b", "#e0607e", "#b38cff")


def _text_colour(widget: QWidget) -> QColor:
    colour = widget.palette().windowText().color()
    colour.setAlpha(170)
    return colour


class Histogram(QWidget):
    """Labelled bars, e.g. image counts per size bucket."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bins: list[tuple[str, int]] = []
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(240, 80)

    def set_bins(self, bins: list[tuple[str, int]]) -> None:
        self.bins = list(bins)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        if not self.bins:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = _text_colour(self)
        label_h = painter.fontMetrics().height()
        width = self.width() / len(self.bins)
        top = max(n for _, n in self.bins) or 1
        plot_h = self.height() - 2 * label_h - 4
        for i, (label, n) in enumerate(self.bins):
            x = i * width
            h = plot_h * n / top
            painter.fillRect(QRectF(x + 3, label_h + plot_h - h, width - 6, h), QColor(PALETTE[0]))
            painter.setPen(text)
            painter.drawText(QRectF(x, label_h + plot_h - h - label_h, width, label_h),
                             Qt.AlignmentFlag.AlignCenter, str(n) if n else "")
            painter.drawText(
                QRectF(x, self.height() - label_h, width, label_h), Qt.AlignmentFlag.AlignCenter, label
            )
        painter.end()


class LineChart(QWidget):
    """Named series of (x, y) points drawn on shared axes, with a legend; `add` appends live values."""

    def __init__(self, title: str, parent: QWidget | None = None, y_range: tuple[float, float] | None = None):
        super().__init__(parent)
        self.title = title
        self.y_range = y_range
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(110)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(300, 140)

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add(self, name: str, x: float, y: float) -> None:
        self.series.setdefault(name, []).append((x, y))
        self.update()

    def points(self) -> int:
        return sum(len(points) for points in self.series.values())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = _text_colour(self)
        metrics = painter.fontMetrics()
        line_h = metrics.height()
        plot = QRectF(36, line_h + 4, self.width() - 44, self.height() - 2 * line_h - 8)
        painter.setPen(text)
        painter.drawText(QRectF(0, 0, self.width(), line_h), Qt.AlignmentFlag.AlignLeft, self.title)
        grid = QColor(text)
        grid.setAlpha(50)
        painter.setPen(QPen(grid))
        painter.drawRect(plot)
        values = [p for points in self.series.values() for p in points]
        if not values:
            painter.end()
            return
        xs, ys = [p[0] for p in values], [p[1] for p in values]
        x0, x1 = min(xs), max(xs)
        y0, y1 = self.y_range if self.y_range is not None else (min(ys), max(ys))
        x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

        def to_point(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + plot.width() * (x - x0) / (x1 - x0),
                           plot.bottom() - plot.height() * (y - y0) / (y1 - y0))

        painter.setPen(text)
        for y, align in ((y1, plot.top()), (y0, plot.bottom() - line_h)):
            painter.drawText(QRectF(0, align, 34, line_h), Qt.AlignmentFlag.AlignRight, f"{y:.3g}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), line_h),
                         Qt.AlignmentFlag.AlignRight, f"{x1:.3g} kimg")
        legend_x = plot.left() + (metrics.horizontalAdvance(self.title) + 16 if self.title else 0)
        labelled = len(self.series) > 1 or not self.title  # one series under a title needs no legend
        for i, (name, points) in enumerate(self.series.items()):
            colour = QColor(PALETTE[i % len(PALETTE)])
            painter.setPen(QPen(colour, 1.5))
            path = QPainterPath(to_point(*points[0]))
            for x, y in points[1:]:
                path.lineTo(to_point(x, y))
            painter.drawPath(path)
            if labelled:
                painter.drawText(QRectF(legend_x, 0, 200, line_h), Qt.AlignmentFlag.AlignLeft, f"— {name}")
                legend_x += metrics.horizontalAdvance(f"— {name}") + 12
        painter.end()
