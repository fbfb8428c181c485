"""The Train panel driving real `python -m training` processes on the CPU: live samples and curves from the
JSON events, Stop leaving a resumable checkpoint that opens in Explore, a killed run reported while the app
stays responsive, and resuming it from the past-runs list."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QTimer

from studio.engine.datasets import DatasetStore
from studio.engine.runs import PRESETS, read_run, train_command
from studio.engine.selftest import make_random_model
from studio.ui.panels.train import CUSTOM_LENGTH, SCRATCH
from tests.studio.ui_support import settle
from training.cli import build_parser, config_from_args

RUN_MS = 90_000
# A 16 px network small enough for seconds of CPU, written like the advanced options would be.
TINY = {
    "channel_base": 256, "channel_max": 32, "z_dim": 32, "w_dim": 32, "map_layers": 2, "batch": 8,
    "kimg": 2.0, "time_budget_s": None, "sample_kimg": 0.04, "snap_kimg": 0.04, "progress_interval_s": 0.2,
    "device": "cpu", "precision": "fp32", "metrics_kimg": 0.0,
}


pytestmark = pytest.mark.usefixtures("event_loop_cycled", "one_thread_training")


def blobs(window, tmp_path: Path) -> str:
    """A saved 16 px dataset of 24 procedural images (coloured discs), listed in the Train panel."""
    folder = tmp_path / "blobs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for i in range(24):
        image = np.full((32, 32, 3), 30, np.uint8)
        cx, cy, r = rng.integers(8, 24, 2).tolist() + [int(rng.integers(4, 9))]
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(80, 255, 3)
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    DatasetStore().prepare("blobs", [folder], 16)
    window.dataset_panel.refresh()
    window.dataset_panel.datasets_changed.emit()
    return "blobs"


def start_tiny(panel, dataset: str, **changes) -> None:
    panel.select(base="scratch", dataset=dataset)
    panel.overrides = {**TINY, **changes}
    panel.start()
    assert panel.running(), panel.failure


def kinds(panel) -> list[str]:
    return [event["event"] for event in panel.events]


def opened(window) -> str:
    return window.controller.entry.name if window.controller.entry is not None else ""


def resumed_starts(panel) -> list[dict]:
    return [e for e in panel.events if e["event"] == "started" and e["resumed"]]


def test_run_live_samples_curves_stop_explore_resume_and_kill(qtbot, window, tmp_path, make_window):
    """One test, two processes: each start of `python -m training` costs seconds of imports on this CPU."""
    panel = window.train_panel
    name = blobs(window, tmp_path)
    panel.select(base=window.controller.entry.id, dataset=name)  # the 32 px tiny model
    assert any("Small dataset (24 images)" in text for text in panel.warning_texts())
    assert any("base model is 32 px and the dataset 16 px" in text for text in panel.warning_texts())
    panel.select(base="scratch")
    assert not any("base model" in text for text in panel.warning_texts())
    command = train_command({**panel.build_options(), **TINY})
    assert command[1:3] == ["-m", "training"] and command[-2:] == ["--events", "jsonl"]

    # Live: sample grids, curves and quality checks come from the run's real events.
    start_tiny(panel, name, metrics_kimg=0.08, metrics_n=24)
    qtbot.waitUntil(lambda: len(panel.samples()) >= 2 and panel.losses.points() >= 4 and panel.fd.points() >= 1,
                    timeout=RUN_MS)
    assert set(panel.precision_recall.series) == {"precision", "recall"}
    assert panel.c2st.points() == panel.fd.points() and 0 <= panel.c2st.series["C2ST"][0][1] <= 1
    assert "started" in kinds(panel) and "progress" in kinds(panel)
    grid = panel.sample_image
    assert (grid.width(), grid.height()) == (8 * 16, 4 * 16)  # the 8×4 grid of 16 px samples, as written
    assert not panel.sample_view.pixmap().isNull()
    assert set(panel.losses.series) == {"G", "D"} and panel.augment.points() >= 2
    assert "kimg" in panel.status.text() and "img/s" in panel.status.text()
    panel.timeline.setValue(0)  # the timeline scrubs back to the untrained generator's grid
    assert panel.timeline_label.text() == "0 kimg"

    # Stop: the run checkpoints and exits cleanly; it can be resumed.
    panel.stop()
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_MS)
    assert panel.failure is None and kinds(panel)[-1] == "finished"
    assert panel.events[-1]["status"] == "stopped"
    run = read_run(panel.run_dir)
    assert run.status == "stopped" and run.resumable and panel.pause_button.text() == "Resume"
    assert panel.runs.currentData().path == panel.run_dir

    # Resume (the same button, now `--resume`) continues from the checkpoint.
    stopped_at = run.kimg
    panel.pause_button.click()
    assert panel.running()
    qtbot.waitUntil(lambda: bool(resumed_starts(panel)), timeout=RUN_MS)
    assert resumed_starts(panel)[0]["cur_kimg"] == stopped_at

    # Meanwhile the stopped run's checkpoint opens in Explore through the library, like any model.
    assert panel.checkpoint.count() >= 1
    opened_snapshot = panel.checkpoint.currentData()
    panel.open_selected_checkpoint()  # named after its run and kimg, not its file
    label = f"{panel.run_dir.name} · {panel.checkpoint.currentText()}"
    assert re.fullmatch(r".+-blobs · \d+(\.\d+)? kimg", label) and panel.selected_snapshot_name() == label
    qtbot.waitUntil(lambda: opened(window) == label and bool(window.controller.directions), timeout=RUN_MS)
    settle(qtbot, window)
    assert window.controller.entry.meta["resolution"] == 16
    said: list[str] = []  # every message, not only the one on show: info fades, and the run keeps talking
    window.controller.message.connect(lambda _level, text: said.append(text))
    # The resumed run may have written a newer snapshot since: the artist adds the one they opened.
    panel.checkpoint.setCurrentIndex(panel.checkpoint.findData(opened_snapshot))
    panel.add_selected_checkpoint()  # already in the library from Explore: the same entry, the same name
    qtbot.waitUntil(lambda: any(text.startswith("Added “" + label) for text in said), timeout=RUN_MS)
    assert window.models_panel.names().count(label) == 1

    # Killed: the panel reports it, the app stays responsive, the past-runs list offers to resume.
    assert panel.running() and panel.events[-1]["event"] != "finished"
    ticks: list[float] = []
    timer = QTimer(interval=20, timeout=lambda: ticks.append(time.monotonic()))
    timer.start()
    panel.process.kill()
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_MS)
    qtbot.wait(200)
    timer.stop()
    assert panel.failure is not None and "killed or crashed" in panel.failure
    assert "Resume continues" in panel.failure
    assert window.messages.level() == "error" and "Training failed" in window.messages.text()
    assert len(ticks) > 5 and max(np.diff(ticks)) < 0.5
    assert panel.runs.currentData().status == "interrupted" and "interrupted" in panel.runs.currentText()
    assert panel.resume_button.isEnabled()
    reopened = make_window().train_panel  # the app reopened lists it, ready to resume
    assert reopened.runs.itemData(0).path == panel.run_dir and reopened.runs.itemData(0).resumable
    reopened.show_run(reopened.runs.itemData(0))
    assert len(reopened.samples()) >= 2 and reopened.losses.points() >= 4 and reopened.fd.points() >= 1
    assert reopened.c2st.points() == reopened.fd.points()  # read back from stats.jsonl, like FD
    assert reopened.resume_button.isEnabled()


def test_a_fresh_profile_starts_from_the_open_model_once_a_dataset_is_saved(
    qtbot, empty_home, tiny_model, make_window, monkeypatch, tmp_path
):
    """First start: the bundled model is registered and opened after the panel is built; saving the first
    dataset enables Start; the base follows Explore's model until the artist picks one."""
    monkeypatch.setattr("studio.engine.library.bundled_model_path", lambda: tiny_model)
    window = make_window()
    panel = window.train_panel
    qtbot.waitUntil(lambda: window.controller.entry is not None, timeout=RUN_MS)
    settle(qtbot, window)
    bundled = window.controller.entry
    assert bundled.bundled and panel.base.currentData() == bundled.id and panel.base.currentText() != "From scratch"
    assert not panel.start_button.isEnabled() and panel.dataset.count() == 0

    name = blobs(window, tmp_path)  # the first dataset saved: Start, without restarting
    assert panel.dataset.currentText() == name and panel.start_button.isEnabled()

    window.models_panel.import_files([make_random_model(tmp_path / "other.safetensors", seed=1)])
    qtbot.waitUntil(lambda: opened(window) == "other", timeout=RUN_MS)
    other = window.controller.entry
    assert panel.base.currentData() == other.id  # following the model open in Explore
    window.controller.close_model()
    assert panel.base.currentData() == bundled.id  # none open: the bundled model

    panel.base.setCurrentIndex(panel.base.findData(SCRATCH))  # the artist's own pick stays
    window.controller.open_model(other)
    qtbot.waitUntil(lambda: opened(window) == "other", timeout=RUN_MS)
    settle(qtbot, window)
    assert panel.base.currentData() == SCRATCH and panel.g_lr.value() == 0.0025
    assert panel.start_button.isEnabled()


