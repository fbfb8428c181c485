"""Exports from the window (image with recipe, batches with Cancel, errors) and the headless entry points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from studio.engine.recipe import read_recipe
from studio.engine.state import RenderState
from studio.ui.app import run_app, take_screenshots
from studio.ui.main_window import MainWindow
from tests.studio.ui_support import WAIT_MS, canvas, drop, settle


def test_exported_png_carries_a_recipe_that_restores_the_same_pixels(qtbot, window, tmp_path):
    c = window.controller
    window.explore_panel.seed.setValue(7)
    window.explore_panel.noise_mode.setCurrentText("random")
    settle(qtbot, window)
    shown, state = canvas(window), c.state
    window.export_panel.export_current(tmp_path / "keeper.png")
    qtbot.waitUntil(lambda: not window.export_panel.busy(), timeout=WAIT_MS)
    written = Path(window.export_panel.last_written)
    assert written == tmp_path / "keeper.png"
    assert RenderState.from_dict(read_recipe(written)["state"]) == state


    assert np.array_equal(np.asarray(Image.open(written).convert("RGB")), shown)

    window.explore_panel.random()
    settle(qtbot, window)
    assert not np.array_equal(canvas(window), shown)
    drop(window, written)
    settle(qtbot, window)
    assert c.state == state and np.array_equal(canvas(window), shown)
    explore = window.explore_panel
    assert explore.seed.value() == 7 and explore.noise_mode.currentText() == "random"



def test_export_error_is_shown_in_the_panel_and_the_message_bar(qtbot, window, tmp_path):
    target = tmp_path / "missing-folder" / "image.png"
    window.export_panel.export_current(target)
    qtbot.waitUntil(lambda: not window.export_panel.busy(), timeout=WAIT_MS)
    text = window.export_panel.status.text()
    assert "image.png" in text and "missing-folder" in text
    assert window.messages.level() == "error" and window.messages.text() == text



def test_long_export_reports_progress_and_cancels(qtbot, window, tmp_path):
    panel = window.export_panel
    panel.count.setValue(200)
    seen: list[int] = []
    task = panel.export_seeds(tmp_path / "batch")
    task.signals.progress.connect(lambda done, total, _message: (seen.append(done), panel.cancel()))
    qtbot.waitUntil(lambda: not panel.busy(), timeout=WAIT_MS)
    written = sorted((tmp_path / "batch").glob("*.png"))
    assert seen and 0 < len(written) < 200 and len(written) == len(panel.last_written)
    assert panel.status.text().startswith("Cancelled") and not panel.cancel_button.isVisible()



def test_interpolation_gif_through_random_keyframes(qtbot, window, tmp_path):
    panel = window.export_panel
    panel.keyframes.setCurrentIndex(panel.keyframes.findData("random"))
    panel.random_keys.setValue(3)
    panel.seconds.setValue(1.0)
    panel.fps.setValue(6)
    panel.loop.setChecked(True)
    panel.export_video(tmp_path / "walk.gif")
    qtbot.waitUntil(lambda: not panel.busy(), timeout=WAIT_MS)
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 6 and gif.size == (32, 32)
    assert panel.status.text() == f"Saved {tmp_path / 'walk.gif'}"


def test_take_screenshots_shows_every_panel(qtbot, library_home, tmp_path):


    shots = take_screenshots(tmp_path / "shots")
    names = ["models.png", "explore.png", "mix.png", "export.png", "dataset.png", "train.png"]
    assert [p.name for p in shots] == names


    images = [np.asarray(Image.open(p).convert("RGB")) for p in shots]
    assert all(im.shape == (900, 1440, 3) and im.std() > 10 for im in images)
    assert not np.array_equal(images[1], images[3])  # the right-hand panel changed between shots



def test_run_app_opens_a_model_named_on_the_command_line(qtbot, empty_home, tiny_model):


    seen: list[str] = []

    def poll() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows and windows[0].controller.settled():
            seen.append(windows[0].controller.entry.name)
            QApplication.quit()
        else:
            QTimer.singleShot(50, poll)

    QTimer.singleShot(50, poll)
    QTimer.singleShot(WAIT_MS, QApplication.quit)
    assert run_app([str(tiny_model)]) == 0
    assert seen == ["tiny"]
