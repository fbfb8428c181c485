"""A non-modal message strip: errors stay until dismissed, info fades after a few seconds."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

INFO_TIMEOUT_MS = 6000


class MessageBar(QFrame):
    """Shown above the canvas, where the user is looking; never blocks input like a modal dialog would."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageBar")
        self._label = QLabel()
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self._label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._timer = QTimer(self, singleShot=True, interval=INFO_TIMEOUT_MS, timeout=self.hide)
        self.hide()

    def text(self) -> str:
        """The message on show ('' when dismissed); `isHidden` works even before the window is shown."""
        return "" if self.isHidden() else self._label.text()

    def level(self) -> str:
        return self.property("level") or ""

    def show_error(self, text: str) -> None:
        self._show(text, "error")

    def show_info(self, text: str) -> None:
        self._show(text, "info")
        self._timer.start()

    def _show(self, text: str, level: str) -> None:
        self._timer.stop()
        self._label.setText(text)
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()
