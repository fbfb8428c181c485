"""The main window driven like a person would (drops, slider moves, keys, clicks), offscreen, asserting on
the canvas's real pixels against the engine's own render of the same state."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel

from models.checkpoints import CheckpointError, load_checkpoint
from studio.ui.app import create_application
from studio.ui.dialogs.settings import SettingsDialog
from studio.ui.images import to_array
from studio.ui.theme import apply_theme
from tests.studio.ui_support import WAIT_MS, canvas, drop, engine_render, settle


def test_empty_library_shows_how_to_open_a_model(qtbot, empty_home, make_window):
    window = make_window()
    assert window.controller.session is None and window._stack.currentWidget() is window.empty
    assert "Drop a StyleGAN2 checkpoint" in window.empty.findChild(QLabel, "emptyBody").text()


def test_dropped_model_is_imported_opened_and_the_gui_stays_responsive(
    qtbot, empty_home, tiny_model, make_window
):
    window = make_window()
    ticks: list[float] = []
    timer = QTimer(interval=10, timeout=lambda: ticks.append(time.perf_counter()))
    timer.start()
    drop(window, tiny_model)
    assert window.models_panel.importing() and window.models_panel.busy.isVisible()
    qtbot.waitUntil(lambda: "tiny" in window.models_panel.names(), timeout=WAIT_MS)
    settle(qtbot, window)
    timer.stop()
    assert not window.models_panel.busy.isVisible()
    assert window.controller.entry.name == "tiny" and window._stack.currentIndex() == 1
    assert np.array_equal(canvas(window), engine_render(window, window.controller.state))
    # The GUI thread kept handling events all along: no gap between timer ticks as long as a render. (How many
    # ticks there are depends on how fast the import was, not on the GUI.)
    assert len(ticks) >= 2 and max(np.diff(ticks)) < 0.5


def test_refused_model_file_shows_the_importers_specific_message(qtbot, empty_home, tmp_path, make_window):
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(bad)
    window = make_window()
    drop(window, bad)
    qtbot.waitUntil(lambda: window.messages.text() != "", timeout=WAIT_MS)
    assert window.messages.level() == "error"
    assert str(refused.value) in window.messages.text() and "broken.pkl" in window.messages.text()
    assert window.models_panel.names() == [] and not window.models_panel.busy.isVisible()


def test_rename_and_delete_from_the_library(qtbot, window):
    panel, entry_id = window.models_panel, window.controller.entry.id
    panel.rename(entry_id, "Portraits")
    assert panel.names() == ["Portraits"] and window.windowTitle().startswith("Portraits")
    panel.delete(entry_id)
    assert panel.names() == [] and window.controller.session is None
    assert window._stack.currentWidget() is window.empty and not window.explore_panel.isEnabled()


def test_truncation_slider_shows_the_engines_pixels_and_undo_restores_them(qtbot, window):
    before = canvas(window)
    assert np.array_equal(before, engine_render(window, window.controller.state))
    slider = window.explore_panel.psi.slider
    start = slider.value()
    for value in (start - 40, start - 80, start - 120):  # a drag: previews, then the full image at rest
        slider.setValue(value)
    assert window.controller.state.psi == pytest.approx(-0.2)
    settle(qtbot, window)
    after = canvas(window)
    assert not np.array_equal(after, before)
    assert np.array_equal(after, engine_render(window, window.controller.state))

    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert window.controller.state.psi == 1.0 and window.explore_panel.psi.value() == 1.0
    assert np.array_equal(canvas(window), before)
    ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window, Qt.Key.Key_Z, ctrl_shift)
    settle(qtbot, window)
    assert np.array_equal(canvas(window), after)


def test_keys_step_seeds_and_favourites_restore_their_image(qtbot, window):
    c = window.controller
    qtbot.keyClick(window, Qt.Key.Key_Right)
    settle(qtbot, window)
    assert c.state.seed == 1
    qtbot.keyClick(window, Qt.Key.Key_F)
    favourite, pixels = c.state, canvas(window)
    assert c.favourites == [favourite] and window.explore_panel.favourites.count() == 1
    qtbot.keyClick(window, Qt.Key.Key_R)
    settle(qtbot, window)
    assert c.state.seed != 1
    item = window.explore_panel.favourites.item(0)
    rect = window.explore_panel.favourites.visualItemRect(item)
    qtbot.mouseClick(window.explore_panel.favourites.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    settle(qtbot, window)
    assert c.state == favourite and np.array_equal(canvas(window), pixels)


def test_direction_slider_and_mixing_preset_render_what_the_engine_renders(qtbot, window):
    c = window.controller
    qtbot.waitUntil(lambda: len(window.explore_panel.rows) > 0, timeout=WAIT_MS)
    row = next(iter(window.explore_panel.rows.values()))
    row.slider.slider.setValue(row.slider.slider.maximum())
    settle(qtbot, window)
    assert [e.direction_id for e in c.state.edits] == [row.direction_id]
    assert np.array_equal(canvas(window), engine_render(window, c.state))

    window.explore_panel.save_direction("Mine")  # the edits become one named, user direction at amount 1
    qtbot.waitUntil(lambda: c.state.edits[0].direction_id.startswith("user-"), timeout=WAIT_MS)
    settle(qtbot, window)
    mine = window.explore_panel.rows[c.state.edits[0].direction_id]
    assert mine.name_label.text() == "Mine" and mine.amount() == 1.0 and not mine.isHidden()
    assert np.array_equal(canvas(window), engine_render(window, c.state))
    ids = [d.id for d in c.directions]
    window.explore_panel.move_direction(mine.direction_id, -1)
    qtbot.waitUntil(lambda: [d.id for d in c.directions] != ids, timeout=WAIT_MS)
    assert [d.id for d in c.directions].index(mine.direction_id) == ids.index(mine.direction_id) - 1

    mix = window.mix_panel
    mix.add_seed(3)
    mix.assign_preset("coarse")
    settle(qtbot, window)
    coarse = window.mix_panel.strip.assignment
    assert c.state.mix[0].seed == 3
    assert list(c.state.mix[0].layers) == [i for i, a in enumerate(coarse) if a == 1]
    assert np.array_equal(canvas(window), engine_render(window, c.state))
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert c.state.mix == () and set(mix.strip.assignment) == {0}


def test_dock_layout_persists_in_the_studio_home(qtbot, library_home, make_window):
    window = make_window()
    window.docks["Mix"].hide()
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, window.docks["Models"])
    window.close()
    stored = QSettings(str(library_home / "settings.ini"), QSettings.Format.IniFormat)
    assert stored.value("ui/geometry") == window.saveGeometry()

    again = make_window()
    assert again.docks["Mix"].isHidden() and not again.docks["Explore"].isHidden()
    assert again.dockWidgetArea(again.docks["Models"]) == Qt.DockWidgetArea.RightDockWidgetArea
    settle(qtbot, again)


def test_light_theme_is_applied_and_remembered(qtbot, studio_home):
    """(No window is open here: restyling every widget of a window costs seconds on a busy machine.)"""
    app = QApplication.instance()
    dialog = SettingsDialog()
    dialog.theme.setCurrentText("light")
    dialog.accept()
    assert app.property("ganStudioTheme") == "light"
    app.setProperty("ganStudioTheme", None)
    assert create_application([]) is app and app.property("ganStudioTheme") == "light"
    assert SettingsDialog().theme.currentText() == "light"
    apply_theme(app, "dark")


def test_seed_browser_click_picks_that_seed(qtbot, window):
    grid = window.explore_panel.grid
    qtbot.waitUntil(lambda: not window.explore_panel.grid_busy(), timeout=WAIT_MS)
    item = grid.item(5)
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.visualItemRect(item).center())
    settle(qtbot, window)
    assert window.controller.state.seed == 5 and window.explore_panel.seed.value() == 5


def test_a_fresh_install_opens_on_the_bundled_model(studio_home, make_window, qtbot, monkeypatch):
    from studio.engine import paths

    monkeypatch.setattr("studio.engine.library.bundled_model_path", paths.bundled_model_path)
    window = make_window()
    qtbot.waitUntil(lambda: window.controller.session is not None, timeout=60_000)
    assert window.controller.session.resolution == 64
    assert "fluent-emoji-64" in window.windowTitle()


def test_enlarged_images_are_smooth_unless_the_artist_asks_for_pixels(qtbot, window, make_window):
    def drawn() -> np.ndarray:
        view = window.canvas.widget()
        shown = to_array(view.grab().toImage())
        rect = view.target_rect()
        assert rect.width() >= 4 * window.canvas.image().width()  # the 32 px image enlarged many times
        return shown[rect.top() + 2 : rect.bottom() - 2, rect.left() + 2 : rect.right() - 2].astype(int)

    def repeated(pixels: np.ndarray) -> float:
        """Share of pixels equal to their right-hand neighbour: high when each source pixel is a flat square."""
        return float((np.abs(np.diff(pixels, axis=1)).sum(axis=2) == 0).mean())

    smooth = drawn()
    window.show_pixels_action.trigger()
    assert window.show_pixels_action.isChecked()
    squares = drawn()
    assert repeated(squares) > 0.8 and repeated(smooth) < 0.5
    # The same picture either way, only drawn differently.
    assert np.abs(squares.mean() - smooth.mean()) < 3
    reopened = make_window()  # the choice is remembered
    assert reopened.show_pixels_action.isChecked() and not reopened.canvas.smooth()
