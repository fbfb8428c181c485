"""Keys that belong to the image wherever the artist's focus is in the main window, as in image editors.

- Undo / redo (Ctrl+Z, Ctrl+Shift+Z, Ctrl+Y) step the studio's history even from a number box (the seed, a
  cutoff, a layer range): its own text undo would only replay keystrokes. A half-typed number is committed
  first, so Ctrl+Z takes it back and redo brings it again. Free-text fields (names, paths) keep their own text
  undo: there the artist is writing words, not editing the image.
- ← / → step the seed from the canvas, a slider (↑ / ↓ / Page Up / Page Down still move the slider), a button,
  a check box or the window itself. Widgets with a caret or a selection to move keep them: text and number
  fields (the caret), lists and grids such as the seed browser (the selection), tab bars.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QLineEdit,
    QPlainTextEdit,
    QTabBar,
    QTextEdit,
    QWidget,
)

CARET_OR_SELECTION = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit, QAbstractItemView, QTabBar)
SEED_STEPS = {Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1}


def seed_step(event: QKeyEvent) -> int | None:
    """-1 / +1 for a plain ← / → (macOS marks arrow keys as keypad keys), else None."""
    plain = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier == Qt.KeyboardModifier.NoModifier
    return SEED_STEPS.get(event.key()) if plain else None


class KeyRouter(QObject):
    """Watches the window and every widget of it that takes the focus (floating docks included, dialogs not)."""

    def __init__(self, window: QWidget, history_actions: Sequence[QAction], step_seed: Callable[[int], None]):
        super().__init__(window)
        self._window = window
        self._history_actions = list(history_actions)
        self._step_seed = step_seed
        window.installEventFilter(self)
        QApplication.instance().focusChanged.connect(self._focus_changed)

    def _focus_changed(self, _old: QWidget | None, new: QWidget | None) -> None:
        if new is not None and self._in_window(new):
            new.installEventFilter(self)  # installing twice keeps one filter

    def _in_window(self, widget: QWidget) -> bool:
        while widget is not None:
            if widget is self._window:
                return True
            if widget.isWindow() and not isinstance(widget, QDockWidget):
                return False  # a dialog of the window: its keys are its own
            widget = widget.parentWidget()
        return False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        kind = event.type()
        if kind == QEvent.Type.ShortcutOverride and isinstance(watched, QAbstractSpinBox) and self._history(event):
            watched.interpretText()
            event.ignore()  # not overridden: the shortcut fires instead of the box's text undo
            return True
        if kind == QEvent.Type.KeyPress and (step := seed_step(event)) is not None and _arrows_free(watched):
            self._step_seed(step)
            return True
        return False

    def _history(self, event: QKeyEvent) -> bool:
        pressed = QKeySequence(event.keyCombination())
        return any(pressed == keys for action in self._history_actions for keys in action.shortcuts())


def _arrows_free(widget: QObject) -> bool:
    if isinstance(widget, QComboBox):
        return not widget.isEditable()
    return not isinstance(widget, CARET_OR_SELECTION)