def test_a_failed_run_is_listed_with_its_error(qtbot, window, tmp_path, make_window):
    panel = window.train_panel
    name = blobs(window, tmp_path)
    start_tiny(panel, name, data=str(tmp_path / "moved away"))
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_MS)
    assert "does not exist" in panel.failure
    run = panel.runs.currentData()  # the folder stays, and says why
    assert run.path == panel.run_dir and run.status == "failed" and "moved away" in run.error
    assert panel.runs.currentText().endswith("failed") and not panel.resume_button.isEnabled()
    reopened = make_window().train_panel  # the app reopened: selecting the run shows why it failed
    assert reopened.runs.itemData(0).path == run.path and reopened.runs.itemText(0).endswith("failed")
    reopened.show_run(reopened.runs.itemData(0))
    assert reopened.status.text().startswith(f"{run.name} failed at 0 kimg: the dataset")
    assert "moved away" in reopened.status.text()


def test_a_time_budget_shows_measuring_then_its_length(qtbot, window):
    panel = window.train_panel
    progress = {"event": "progress", "step": 3, "kimg": 0.024, "total_kimg": None, "losses": {"G": 1.0, "D": 0.5},
                "images_per_s": 30.0, "eta_s": None}
    panel.handle_event({"event": "started", "kimg": None, "device": "CPU", "dataset_size": 24, "resolution": 16})
    assert "measuring its speed" in panel.status.text()
    panel.handle_event(progress)
    assert "measuring speed…" in panel.status.text() and panel.bar.text() == "Measuring speed…"
    panel.handle_event({"event": "budget", "images_per_s": 31.5, "total_kimg": 18.9, "time_budget_s": 600})
    assert "31.5 images per second" in window.messages.text() and "18.9 kimg" in window.messages.text()
    panel.handle_event({**progress, "kimg": 9.45, "total_kimg": 18.9, "eta_s": 300.0})
    assert "9.45 / 18.9 kimg" in panel.status.text() and "ETA 5 min 00 s" in panel.status.text()
    assert panel.bar.value() == 500 and panel.bar.text() == "50 %"


