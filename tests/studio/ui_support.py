"""Helpers of the UI tests: file drops delivered the way Qt delivers them, the canvas's pixels, the engine's
pixels for comparison, and waiting for the window to settle. (The window fixtures live in conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from studio.engine.session import Session
from studio.engine.state import RenderState
from studio.ui.images import to_array
from studio.ui.main_window import MainWindow

WAIT_MS = 30_000


def drop(window: MainWindow, *paths: Path) -> None:
    """Deliver a file drop the way Qt does: a drag enter the window accepts, then the drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = window.rect().center()
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(centre), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)


def canvas(window: MainWindow) -> np.ndarray:
    return to_array(window.canvas.image())


def settle(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(window.controller.settled, timeout=WAIT_MS)


def engine_render(window: MainWindow, state: RenderState) -> np.ndarray:
    """The engine's pixels for `state`, from a session of its own (not the window's)."""
    return Session(window.controller.entry).render(state)
