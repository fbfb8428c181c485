"""The large image view: fit-to-window or 100 % zoom, scrollable when the image is bigger than the view."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QScrollArea, QSizePolicy, QWidget


class _ImageView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.image = QImage()
        self.fit = True
        self.smooth = True
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def target_rect(self) -> QRect:
        if self.image.isNull():
            return QRect()
        size = self.image.size()
        if self.fit:
            size = size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x, y = (self.width() - size.width()) // 2, (self.height() - size.height()) // 2
        return QRect(max(x, 0), max(y, 0), size.width(), size.height())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self.image.isNull():
            return
        painter = QPainter(self)
        rect = self.target_rect()
        # Downscaling always needs smoothing (aliasing). Enlarged, a 64 px model's squares read as mush, not as
        # a picture: bilinear by default, the real pixels on request (View ▸ Show pixels).
        enlarged = rect.width() > self.image.width()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth or not enlarged)
        painter.drawImage(rect, self.image)


class Canvas(QScrollArea):
    """Shows one QImage; `image()` returns exactly what was set, so tests can compare pixels."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("canvas")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(QSize(200, 200))
        # A click takes the focus away from a number box, so ← / → step the seed again (the main window's key
        # routing); ↑ / ↓ still scroll an image shown at 100 %.
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._view = _ImageView()
        self.setWidget(self._view)
        self.set_fit(True)

    def set_image(self, image: QImage) -> None:
        self._view.image = image
        if not self._view.fit:
            self._view.setFixedSize(image.size())
        self._view.update()

    def image(self) -> QImage:
        return self._view.image

    def view(self) -> QWidget:
        """The widget the image is painted on; overlays (the mask brush) sit on it."""
        return self._view

    def image_rect(self) -> QRect:
        """Where the image is drawn, in the coordinates of `view()`."""
        return self._view.target_rect()

    def set_smooth(self, smooth: bool) -> None:
        """Enlarged images drawn smooth (bilinear) or as their square pixels."""
        self._view.smooth = smooth
        self._view.update()

    def smooth(self) -> bool:
        return self._view.smooth

    def set_fit(self, fit: bool) -> None:
        """Fit scales the image into the view; otherwise it is shown at 100 % and scrolls."""
        self._view.fit = fit
        if fit:
            self._view.setMinimumSize(0, 0)
            self._view.setMaximumSize(16_777_215, 16_777_215)
            self.setWidgetResizable(True)
        else:
            self.setWidgetResizable(False)
            self._view.setFixedSize(self._view.image.size() if not self._view.image.isNull() else QSize(1, 1))
        self._view.update()