def test_compiling_is_shown_until_the_first_step(qtbot, window):
    panel = window.train_panel
    panel.handle_event({"event": "started", "kimg": 200.0, "device": "CPU", "dataset_size": 24, "resolution": 64})
    panel.handle_event({"event": "compile", "status": "compiling",
                        "message": "compiling G and D's feature network for this machine"})
    assert panel.status.text().startswith("Compiling the networks for this machine before the first step")
    panel.handle_event({"event": "compile", "status": "compiled", "seconds": 61.0,
                        "message": "G and D's feature network compiled in 61 s"})
    assert panel.status.text().startswith("Compiling the networks")
    panel.handle_event({"event": "progress", "step": 1, "kimg": 0.016, "total_kimg": 200.0, "losses": {"G": 1.0},
                        "images_per_s": 21.0, "eta_s": 9000.0})
    assert panel.status.text().startswith("0.02 / 200 kimg · step 1 · 21.0 img/s")


def test_error_event_and_exit_code_are_shown(qtbot, window):
    """The panel's side of the protocol with a stand-in process that fails the way training reports it."""
    panel = window.train_panel
    script = "import json; print(json.dumps({'event': 'error', 'message': 'the dataset is gone'})); exit(2)"
    panel._launch([sys.executable, "-c", script], panel.run_dir or Path("nowhere"))
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_MS)
    assert panel.failure.startswith("Training failed: the dataset is gone.")
    assert "the dataset is gone" in window.messages.text()
    panel._launch([sys.executable, "-c", "import sys; sys.stderr.write('Segmentation fault'); exit(139)"],
                  Path("nowhere"))
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_MS)
    assert "exited with code 139" in panel.failure and "Segmentation fault" in panel.failure


