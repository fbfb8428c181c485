"""The Qt-free halves of the Dataset and Train panels: the dataset store and the view of training runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import main as studio_main
from studio.engine.datasets import DatasetError, DatasetStore, PreparedImages, SourceImages, scan_sources
from studio.engine.runs import (
    ConfigError,
    EventReader,
    format_kimg,
    list_runs,
    read_run,
    resume_command,
    snapshot_name,
    train_command,
)
from training.cli import build_parser, config_from_args
from training.run_dir import RunDir


def images(folder: Path, n: int = 5, size: tuple[int, int] = (48, 32)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_store_prepares_lists_renames_deletes_and_keeps_the_report(tmp_path):
    source = images(tmp_path / "src")
    (source / "bad.png").write_bytes(b"")
    store = DatasetStore(tmp_path / "datasets")
    report = store.prepare("faces", [source], 16, mode="stretch", xflip=True)
    assert report.dataset_size == 5 and len(report.rejected) == 1
    (info,) = store.datasets()
    assert (info.name, info.count, info.resolution) == ("faces", 5, 16)
    assert (info.mode, info.xflip) == ("stretch", True)
    assert store.report("faces")["counts"]["rejected"] == 1
    assert store.unique_name("faces") == "faces 2" and store.unique_name("a/b") == "a_b"
    with pytest.raises(DatasetError, match="cannot be a dataset name"):
        store.prepare("../escape", [source], 16)
    store.prepare("other", [source], 16)
    with pytest.raises(DatasetError, match="already exists"):
        store.rename("faces", "other")
    assert store.rename("faces", "portraits").name == "portraits"
    assert PreparedImages(store.get("portraits").path).thumbnail(0, 8).shape == (8, 8, 3)
    store.delete("portraits")
    assert [d.name for d in store.datasets()] == ["other"] and len(list(source.iterdir())) == 6
    with pytest.raises(DatasetError, match="no dataset named"):
        store.delete("portraits")


def test_store_refuses_a_dataset_without_usable_images_and_keeps_nothing(tmp_path):
    store = DatasetStore(tmp_path / "datasets")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "empty.png").write_bytes(b"")
    (broken / "notes.jpg").write_text("not a picture\n")
    for source, scanned in ((empty, "Scanned 0 files"), (broken, "Scanned 2 files: 0 usable, 2 rejected")):
        with pytest.raises(DatasetError, match=f"“nothing” has no usable images, so it was not saved. {scanned}"):
            store.prepare("nothing", [source], 16)
        assert store.datasets() == [] and list(store.root.iterdir()) == []
    # Adding only unusable files to a dataset that has images is no error: it stays as it was.
    store.prepare("set", [images(tmp_path / "src", n=1)], 16)
    report = store.prepare("set", [broken], 16)
    assert report.dataset_size == 1 and store.get("set").count == 1 and len(report.rejected) == 2


def test_at_resolution_prepares_again_from_the_original_files(tmp_path):
    store = DatasetStore(tmp_path / "datasets")
    store.prepare("set", [images(tmp_path / "src")], 16)
    assert store.at_resolution("set", 16) == store.get("set").path
    path = store.at_resolution("set", 32)
    assert PreparedImages(path).pixels(0).shape == (32, 32, 3) and len(PreparedImages(path)) == 5
    assert [d.name for d in store.datasets()] == ["set"]  # the copy is not listed as a dataset of its own
    store.rename("set", "renamed")  # the copy follows its dataset: reused, and deleted with it
    assert not path.exists()
    moved = path.with_name("renamed@32px")
    assert moved.exists() and store.at_resolution("renamed", 32) == moved
    store.delete("renamed")
    assert not moved.exists()


def test_source_images_thumbnails_and_crop_preview(tmp_path):
    report = scan_sources([images(tmp_path / "src", n=1, size=(80, 40))])
    source = SourceImages(report.images)
    assert source.thumbnail(0, 20).shape == (10, 20, 3)
    assert source.fitted(0, 16, "crop").shape == (16, 16, 3)
    source.close()


def test_train_command_is_what_the_cli_parses(tmp_path):
    options = {"data": str(tmp_path / "d"), "out": str(tmp_path / "run"), "base": "scratch", "resolution": 16,
               "kimg": 0.5, "batch": 8, "g_lr": 0.002, "r1_gamma": 0.5, "channel_max": 32}
    command = train_command(options)
    assert command[:3] == [sys.executable, "-m", "training"] and command[-2:] == ["--events", "jsonl"]
    config = config_from_args(build_parser().parse_args(command[3:]))
    for key, value in options.items():
        assert getattr(config, key) == value, key
    with pytest.raises(ConfigError, match="batch"):
        train_command({**options, "batch": 0})
    assert resume_command(tmp_path / "run")[1:] == ["-m", "training", "--resume", str(tmp_path / "run"),
                                                     "--events", "jsonl"]
    assert resume_command(tmp_path)[0] == sys.executable


def test_a_frozen_app_starts_training_through_its_own_train_subcommand(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    command = resume_command(tmp_path / "missing")
    assert command[:2] == [sys.executable, "train"]
    # and that subcommand is the training CLI itself: its JSON error event for a run folder that is not there
    assert studio_main(command[1:]) != 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "error" and "missing" in events[-1]["message"]


def test_a_frozen_windowed_app_trains_through_its_console_twin(tmp_path, monkeypatch):
    app, twin = tmp_path / "gan-studio.exe", tmp_path / "gan-studio-cli.exe"  # as the spec builds on Windows
    app.touch()
    twin.touch()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app))
    assert resume_command(tmp_path / "run")[:2] == [str(twin), "train"]


def test_event_reader_splits_partial_lines_and_keeps_stray_output():
    reader = EventReader()
    assert reader.feed(b'{"event": "started", "kim') == []
    assert reader.feed(b'g": 1}\nnot json\n{"event": "progress"}\n') == [
        {"event": "started", "kimg": 1}, {"event": "progress"}
    ]
    assert reader.other_lines == ["not json"]


def test_runs_are_listed_with_their_status(tmp_path):
    def run(name: str, *events: dict, checkpoint: bool = False, **config) -> Path:
        folder = tmp_path / name
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"kimg": 1.0, **config}))
        (folder / "stats.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "prog')
        if checkpoint:
            (folder / "checkpoints" / "network-000000200.safetensors").write_bytes(b"x")
            (folder / "checkpoints" / "network-000000200.state.pt").write_bytes(b"x")
        return folder

    progress = {"event": "progress", "kimg": 0.2}
    paused = {"event": "finished", "status": "stopped", "kimg": 0.2}
    run("a-done", progress, {"event": "finished", "status": "completed", "kimg": 1.0})
    stopped = run("b-paused", progress, paused, checkpoint=True)
    run("c-killed", progress, paused, {**progress, "kimg": 0.4}, checkpoint=True)  # resumed after a pause, killed
    run("d-error", progress, {"event": "error", "message": "the dataset /x does not exist"}, checkpoint=True)
    run("e-died-early", progress)  # killed before its first checkpoint
    training = run("f-training", progress, time_budget_s=600)  # a process holds its lock: it runs
    (tmp_path / "not-a-run").mkdir()
    with RunDir(training).held():
        runs = {r.name: r for r in list_runs(tmp_path)}
        assert list(runs) == ["f-training", "e-died-early", "d-error", "c-killed", "b-paused", "a-done"]
        assert runs["f-training"].status == "running" and not runs["f-training"].resumable
        assert runs["f-training"].total_kimg is None  # its time budget has not measured its speed yet
    assert read_run(training).status == "failed"  # its process gone without a checkpoint
    assert {name: r.status for name, r in runs.items() if name != "f-training"} == {
        "e-died-early": "failed", "d-error": "failed", "c-killed": "interrupted", "b-paused": "stopped",
        "a-done": "completed",
    }
    assert runs["d-error"].error == "the dataset /x does not exist" and runs["d-error"].resumable
    assert "before its first checkpoint" in runs["e-died-early"].error and not runs["e-died-early"].resumable
    assert runs["c-killed"].kimg == 0.4 and runs["c-killed"].resumable and runs["c-killed"].error is None
    assert read_run(stopped).resumable and read_run(stopped).checkpoints()[0][0] == 0.2
    assert runs["a-done"].total_kimg == 1.0 and not runs["a-done"].resumable


def test_snapshots_are_named_by_run_and_kimg(tmp_path):
    assert [format_kimg(k) for k in (0.16, 0.04, 4.008, 56.9, 100.0, 1234.5, 0)] == [
        "0.16", "0.04", "4.01", "56.9", "100", "1234", "0"
    ]
    assert snapshot_name(tmp_path / "20260101-120000-faces", 0.16) == "20260101-120000-faces · 0.16 kimg"
