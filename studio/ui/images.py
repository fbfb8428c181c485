"""Conversions between the engine's uint8 RGB arrays and Qt images; the only place that knows both layouts."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage


def to_qimage(array: np.ndarray) -> QImage:
    """A QImage owning a copy of `array` ([H, W, 3] uint8 RGB); safe to build on any thread."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {array.dtype} {array.shape}")
    data = np.ascontiguousarray(array)
    height, width = data.shape[:2]
    return QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def to_array(image: QImage) -> np.ndarray:
    """The [H, W, 3] uint8 RGB pixels of `image` (a copy), e.g. to compare what is shown with the engine."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    height, width = rgb.height(), rgb.width()
    rows = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=rgb.bytesPerLine() * height)
    return rows.reshape(height, rgb.bytesPerLine())[:, : 3 * width].reshape(height, width, 3).copy()


def thumbnail(array: np.ndarray, size: int) -> QImage:
    """A smooth square-bounded thumbnail of `array`, made off the GUI thread by the render tasks."""
    return to_qimage(array).scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
