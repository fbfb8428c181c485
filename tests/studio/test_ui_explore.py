"""The Explore side driven with real mouse and key events: a drag is one undo step, the history and seed keys
work wherever the focus is, the seed browser follows the image's look, and the image survives a restart."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QLineEdit,
    QPushButton,
    QSlider,
    QStyle,
    QStyleOptionSlider,
)

from studio.engine.session import Session
from studio.ui.controller import REST_MS
from studio.ui.images import thumbnail, to_array
from studio.ui.main_window import MainWindow
from studio.ui.panels.explore import GRID_ICON
from tests.studio.ui_support import WAIT_MS, canvas, engine_render, settle

CTRL = Qt.KeyboardModifier.ControlModifier
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
LEFT = Qt.MouseButton.LeftButton


def activate(qtbot, window: MainWindow) -> None:
    """Focus only moves inside the active window."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)


def handle(slider: QSlider) -> QPoint:
    option = QStyleOptionSlider()
    slider.initStyleOption(option)
    rect = slider.style().subControlRect(
        QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, slider
    )
    return rect.center()


def focus_by_click(qtbot, widget, pos: QPoint | None = None):
    qtbot.mouseClick(widget, LEFT, pos=pos if pos is not None else widget.rect().center())
    assert QApplication.focusWidget() is widget
    return widget


