"""Faults a long run meets, injected for real: sources that change under a run, damaged checkpoints, a disk
that fills up mid-write, outputs that cannot be written, a second process on the same run, a killed one."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoints import load_checkpoint, save_checkpoint
from tests.training.conftest import make_discs, tiny_config
from tests.training.test_loop import ONE_THREAD, REPO, cli_args, events_of
from training.dataset import prepare_dataset
from training.loop import TrainingError, train
from training.run_dir import RunDir

# A checkpoint every 2 steps of 8 images, all kept; ADA moving fast, so its state matters to exact resume.
SNAPS = dict(snap_kimg=0.016, sample_kimg=0.032, keep_checkpoints=10, aug="ada", ada_kimg=5.0)


def stop_after(steps: int):
    """An abort_fn (asked once per step) that stops a run after `steps` steps; pair it with `seen` as progress_fn."""
    seen = {"started": False, "steps": 0}

    def note(event: dict) -> None:
        seen["started"] |= event["event"] == "started"

    def abort() -> bool:
        if seen["started"]:
            seen["steps"] += 1
        return seen["steps"] > steps

    return note, abort


def weights(path: Path) -> dict[str, torch.Tensor]:
    bundle = load_checkpoint(path)
    return {f"{name}.{k}": v for name in ("G_ema", "G", "D") for k, v in getattr(bundle, name).state_dict().items()}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key, value in wa.items():
        assert torch.equal(value, wb[key]), f"{key} differs"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_discs(tmp_path_factory.mktemp("source"), 12, seed=1)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, source) -> Path:
    """The uninterrupted run the interrupted ones must match bit for bit: its last network file."""
    result = train(tiny_config(source, tmp_path_factory.mktemp("whole") / "run", **SNAPS))
    return Path(result["checkpoint"])


# --- resume and fine-tune semantics ----------------------------------------------------------------------------


def test_resume_trains_on_the_runs_own_images_though_the_source_folder_changed(tmp_path, source, whole_run):
    folder = tmp_path / "photos"
    shutil.copytree(source, folder)
    config = tiny_config(folder, tmp_path / "run", **SNAPS)
    train(config, *stop_after(3))
    make_discs(tmp_path / "more", 5, seed=7)
    for path in (tmp_path / "more").iterdir():  # the artist adds five pictures and removes one
        shutil.move(path, folder / f"new-{path.name}")
    sorted(folder.glob("disc-*.png"))[0].unlink()

    events: list[dict] = []
    result = train(config, events.append, resume=True)
    started = next(e for e in events if e["event"] == "started")
    assert started["dataset_size"] == 12  # the 12 images it started with, not the 16 there are now
    assert not any(e["event"] == "import_report" for e in events)  # nothing imported again
    changed = [e for e in events if e["event"] == "warning" and e.get("source_changed")]
    assert len(changed) == 1 and "5 added, 1 removed files" in changed[0]["message"]
    assert "start a new run" in changed[0]["message"]
    assert_same_weights(Path(result["checkpoint"]), whole_run)  # the same images in the same order


def test_resume_keeps_the_images_of_a_prepared_dataset_that_grew(tmp_path, source):
    prepared = tmp_path / "saved-dataset"  # as the app saves datasets, and runs them
    prepare_dataset([source], prepared, 16)
    config = tiny_config(prepared, tmp_path / "run", **SNAPS)
    train(config, *stop_after(3))
    own = RunDir(config.out).root / "dataset"
    shard = next(own.glob("images-*.npy"))
    assert shard.stat().st_ino == (prepared / shard.name).stat().st_ino  # linked: no second copy on disk
    prepare_dataset([make_discs(tmp_path / "more", 4, seed=9)], prepared, 16)  # the artist adds 4 images

    events: list[dict] = []
    train(config, events.append, resume=True)
    assert next(e for e in events if e["event"] == "started")["dataset_size"] == 12
    changed = [e["message"] for e in events if e["event"] == "warning" and e.get("source_changed")]
    assert len(changed) == 1 and "4 added images" in changed[0], changed


def test_an_unchanged_source_resumes_without_a_warning(tmp_path, source):
    config = tiny_config(source, tmp_path / "run", **SNAPS)
    train(config, *stop_after(1))
    events: list[dict] = []
    train(config, events.append, resume=True)
    assert not [e for e in events if e["event"] == "warning" and "small" not in e["message"]]


def test_a_fine_tune_starts_ada_from_zero_not_from_the_base_models_p(tmp_path, source):
    first = train(tiny_config(source, tmp_path / "base", kimg=0.008))
    base = tmp_path / "base-p.safetensors"
    save_checkpoint(base, dataclasses.replace(load_checkpoint(first["checkpoint"]), augment_p=0.7))
    events: list[dict] = []
    config = tiny_config(source, tmp_path / "tuned", base=str(base), resolution=None, kimg=0.008, aug="ada")
    train(config, events.append)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[0]["augment_p"] < 0.01  # ADA moves p by about 1e-4 per step here


# --- checkpoint faults -------------------------------------------------------------------------------------


def damage_network(paths) -> None:
    data = paths.network.read_bytes()
    paths.network.write_bytes(data[: len(data) // 2])  # truncated: the disk filled, or a copy broke off


def damage_state(paths) -> None:
    data = bytearray(paths.state.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # bytes flipped in the middle
    paths.state.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [damage_network, damage_state], ids=["truncated network", "corrupt state"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, source, whole_run, damage):
    config = tiny_config(source, tmp_path / "run", **SNAPS)
    train(config, *stop_after(5))  # checkpoints at 2 and 4 steps, and the stop's at 5
    run = RunDir(config.out)
    latest = run.latest_checkpoint()
    assert [c.nimg for c in run.checkpoints()] == [16, 32, 40]
    damage(latest)

    events: list[dict] = []
    result = train(config, events.append, resume=True)
    warnings = [e["message"] for e in events if e["event"] == "warning" and "0.04 kimg" in e["message"]]
    assert len(warnings) == 1 and "cannot be read" in warnings[0] and "resumes from the one before" in warnings[0]
    assert next(e for e in events if e["event"] == "started")["cur_kimg"] == 0.032
    assert latest.network.with_name(latest.network.name + ".damaged").exists()  # kept aside, not deleted
    assert_same_weights(Path(result["checkpoint"]), whole_run)


def test_resume_with_no_readable_checkpoint_says_so(tmp_path, source):
    config = tiny_config(source, tmp_path / "run", **SNAPS)
    train(config, *stop_after(1))
    for paths in RunDir(config.out).checkpoints():
        damage_network(paths)
    with pytest.raises(TrainingError, match="none of the checkpoints .* can be read"):
        train(config, resume=True)


class DiskFull:
    """Makes the `fail_at`-th write through `save` (a function writing a file) write half its bytes, then fail
    as a full disk does; records the digests of the checkpoints there were at that moment."""

    def __init__(self, save, to_bytes, fail_at: int, run: RunDir):
        self.save, self.to_bytes, self.fail_at, self.run = save, to_bytes, fail_at, run
        self.calls, self.before = 0, {}

    def __call__(self, obj, path, *args, **kwargs):
        self.calls += 1
        if self.calls != self.fail_at:
            return self.save(obj, path, *args, **kwargs)
        self.before = {c.network: digest(c.network) for c in self.run.checkpoints()}
        data = self.to_bytes(obj, *args, **kwargs)
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


def state_disk_full(monkeypatch, fail_at: int, run: RunDir) -> DiskFull:
    def to_bytes(obj):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        return buffer.getvalue()

    real_save = torch.save
    full = DiskFull(real_save, to_bytes, fail_at, run)
    monkeypatch.setattr(torch, "save", full)
    return full


def network_disk_full(monkeypatch, fail_at: int, run: RunDir) -> DiskFull:
    import safetensors.torch

    import models.checkpoints.native as native

    full = DiskFull(native.save_file, lambda t, metadata=None: safetensors.torch.save(t, metadata), fail_at, run)
    monkeypatch.setattr(native, "save_file", full)
    return full


@pytest.mark.parametrize("inject", [state_disk_full, network_disk_full], ids=["state file", "network file"])
def test_a_checkpoint_write_failing_half_way_keeps_the_earlier_ones_and_the_run_goes_on(
    tmp_path, source, monkeypatch, inject
):
    config = tiny_config(source, tmp_path / "run", **SNAPS)
    run = RunDir(config.out)
    full = inject(monkeypatch, 2, run)  # the checkpoint at 0.032 kimg
    events: list[dict] = []
    result = train(config, events.append)

    assert result["status"] == "completed" and result["kimg"] == 0.064
    warning = next(e["message"] for e in events if e["event"] == "warning" and "checkpoint" in e["message"])
    assert "cannot write the checkpoint at 0.032 kimg" in warning and "No space left on device" in warning
    assert "the last one, at 0.016 kimg, is intact" in warning and "training goes on" in warning
    assert [c.nimg for c in run.checkpoints()] == [16, 48, 64]
    assert full.before == {run.checkpoint_paths(16).network: digest(run.checkpoint_paths(16).network)}
    leftovers = [p.name for p in run.checkpoints_dir.iterdir() if "network-000000032" in p.name or "tmp" in p.name]
    assert leftovers == []  # no half-written file, no orphan state file
    for paths in run.checkpoints():
        load_checkpoint(paths.network)
        torch.load(paths.state, weights_only=True)


def test_a_run_whose_last_checkpoint_cannot_be_written_ends_with_an_error(tmp_path, source, monkeypatch):
    config = tiny_config(source, tmp_path / "run", **SNAPS)
    run = RunDir(config.out)
    network_disk_full(monkeypatch, 4, run)  # the final checkpoint, at 0.064 kimg
    with pytest.raises(TrainingError, match=r"cannot write the checkpoint at 0.064 kimg .*0.048 kimg, is intact"):
        train(config)
    assert [c.nimg for c in run.checkpoints()] == [16, 32, 48]
    recorded = [json.loads(line) for line in run.stats_path.open()]
    assert recorded[-1]["event"] == "error" and "No space left" in recorded[-1]["message"]
    monkeypatch.undo()
    assert train(config, resume=True)["status"] == "completed"  # room again: resume finishes it


def test_samples_and_log_lines_that_cannot_be_written_do_not_stop_the_run(tmp_path, source):
    config = tiny_config(source, tmp_path / "run", **SNAPS)
    run = RunDir(config.out)
    events: list[dict] = []

    def sabotage(event: dict) -> None:  # once the run starts: the log and the samples folder become unwritable
        events.append(event)
        if event["event"] == "started":
            run.stats_path.unlink(missing_ok=True)
            run.stats_path.mkdir()  # appending to a folder fails, for root too
            shutil.rmtree(run.samples_dir)
            run.samples_dir.write_bytes(b"")  # a file where the folder was

    result = train(config, sabotage)
    assert result["status"] == "completed" and result["kimg"] == 0.064
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert sum("stats.jsonl" in w for w in warnings) == 1, warnings  # once, not at every line
    assert sum("sample grid" in w for w in warnings) == 1, warnings
    assert all("training goes on" in w for w in warnings if "stats" in w or "sample" in w)
    assert [c.nimg for c in run.checkpoints()] == [16, 32, 48, 64]


# --- one trainer per run folder ------------------------------------------------------------------------------


def test_a_second_process_is_refused_by_pid_and_a_killed_ones_lock_is_taken_over(tmp_path, source):
    out = tmp_path / "run"
    first = subprocess.Popen(cli_args(source, out, 50), stdout=subprocess.PIPE, text=True, cwd=REPO, env=ONE_THREAD)
    try:
        for line in first.stdout:
            if json.loads(line)["event"] == "checkpoint":
                break
        config_before = (out / "config.json").read_bytes()
        # A Resume while the first trains, here with a change of options.
        second = subprocess.run(
            [sys.executable, "-m", "training", "--resume", str(out), "--events", "jsonl", "--set", "kimg=1"],
            capture_output=True, text=True, cwd=REPO, env=ONE_THREAD, timeout=120,
        )
        assert second.returncode == 2, second.stdout + second.stderr
        error = events_of(second.stdout)[-1]
        assert error["event"] == "error" and f"another process (PID {first.pid}) is training" in error["message"]
        assert (out / "config.json").read_bytes() == config_before  # the refused resume changed nothing
        assert first.poll() is None  # and the first trains on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        first.stdout.close()

    done = subprocess.run(
        [sys.executable, "-m", "training", "--resume", str(out), "--events", "jsonl", "--set", "kimg=0.048"],
        capture_output=True, text=True, cwd=REPO, env=ONE_THREAD, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    events = events_of(done.stdout)
    taken = [e["message"] for e in events if e["event"] == "warning" and "taking the run over" in e["message"]]
    assert len(taken) == 1 and f"process {first.pid} was training this run" in taken[0]
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "completed"
    assert not RunDir(out).in_use() and RunDir(out).lock_path.read_bytes()[1:] == b""  # released, no PID left
