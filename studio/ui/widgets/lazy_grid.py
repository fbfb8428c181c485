"""A virtualised thumbnail grid: a QListView over a model that decodes only the thumbnails the view asks for,
off the GUI thread, newest request first, with a bounded cache — smooth on 10 000 images."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from studio.ui.images import to_qimage
from studio.ui.workers import Task, TaskRunner

BATCH = 24  # thumbnails per background task: big enough to amortise, small enough to follow a scroll
MAX_PENDING = 256  # requests beyond this are rows scrolled past long ago
CACHE = 4000
_ROOT = QModelIndex()
DISPLAY = Qt.ItemDataRole.DisplayRole


class ImageSet(Protocol):
    """What the grid shows: a sized sequence of named images that can make their own thumbnails."""

    def __len__(self) -> int: ...
    def name(self, index: int) -> str: ...
    def thumbnail(self, index: int, size: int) -> np.ndarray: ...


class LazyThumbnailModel(QAbstractListModel):
    def __init__(self, size: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.size = size
        self._images: ImageSet | None = None
        self._cache: OrderedDict[int, QImage] = OrderedDict()
        self._pending: list[int] = []
        self._task: Task | None = None
        self._generation = 0
        self._tasks = TaskRunner(max_threads=1, parent=self)
        self._placeholder = QImage(size, size, QImage.Format.Format_RGB888)
        self._placeholder.fill(QColor(128, 128, 128, 60))
        self._broken = QImage(size, size, QImage.Format.Format_RGB888)
        self._broken.fill(QColor(150, 40, 40))

    def set_images(self, images: ImageSet | None) -> None:
        self.beginResetModel()
        self._generation += 1
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._images = images
        self._cache.clear()
        self._pending.clear()
        self.endResetModel()

    def images(self) -> ImageSet | None:
        return self._images

    def loaded(self) -> int:
        """Thumbnails decoded and cached so far (the view only ever asks for the visible ones)."""
        return len(self._cache)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:  # noqa: N802
        return 0 if parent.isValid() or self._images is None else len(self._images)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = DISPLAY) -> Any:
        if self._images is None or not index.isValid():
            return None
        row = index.row()
        if role == Qt.ItemDataRole.DecorationRole:
            image = self._cache.get(row)
            if image is None:
                self._request(row)
                return self._placeholder
            self._cache.move_to_end(row)
            return image
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._images.name(row)
        return None

    def _request(self, row: int) -> None:
        if row in self._pending:
            return
        self._pending.append(row)
        del self._pending[:-MAX_PENDING]
        self._pump()

    def _pump(self) -> None:
        if self._task is not None or not self._pending or self._images is None:
            return
        rows = self._pending[-BATCH:][::-1]  # the newest requests are what the view shows now
        del self._pending[-BATCH:]
        images, size, generation = self._images, self.size, self._generation

        def work(task: Task) -> None:
            for row in rows:
                if task.cancelled():
                    return
                try:
                    image = to_qimage(np.ascontiguousarray(images.thumbnail(row, size)))
                except Exception:  # a file changed or vanished since the scan: show it as broken
                    image = None
                task.emit_item((generation, row, image))

        self._task = self._tasks.start(work, on_item=self._loaded, on_finished=self._batch_done,
                                       on_failed=self._batch_done)

    def _loaded(self, item: tuple[int, int, QImage | None]) -> None:
        generation, row, image = item
        if generation != self._generation:
            return
        self._cache[row] = image if image is not None else self._broken
        while len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        index = self.index(row)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def _batch_done(self, _result: object) -> None:
        self._task = None
        self._pump()

    def busy(self) -> bool:
        return self._task is not None or bool(self._pending)

    def shutdown(self) -> None:
        self._tasks.shutdown()


class ThumbnailGrid(QListView):
    """Icon-mode list with uniform cells, so Qt lays out 10 000 items without asking for each one."""

    def __init__(self, size: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.thumbnails = LazyThumbnailModel(size, self)
        self.setModel(self.thumbnails)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(size, size))
        self.setGridSize(QSize(size + 6, size + 6))
        self.setUniformItemSizes(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAcceptDrops(False)  # drops belong to the window