def test_augment_p_near_one_warns_of_leaking(qtbot, window):
    panel = window.train_panel
    progress = {"event": "progress", "step": 9, "kimg": 1.0, "total_kimg": 2.0,
                "losses": {"G": 1.0, "D": 0.5}, "images_per_s": 30.0, "eta_s": 40.0}
    panel.handle_event({**progress, "augment_p": 0.5})
    assert not any("leak" in text for text in panel.warning_texts())
    panel.handle_event({**progress, "augment_p": 0.85})
    assert any("Augment p reached 0.85" in text and "leak" in text for text in panel.warning_texts())
    assert "ETA 40 s" in panel.status.text() and panel.bar.value() == 500


def test_advanced_options_reach_the_training_command(qtbot, window, tmp_path):
    panel = window.train_panel
    name = blobs(window, tmp_path)
    panel.select(base=window.controller.entry.id, dataset=name)
    panel.advanced_toggle.click()
    assert panel.advanced.isVisible() and panel.g_lr.value() == 0.001  # the few-image recipe's rate
    assert [panel.preset.itemText(i) for i in range(panel.preset.count())][:3] == list(PRESETS)
    assert panel.build_options()["time_budget_s"] == 3600  # about an hour, measured on this machine
    panel.preset.setCurrentIndex(0)
    assert panel.build_options()["time_budget_s"] == 600 and "kimg" not in panel.build_options()
    panel.preset.setCurrentIndex(panel.preset.findData(CUSTOM_LENGTH))  # a length in kimg, in Advanced
    assert panel.custom_kimg.isEnabled() and panel.advanced_toggle.isChecked()
    panel.custom_kimg.setValue(20)
    panel.g_lr.setValue(0.0015)
    panel.d_lr.setValue(0.0005)
    panel.batch.setValue(4)
    panel.aug.setCurrentIndex(panel.aug.findData("diffaug"))
    panel.freeze_d.setValue(2)
    panel.r1_gamma.setValue(0.5)
    panel.precision.setCurrentText("fp32")
    panel.device.setCurrentText("cpu")
    panel.quality_every.setValue(5)
    command = train_command(panel.build_options())
    config = config_from_args(build_parser().parse_args(command[3:]))
    assert (config.kimg, config.g_lr, config.d_lr, config.time_budget_s) == (20.0, 0.0015, 0.0005, None)
    assert (config.batch, config.aug) == (4, "diffaug")
    assert (config.freeze_d, config.r1_gamma, config.precision, config.device) == (2, 0.5, "fp32", "cpu")
    assert config.base == str(window.controller.entry.path) and config.metrics_kimg == 5
    assert config.data == str(DatasetStore().get(name).path)
    panel.r1_gamma.setValue(-1)
    assert "r1_gamma" not in panel.build_options()  # "auto": ADA's heuristic


def test_scratch_width_choice_estimates_its_cost_on_the_cpu(window, tmp_path):
    """From scratch the panel offers the automatic width (the run sizes it) or StyleGAN2's full width, with the
    CPU estimate showing how much slower the full one trains; fine-tuning hides the choice (the base has one)."""
    panel = window.train_panel
    name = blobs(window, tmp_path)
    panel.device.setCurrentText("cpu")
    panel.precision.setCurrentText("fp32")
    panel.select(base="scratch", dataset=name)
    choice = panel.width_choice
    assert choice.combo.isVisibleTo(panel) and choice.note.isVisibleTo(panel)
    assert "128 channels at most" in choice.note.text() and "img/s" in choice.note.text()
    automatic = float(re.search(r"about ([\d.e+-]+) img/s", choice.note.text()).group(1))
    options = panel.build_options()
    assert "channel_base" not in options and "z_dim" not in options  # the run chooses, and records it

    choice.combo.setCurrentIndex(choice.combo.findData("full"))
    full = float(re.search(r"about ([\d.e+-]+) img/s", choice.note.text()).group(1))
    assert "512 channels at most" in choice.note.text() and "fp32" in choice.note.toolTip()
    assert full < automatic / 10  # the 16 px full width is dozens of times the work
    assert {k: panel.build_options()[k] for k in ("channel_base", "channel_max", "z_dim", "w_dim")} == {
        "channel_base": 16384, "channel_max": 512, "z_dim": 512, "w_dim": 512
    }

    panel.select(base=window.controller.entry.id)
    assert not choice.combo.isVisibleTo(panel) and not choice.note.isVisibleTo(panel)
    assert "channel_base" not in panel.build_options()
