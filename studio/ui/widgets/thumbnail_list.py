"""A grid of clickable thumbnails (seed browser, favourites), filled in as their renders land."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

PAYLOAD = Qt.ItemDataRole.UserRole


class ThumbnailList(QListWidget):
    """Items carry a payload (a seed, a RenderState…); `picked(payload)` fires on click or Enter."""

    picked = Signal(object)

    def __init__(self, icon_size: int, parent: QWidget | None = None, page_size: int | None = None):
        """With `page_size` (a full page, as the seed browser shows), the columns are a divisor of it that fits
        the width, and the cells widen to fill it: whole rows, no ragged last row or empty strip."""
        super().__init__(parent)
        self._icon_size, self._page_size = icon_size, page_size
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(icon_size, icon_size))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformItemSizes(True)
        self.setGridSize(QSize(icon_size + 12, icon_size + 24))
        self.setAcceptDrops(False)
        self.setWordWrap(True)
        self.itemClicked.connect(lambda item: self.picked.emit(item.data(PAYLOAD)))
        self.itemActivated.connect(lambda item: self.picked.emit(item.data(PAYLOAD)))
        self._placeholder = self._blank(icon_size)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        if self._page_size:
            # From the widget's own width, a scroll bar's width always set aside: the viewport's width changes as
            # the scroll bar comes and goes, and following it would flip the column count back and forth.
            width = event.size().width() - 2 * self.frameWidth() - self.verticalScrollBar().sizeHint().width()
            fits = max(1, width // (self._icon_size + 12))
            columns = max(c for c in range(1, self._page_size + 1) if self._page_size % c == 0 and c <= fits)
            self.setGridSize(QSize(width // columns - 1, self._icon_size + 24))

    @staticmethod
    def _blank(size: int) -> QIcon:
        pixmap = QPixmap(size, size)
        pixmap.fill(QColor(128, 128, 128, 60))
        return QIcon(pixmap)

    def set_items(self, items: list[tuple[str, object]]) -> None:
        """Replace everything with (caption, payload) pairs showing placeholders until `set_image`."""
        self.clear()
        for caption, payload in items:
            item = QListWidgetItem(self._placeholder, caption)
            item.setData(PAYLOAD, payload)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.addItem(item)

    def payloads(self) -> list[object]:
        return [self.item(row).data(PAYLOAD) for row in range(self.count())]

    def set_image(self, index: int, image: QImage) -> None:
        if 0 <= index < self.count():
            self.item(index).setIcon(QIcon(QPixmap.fromImage(image)))
