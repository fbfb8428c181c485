"""The first run of a new artist, walked end to end through the real window with real Qt events: a fresh
profile opens on its bundled model, the artist paints and undoes, drops a folder with broken files and a
duplicate, saves it as a dataset, fine-tunes the open model on it, stops, opens the snapshot in Explore,
exports the image, gets it back by dropping the PNG, and finds it again after a restart.

The bundled model is the tiny test model (the real one is tested in tests/test_bundled_model.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from studio.engine.recipe import read_recipe
from tests.studio.test_engine_library import with_cover_seed
from tests.studio.test_ui_dataset import make_folder
from tests.studio.test_ui_explore import activate, handle, key
from tests.studio.ui_support import WAIT_MS, canvas, drop, engine_render, settle

RUN_MS = 90_000
# Seconds of CPU, not an hour: what Advanced and the run's own settings would give an impatient expert.
QUICK_RUN = {"batch": 8, "sample_kimg": 0.04, "snap_kimg": 0.04, "progress_interval_s": 0.2, "device": "cpu",
             "precision": "fp32", "metrics_kimg": 0.0}


pytestmark = pytest.mark.usefixtures("event_loop_cycled", "one_thread_training")


def test_a_fresh_launch_opens_the_bundled_model_on_the_seed_its_card_picked(
    qtbot, empty_home, tiny_model, make_window, monkeypatch, tmp_path
):
    shipped = with_cover_seed(tiny_model, tmp_path / "shipped.safetensors", 8)
    monkeypatch.setattr("studio.engine.library.bundled_model_path", lambda: shipped)
    window = make_window()
    qtbot.waitUntil(lambda: window.controller.entry is not None, timeout=WAIT_MS)
    settle(qtbot, window)
    c = window.controller
    assert c.entry.bundled and c.state.seed == 8 and window.explore_panel.seed.value() == 8
    assert np.array_equal(canvas(window), engine_render(window, c.state))
    assert not c.history.can_undo  # where it opens, not an edit


def test_first_run_journey(qtbot, empty_home, tiny_model, make_window, monkeypatch, tmp_path):
    monkeypatch.setattr("studio.engine.library.bundled_model_path", lambda: tiny_model)

    # A fresh launch opens the bundled model.
    window = make_window()
    qtbot.waitUntil(lambda: window.controller.entry is not None, timeout=WAIT_MS)
    settle(qtbot, window)
    c, explore = window.controller, window.explore_panel
    assert c.entry.bundled and c.state.seed == 0
    first_image = canvas(window)
    assert first_image.std() > 1  # a real picture, not an empty canvas

    # A seed typed in the seed box, then Ctrl+Z while the box still has the focus takes it back.
    activate(qtbot, window)
    explore.seed.setFocus()
    explore.seed.selectAll()
    qtbot.keyClicks(explore.seed, "42")
    qtbot.keyClick(explore.seed, Qt.Key.Key_Return)
    settle(qtbot, window)
    assert c.state.seed == 42 and not np.array_equal(canvas(window), first_image)
    qtbot.keyClick(explore.seed, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert c.state.seed == 0 and np.array_equal(canvas(window), first_image)

    # One drag of the ψ slider, however it pauses, is one undo step.
    slider = explore.psi.slider
    assert not c.history.can_undo  # the typed seed was undone: nothing before the drag to go back to
    start = handle(slider)
    qtbot.mousePress(slider, Qt.MouseButton.LeftButton, pos=start)
    for dx in (-20, -40, -60):
        qtbot.mouseMove(slider, start + QPoint(dx, 0))
        qtbot.wait(250)  # longer than the render's rest: the old code recorded a step at each pause
    qtbot.mouseRelease(slider, Qt.MouseButton.LeftButton, pos=start + QPoint(-60, 0))
    settle(qtbot, window)
    dragged_psi = c.state.psi
    assert dragged_psi < 1
    qtbot.keyClick(slider, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert c.state.psi == 1 and np.array_equal(canvas(window), first_image)
    assert not c.history.can_undo  # the whole drag was one step
    qtbot.keyClick(slider, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    settle(qtbot, window)
    assert c.state.psi == dragged_psi

    # A folder with broken files and a duplicate, dropped on the window: the report names them.
    panel = window.dataset_panel
    drop(window, make_folder(tmp_path))
    qtbot.waitUntil(lambda: panel.report is not None and not panel.busy(), timeout=WAIT_MS)
    rejected = [panel.rejected.item(i).text() for i in range(panel.rejected.count())]
    assert any(text.startswith("empty.png — ") for text in rejected)
    assert any(text.startswith("notes.jpg — ") for text in rejected)
    assert [panel.duplicates.item(i).text() for i in range(panel.duplicates.count())] == [
        "noise0.png = copy.png (dropped)"
    ]

    # Saved as a dataset, at the open model's resolution.
    panel.name.clear()
    qtbot.keyClicks(panel.name, "my photos")
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.dataset == "my photos" and not panel.busy(), timeout=WAIT_MS)
    assert "Saved the dataset “my photos” (6 images)" in window.messages.text()

    # The Train panel: fine-tuning the open model on the new dataset, Start enabled, no restart.
    train = window.train_panel
    window.docks["Train"].raise_()
    assert train.base.currentData() == c.entry.id and train.dataset.currentText() == "my photos"
    assert train.start_button.isEnabled()

    # A short run starts; progress and sample grids arrive; Stop leaves a checkpoint.
    train.overrides = dict(QUICK_RUN)
    qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)
    assert train.running(), train.failure
    qtbot.waitUntil(lambda: len(train.samples()) >= 2 and train.losses.points() >= 2, timeout=RUN_MS)
    assert "img/s" in train.status.text()
    qtbot.mouseClick(train.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not train.running(), timeout=RUN_MS)
    assert train.failure is None and train.events[-1]["status"] == "stopped"
    assert train.checkpoint.count() >= 1

    # The snapshot opens in Explore, named by its run and kimg.
    qtbot.mouseClick(train.explore_button, Qt.MouseButton.LeftButton)
    label = train.selected_snapshot_name()
    assert re.fullmatch(r".+-my_photos · \d+(\.\d+)? kimg", label)
    qtbot.waitUntil(lambda: c.entry is not None and c.entry.name == label, timeout=WAIT_MS)
    settle(qtbot, window)
    snapshot_image = canvas(window)
    assert snapshot_image.shape == first_image.shape and not np.array_equal(snapshot_image, first_image)

    # A new seed of the snapshot, exported as a PNG that carries its recipe.
    qtbot.mouseClick(window.canvas, Qt.MouseButton.LeftButton)  # the canvas takes the focus, → steps the seed
    key(qtbot, Qt.Key.Key_Right)
    key(qtbot, Qt.Key.Key_Right)
    settle(qtbot, window)
    assert c.state.seed == 2
    painted, painted_image = c.state, canvas(window)
    exported = tmp_path / "mine.png"
    window.export_panel.export_current(exported)
    qtbot.waitUntil(lambda: not window.export_panel.busy() and exported.exists(), timeout=WAIT_MS)
    assert read_recipe(exported)["state"]["seed"] == 2
    assert np.array_equal(np.asarray(Image.open(exported).convert("RGB")), painted_image)

    # Reset to another image, then the PNG dropped back restores the exact one.
    explore.seed.setValue(5)
    settle(qtbot, window)
    assert not np.array_equal(canvas(window), painted_image)
    drop(window, exported)
    qtbot.waitUntil(lambda: c.state == painted, timeout=WAIT_MS)
    settle(qtbot, window)
    assert np.array_equal(canvas(window), painted_image)

    # A restart shows the same model and the same image.
    window.close()
    reopened = make_window()
    qtbot.waitUntil(lambda: reopened.controller.entry is not None, timeout=WAIT_MS)
    settle(qtbot, reopened)
    assert reopened.controller.entry.name == label and reopened.controller.state == painted
    assert np.array_equal(canvas(reopened), painted_image)
