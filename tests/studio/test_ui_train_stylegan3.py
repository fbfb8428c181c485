"""Fine-tuning a StyleGAN3 model from the Train panel: choosing it as the base measures how fast it trains on
this CPU and says so in the warnings; Start runs the real training process, and its snapshot opens in Explore
as a StyleGAN3."""

from __future__ import annotations

import os
import re

import pytest
from PySide6.QtCore import Qt

from tests.studio.test_ui_train import RUN_MS, blobs, kinds, opened
from tests.studio.ui_support import settle
from tests.training.test_stylegan3 import sg3_base

pytestmark = pytest.mark.usefixtures("event_loop_cycled", "one_thread_training")

SHOTS = os.environ.get("GAN_STUDIO_SHOTS")  # a folder to keep the screenshot in, when set
SHORT_RUN = {
    "kimg": 0.016, "time_budget_s": None, "batch": 8, "sample_kimg": 0.016, "snap_kimg": 0.016,
    "progress_interval_s": 0.2, "metrics_kimg": 0.0,
}


def test_fine_tuning_a_stylegan3_from_the_panel(qtbot, window, tmp_path):
    panel = window.train_panel
    name = blobs(window, tmp_path)
    window.models_panel.import_files([sg3_base(tmp_path / "alias-free.safetensors")])
    qtbot.waitUntil(lambda: "alias-free" in window.models_panel.names(), timeout=RUN_MS)
    settle(qtbot, window)
    entry = next(e for e in window.controller.library.entries() if e.name == "alias-free")
    window.docks["Train"].raise_()
    panel.device.setCurrentText("cpu")
    panel.precision.setCurrentText("fp32")

    panel.select(base=entry.id, dataset=name)
    qtbot.waitUntil(lambda: "img/s" in panel.warnings.text(), timeout=RUN_MS)  # measured on a worker thread
    note = next(text for text in panel.warning_texts() if "StyleGAN3" in text)
    assert re.search(r"about [\d.]+ img/s here \(fp32\), so 1 kimg takes about \d+(\.\d)? (s|min|h)", note), note
    assert panel.warnings.isVisibleTo(panel)
    panel.select(base="scratch")  # StyleGAN2 and from-scratch runs say nothing of it
    assert not any("StyleGAN3" in text for text in panel.warning_texts())
    panel.select(base=entry.id)  # measured once: shown again at once
    assert any("img/s here (fp32)" in text for text in panel.warning_texts())
    if SHOTS:
        settle(qtbot, window)
        window.docks["Train"].grab().save(os.path.join(SHOTS, "sg3_train_cpu_estimate.png"))

    panel.overrides = dict(SHORT_RUN)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.running(), panel.failure
    qtbot.waitUntil(lambda: not panel.running(), timeout=2 * RUN_MS)  # it also measures its speed first
    assert panel.failure is None and kinds(panel)[-1] == "finished", panel.failure
    assert panel.events[-1]["status"] == "completed"
    started = next(e for e in panel.events if e["event"] == "started")
    assert started["family"] == "stylegan3" and started["base"] == str(entry.path)
    assert any("StyleGAN3 on the CPU" in e.get("message", "") for e in panel.events if e["event"] == "warning")
    assert len(panel.samples()) >= 2
    if SHOTS:
        window.docks["Train"].grab().save(os.path.join(SHOTS, "sg3_train_finished.png"))

    panel.open_selected_checkpoint()  # the trained StyleGAN3 opens through the library, camera and all
    label = panel.selected_snapshot_name()
    qtbot.waitUntil(lambda: opened(window) == label, timeout=RUN_MS)
    settle(qtbot, window)
    assert window.controller.session.meta.family == "stylegan3"
    assert window.explore_panel.camera.isVisibleTo(window)
