"""Helpers of the UI tests: file drops delivered the way Qt delivers them, the canvas's pixels, the engine's
pixels for comparison, and waiting for the window to settle. (The window fixtures live in conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from models.seeds import z_from_seed
from studio.engine.session import Session
from studio.engine.state import RenderState
from studio.ui.images import to_array
from studio.ui.main_window import MainWindow
from tests.models import sg3_reference as ref

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


def open_stylegan3(qtbot, tmp_path: Path, window: MainWindow, name: str = "alias-free", resolution: int = 32) -> None:
    """Drop a tiny StyleGAN3 pickle on `window`, made so that seed 0, where the window opens, has contrast; wait
    until it is imported, opened and rendered."""
    G = ref.make_sg3(seed=2, resolution=resolution, shown=z_from_seed(0, 16))
    drop(window, ref.sg3_pickle(tmp_path, tmp_path / "side-effect", G, name=f"{name}.pkl"))
    qtbot.waitUntil(lambda: name in window.models_panel.names(), timeout=WAIT_MS)
    settle(qtbot, window)