def key(qtbot, name: Qt.Key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A key press where the artist's focus is, the way a keyboard delivers it."""
    qtbot.keyClick(QApplication.focusWidget(), name, modifiers)


def shows_full_render(window: MainWindow) -> bool:
    c = window.controller
    return c.result is not None and not c.result.preview and c.result.state == c.state


def test_a_slider_drag_is_one_undo_step_however_long_it_pauses(qtbot, window):
    c = window.controller
    before_state, before = c.state, canvas(window)
    slider = window.explore_panel.psi.slider
    start = handle(slider)
    qtbot.mousePress(slider, LEFT, pos=start)
    for dx in (-40, -80, -120):
        qtbot.mouseMove(slider, start + QPoint(dx, 0))
        qtbot.wait(REST_MS + 100)  # a pause the old rest timer made into a step of its own
        qtbot.waitUntil(lambda: shows_full_render(window), timeout=WAIT_MS)  # the pause shows the full image
    assert c.state.psi < 0.5 and not c.history.can_undo  # nothing recorded while the slider is held
    qtbot.mouseRelease(slider, LEFT, pos=start + QPoint(-120, 0))
    settle(qtbot, window)
    dragged, after = c.state, canvas(window)
    assert c.history.can_undo and np.array_equal(after, engine_render(window, dragged))

    key(qtbot, Qt.Key.Key_Z, CTRL)  # the slider has the focus since the press
    settle(qtbot, window)
    assert c.state == before_state and window.explore_panel.psi.value() == 1.0
    assert np.array_equal(canvas(window), before) and not c.history.can_undo  # one step took the whole drag
    key(qtbot, Qt.Key.Key_Z, CTRL_SHIFT)
    settle(qtbot, window)
    assert c.state == dragged and np.array_equal(canvas(window), after)


def test_keys_on_a_slider_group_into_one_step_once_they_rest(qtbot, window):
    c = window.controller
    activate(qtbot, window)
    slider = window.explore_panel.noise_strength.slider
    focus_by_click(qtbot, slider, handle(slider))
    assert not c.history.can_undo  # clicking the handle without moving it is no step
    for _ in range(3):
        key(qtbot, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    assert c.state.noise_strength == 0.4 and slider.hasFocus()
    key(qtbot, Qt.Key.Key_Z, CTRL)
    settle(qtbot, window)
    assert c.state.noise_strength == 1.0 and not c.history.can_undo


def test_undo_and_redo_work_from_the_seed_box(qtbot, window):
    c = window.controller
    activate(qtbot, window)
    seed = focus_by_click(qtbot, window.explore_panel.seed)
    key(qtbot, Qt.Key.Key_A, CTRL)
    qtbot.keyClicks(seed, "42")
    key(qtbot, Qt.Key.Key_Return)
    settle(qtbot, window)
    assert c.state.seed == 42 and QApplication.focusWidget() is seed
    seed_42 = canvas(window)

    key(qtbot, Qt.Key.Key_Z, CTRL)
    settle(qtbot, window)
    assert c.state.seed == 0 and seed.value() == 0
    assert np.array_equal(canvas(window), engine_render(window, c.state))
    key(qtbot, Qt.Key.Key_Z, CTRL_SHIFT)
    settle(qtbot, window)
    assert c.state.seed == 42 and np.array_equal(canvas(window), seed_42)
    key(qtbot, Qt.Key.Key_Z, CTRL)
    key(qtbot, Qt.Key.Key_Y, CTRL)
    settle(qtbot, window)
    assert c.state.seed == 42 and seed.value() == 42

    # A half-typed number is committed first: Ctrl+Z takes it back, redo brings it again.
    key(qtbot, Qt.Key.Key_A, CTRL)
    qtbot.keyClicks(seed, "7")
    assert c.state.seed == 42
    key(qtbot, Qt.Key.Key_Z, CTRL)
    settle(qtbot, window)
    assert c.state.seed == 42 and seed.text() == "42" and np.array_equal(canvas(window), seed_42)
    key(qtbot, Qt.Key.Key_Z, CTRL_SHIFT)
    settle(qtbot, window)
    assert c.state.seed == 7 and seed.value() == 7


def test_a_free_text_field_keeps_its_own_undo(qtbot, window):
    c = window.controller
    activate(qtbot, window)
    key(qtbot, Qt.Key.Key_Right)
    settle(qtbot, window)
    assert c.state.seed == 1 and c.history.can_undo
    window.docks["Dataset"].raise_()
    field = next(
        w for w in window.dataset_panel.findChildren(QLineEdit)
        if w.isVisible() and w.isEnabled() and not isinstance(w.parentWidget(), QAbstractSpinBox)
    )
    focus_by_click(qtbot, field)
    typed = field.text() + "abc"
    qtbot.keyClicks(field, "abc")
    assert field.text() == typed
    key(qtbot, Qt.Key.Key_Z, CTRL)
    assert field.text() != typed and c.state.seed == 1  # the typing was undone, not the image


def test_left_and_right_step_the_seed_wherever_they_move_no_caret(qtbot, window):
    c, panel = window.controller, window.explore_panel
    activate(qtbot, window)
    focus_by_click(qtbot, window.canvas, window.canvas.rect().center())
    key(qtbot, Qt.Key.Key_Right)
    settle(qtbot, window)
    assert c.state.seed == 1 and np.array_equal(canvas(window), engine_render(window, c.state))

    slider = focus_by_click(qtbot, panel.psi.slider, handle(panel.psi.slider))
    key(qtbot, Qt.Key.Key_Right)
    key(qtbot, Qt.Key.Key_Right)
    settle(qtbot, window)
    assert c.state.seed == 3 and c.state.psi == 1.0 and slider.hasFocus()
    key(qtbot, Qt.Key.Key_Up)  # the vertical keys still move the slider
    key(qtbot, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    assert c.state.seed == 3 and c.state.psi == 0.71
    key(qtbot, Qt.Key.Key_Left)
    settle(qtbot, window)
    assert c.state.seed == 2 and c.state.psi == 0.71

    reset = next(b for b in panel.findChildren(QPushButton) if b.text() == "Reset")
    focus_by_click(qtbot, reset)
    assert c.state.psi == 1.0
    key(qtbot, Qt.Key.Key_Left)
    settle(qtbot, window)
    assert c.state.seed == 1

    seed = focus_by_click(qtbot, panel.seed)  # in the seed box the arrows move the caret
    key(qtbot, Qt.Key.Key_End)
    key(qtbot, Qt.Key.Key_Left)
    assert seed.lineEdit().cursorPosition() == 0 and c.state.seed == 1 and seed.value() == 1


def grid_pixels(window: MainWindow, index: int) -> np.ndarray:
    return to_array(window.explore_panel.grid.item(index).icon().pixmap(GRID_ICON).toImage())


def engine_thumbnail(window: MainWindow, seed: int) -> np.ndarray:
    state = window.controller.state.replace(seed=seed, w=None)
    return to_array(thumbnail(Session(window.controller.entry).render(state, preview=True), GRID_ICON))


def test_seed_browser_thumbnails_follow_truncation(qtbot, window):
    c, panel = window.controller, window.explore_panel
    qtbot.waitUntil(lambda: not panel.grid_busy(), timeout=WAIT_MS)
    before = grid_pixels(window, 3)
    assert np.abs(before.astype(int) - engine_thumbnail(window, 3)).max() <= 2

    activate(qtbot, window)
    focus_by_click(qtbot, panel.psi.slider, handle(panel.psi.slider))
    for _ in range(3):
        key(qtbot, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    assert c.state.psi == 0.1 and panel.grid_busy()  # the redraw waits until the slider rests
    qtbot.waitUntil(lambda: not panel.grid_busy(), timeout=WAIT_MS)
    after = grid_pixels(window, 3)
    assert np.abs(after.astype(int) - before).mean() > 5
    assert np.abs(after.astype(int) - engine_thumbnail(window, 3)).max() <= 2

    key(qtbot, Qt.Key.Key_Right)  # another seed does not change the look: no redraw
    settle(qtbot, window)
    assert c.state.seed == 1 and not panel.grid_busy()
    assert np.array_equal(grid_pixels(window, 3), after)


def test_the_image_comes_back_after_a_restart(qtbot, library_home, make_window):
    window = make_window()
    settle(qtbot, window)
    activate(qtbot, window)
    panel = window.explore_panel
    seed = focus_by_click(qtbot, panel.seed)
    key(qtbot, Qt.Key.Key_A, CTRL)
    qtbot.keyClicks(seed, "7")
    key(qtbot, Qt.Key.Key_Return)
    focus_by_click(qtbot, panel.psi.slider, handle(panel.psi.slider))
    key(qtbot, Qt.Key.Key_PageDown)
    settle(qtbot, window)
    state, pixels = window.controller.state, canvas(window)
    assert state.seed == 7 and state.psi == 0.7
    window.close()

    again = make_window()
    settle(qtbot, again)
    assert again.controller.state == state and again.explore_panel.seed.value() == 7
    assert again.explore_panel.psi.value() == 0.7
    assert np.array_equal(canvas(again), pixels)
