"""A run resumed after its dataset grew: it trains on the images it started with, the Train panel says the
dataset changed and offers a new run on the images as they are now, which then trains on all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.engine.datasets import DatasetStore
from studio.engine.runs import new_run_dir, read_run
from tests.studio.test_ui_train import RUN_MS, TINY, blobs
from tests.studio.ui_support import settle
from training.config import TrainConfig
from training.loop import train

pytestmark = pytest.mark.usefixtures("event_loop_cycled", "one_thread_training")
PROCESS_MS = 4 * RUN_MS  # a process start, import included, on a CPU shared with other work
SHOTS = Path("/work/wt/shots")


def more_images(folder: Path, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"more-{i}.png")
    return folder


def test_a_resumed_run_whose_dataset_grew_says_so_and_offers_a_new_run(qtbot, window, tmp_path):
    panel = window.train_panel
    name = blobs(window, tmp_path)
    store = DatasetStore()
    options = {**TINY, "kimg": 0.032, "data": str(store.get(name).path), "out": str(new_run_dir(name, panel.runs_root))}
    asked = []

    def stop_after_two_steps() -> bool:  # asked once before each step
        asked.append(True)
        return len(asked) > 2

    train(TrainConfig(**options, resolution=16), abort_fn=stop_after_two_steps)
    run_dir = Path(options["out"])
    assert read_run(run_dir).status == "stopped"
    store.prepare(name, [more_images(tmp_path / "more", 6)], 16)  # the artist adds six pictures
    assert store.get(name).count == 30

    panel.refresh_runs()
    panel.resume(run_dir)
    qtbot.waitUntil(lambda: not panel.running(), timeout=PROCESS_MS)
    assert panel.failure is None and panel.events[-1]["status"] == "completed"
    assert next(e for e in panel.events if e["event"] == "started")["dataset_size"] == 24  # its own 24 images
    changed = [text for text in panel.warning_texts() if "changed since this run started" in text]
    assert len(changed) == 1 and "6 added images" in changed[0]
    assert not panel.rerun_button.isHidden() and panel.rerun_button.isEnabled()
    assert f"⚠ {changed[0]}" in panel.warnings.text()

    panel.rerun_button.click()
    assert panel.running() and panel.run_dir != run_dir and panel.rerun_button.isHidden()
    qtbot.waitUntil(lambda: not panel.running(), timeout=PROCESS_MS)
    started = next(e for e in panel.events if e["event"] == "started")
    assert not started["resumed"] and started["dataset_size"] == 30  # all of them now
    assert panel.events[-1]["event"] == "finished" and panel.events[-1]["status"] == "completed"
    assert TrainConfig.load(panel.run_dir / "config.json").channel_max == TINY["channel_max"]  # same settings


def test_the_source_changed_warning_offers_a_new_run_with_the_same_settings(qtbot, window, tmp_path):
    """The panel's side alone (one process start, not waited for): the warning, the offer, the new run's folder."""
    panel = window.train_panel
    name = blobs(window, tmp_path)
    run_dir = new_run_dir(name, panel.runs_root)
    run_dir.mkdir(parents=True)
    TrainConfig(**{**TINY, "data": str(DatasetStore().get(name).path), "out": str(run_dir)}, resolution=16).dump(
        run_dir / "config.json"
    )
    panel.show_run(read_run(run_dir))
    assert panel.rerun_button.isHidden()
    message = f"{run_dir} changed since this run started (6 added images): the run goes on with the 24 images"
    panel.handle_event({"event": "warning", "message": message, "source_changed": True})
    assert not panel.rerun_button.isHidden() and f"⚠ {message}" in panel.warnings.text()
    window.docks["Train"].raise_()
    settle(qtbot, window)
    SHOTS.mkdir(parents=True, exist_ok=True)
    window.docks["Train"].grab().save(str(SHOTS / "train-dataset-changed.png"))

    panel.rerun_button.click()
    assert panel.running() and panel.run_dir != run_dir and panel.rerun_button.isHidden()
    arguments = panel.process.arguments()
    assert arguments[arguments.index("--out") + 1] == str(panel.run_dir)
    assert f"channel_max={TINY['channel_max']}" in arguments and "measured_images_per_s=null" in arguments
    panel.process.kill()
    qtbot.waitUntil(lambda: not panel.running(), timeout=PROCESS_MS)
