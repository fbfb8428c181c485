"""The Train panel's recipe: Auto says what it picked for the model and dataset, the Advanced options follow the
recipe chosen (the artist's edits win), and the run started carries the recipe's settings; a past run's measured
speed shows in the length choices."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from studio.engine.runs import PRESETS, read_run
from tests.studio.test_ui_train import RUN_MS, blobs
from tests.studio.ui_support import settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled", "one_thread_training")

# Seconds of CPU: the projected D at its smallest input, a few steps, fixed precision.
SHORT = {"kimg": 0.016, "time_budget_s": None, "batch": 8, "snap_kimg": 0.016, "sample_kimg": 0.016,
         "projected_size": 64, "progress_interval_s": 0.2, "device": "cpu", "precision": "fp32", "metrics_kimg": 0.0}


def choose(qtbot, combo, data) -> None:
    """Pick the item holding `data` with the keyboard, as an artist tabbing through the form would."""
    combo.setFocus()
    target = combo.findData(data)
    assert target >= 0, data
    while combo.currentIndex() != target:
        qtbot.keyClick(combo, Qt.Key.Key_Down if combo.currentIndex() < target else Qt.Key.Key_Up)


def test_auto_recipe_then_the_projected_one_reaches_the_run(qtbot, empty_home, tiny_model, make_window, monkeypatch,
                                                             tmp_path):
    monkeypatch.setattr("studio.engine.library.bundled_model_path", lambda: tiny_model)
    window = make_window()  # a fresh profile: the bundled model opens
    panel = window.train_panel
    qtbot.waitUntil(lambda: window.controller.entry is not None, timeout=RUN_MS)
    settle(qtbot, window)
    assert panel.recipe.combo.currentData() == "auto"
    assert panel.recipe.combo.currentText() == "Auto (by the dataset's size)"  # no dataset yet

    blobs(window, tmp_path)  # 24 images
    assert panel.base.currentData() == window.controller.entry.id
    combo = panel.recipe.combo
    assert combo.currentText() == "Auto: few-image fine-tune (24 images)"
    assert panel.recipe.note.text().startswith("Picked for 24 images, fewer than 100")
    assert "mapping" in combo.toolTip()
    assert (panel.g_lr.value(), panel.d_lr.value(), panel.freeze_d.value()) == (0.001, 0.001, 2)
    assert panel.build_options()["freeze_mapping"] is True
    assert [combo.itemData(i) for i in range(combo.count())] == [
        "auto", "finetune", "finetune-fast", "finetune-gentle", "finetune-few"]

    choose(qtbot, combo, "finetune-fast")  # the Advanced options follow the recipe
    assert combo.currentText() == "Fine-tune, projected D" and "EfficientNet" in combo.toolTip()
    assert "frozen image-recognition network" in panel.recipe.note.text()
    assert (panel.g_lr.value(), panel.d_lr.value(), panel.freeze_d.value()) == (0.0005, 0.0002, 0)
    assert panel.aug.currentData() == "diffaug"
    panel.advanced_toggle.click()
    panel.g_lr.setFocus()
    panel.g_lr.selectAll()
    qtbot.keyClicks(panel.g_lr, "0.003")  # the artist's edit wins over every recipe
    choose(qtbot, combo, "finetune")
    assert (panel.g_lr.value(), panel.d_lr.value(), panel.aug.currentData()) == (0.003, 0.002, "ada")
    choose(qtbot, combo, "finetune-fast")
    assert (panel.g_lr.value(), panel.d_lr.value(), panel.aug.currentData()) == (0.003, 0.0002, "diffaug")

    panel.overrides = SHORT
    panel.start_button.click()
    # Seconds on a quiet CPU; over two minutes measured on two cores shared by ten busy processes.
    qtbot.waitUntil(lambda: not panel.running() and panel.run_dir is not None, timeout=4 * RUN_MS)
    assert panel.failure is None and panel.events[-1]["event"] == "finished"
    config = json.loads((panel.run_dir / "config.json").read_text())
    assert (config["preset"], config["discriminator"], config["gan_loss"], config["aug"]) == (
        "finetune-fast", "projected", "hinge", "diffaug")
    assert (config["g_lr"], config["d_lr"], config["pl_weight"], config["freeze_d"]) == (0.003, 0.0002, 0, 0)
    assert config["preset_reason"] == "chosen in the Train panel" and not config["freeze_mapping"]
    started = next(e for e in panel.events if e["event"] == "started")
    assert (started["discriminator"], started["preset"]) == ("projected", "finetune-fast")

    # Auto records its pick and why.
    choose(qtbot, combo, "auto")
    options = panel.build_options()
    assert (options["preset"], options["freeze_d"]) == ("finetune-few", 2)
    assert "24 images" in options["preset_reason"]


def test_length_choices_show_the_kimg_a_measured_speed_holds(qtbot, window, tmp_path):
    """Only a past run of the same set-up on this device tells the speed: nothing is shown before one."""
    panel = window.train_panel
    name = blobs(window, tmp_path)
    panel.select(base=window.controller.entry.id, dataset=name)
    panel.device.setCurrentText("cpu")
    assert [panel.preset.itemText(i) for i in range(3)] == list(PRESETS)
    options = {**panel.build_options(), "measured_images_per_s": 5.0, "kimg": 0.05}
    run_dir = tmp_path / "runs" / "measured"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(options))
    panel.runs_root = run_dir.parent
    panel.refresh_runs()
    assert read_run(run_dir).config["measured_images_per_s"] == 5.0
    assert panel.preset.itemText(0) == "About 10 minutes (~3 kimg here)"  # 5 img/s for 600 s
    assert panel.preset.itemText(1) == "About an hour (~18 kimg here)"
    assert "5.0 images/s" in panel.preset.toolTip()
    panel.batch.setValue(4)  # another set-up: its speed is not known
    assert [panel.preset.itemText(i) for i in range(3)] == list(PRESETS)
