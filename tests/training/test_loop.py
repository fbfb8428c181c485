"""The training loop for real: learning, ADA, exact resume, stop/kill/resume through the CLI, DDP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.checkpoints import load_checkpoint
from models.seeds import z_from_seed
from tests.models import pickle_fixtures as fx
from tests.training.conftest import TINY, tiny_config
from training import loop as loop_module
from training.cli import _Output, build_parser, config_from_args
from training.config import PRESETS, ConfigError, TrainConfig
from training.loop import InfiniteSampler, train
from training.run_dir import RunDir, to_uint8

REPO = Path(__file__).resolve().parents[2]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny networks: one thread per process is fastest


def cli_args(data: Path, out: Path, kimg: float, *extra: str) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "training",
        "--data",
        str(data),
        "--out",
        str(out),
        "--kimg",
        str(kimg),
        "--batch",
        "8",
        "--events",
        "jsonl",
        "--snap-kimg",
        "0.016",
        "--sample-kimg",
        "1",
    ]
    for key, value in TINY.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args + list(extra)


def events_of(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def render_seeds(G, n: int) -> np.ndarray:
    z = torch.cat([z_from_seed(s, G.z_dim) for s in range(n)])
    with torch.inference_mode():
        return to_uint8(G.render(z, noise_mode="const")).astype(np.float64)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("kimg", 0, "--kimg"),
        ("resolution", 48, "power of two"),
        ("aug", "magic", "--aug"),
        ("g_lr", 2.0, "--g-lr"),
        ("crop", "zoom", "--crop"),
        ("precision", "fp8", "--precision"),
        ("time_budget_s", 0, "--minutes"),
    ],
)
def test_bad_options_are_named(tmp_path, option, value, message):
    config = tiny_config(tmp_path, tmp_path / "run", **{option: value})
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_scratch_needs_a_resolution(tmp_path, discs_folder):
    config = tiny_config(discs_folder, tmp_path / "run", resolution=None)
    with pytest.raises(ConfigError, match="--resolution is required"):
        train(config)


def test_sampler_is_position_addressable_and_shares_out_ranks():
    whole = InfiniteSampler(10, seed=3)
    stream = [i for _, i in zip(range(25), iter(whole), strict=False)]
    assert sorted(stream[:10]) == list(range(10))  # each epoch is a permutation
    resumed = InfiniteSampler(10, seed=3, start=7)
    assert [i for _, i in zip(range(18), iter(resumed), strict=False)] == stream[7:25]
    rank0 = InfiniteSampler(10, seed=3, rank=0, world_size=2)
    rank1 = InfiniteSampler(10, seed=3, rank=1, world_size=2)
    r0 = [i for _, i in zip(range(5), iter(rank0), strict=False)]
    r1 = [i for _, i in zip(range(5), iter(rank1), strict=False)]
    assert r0 == stream[0:10:2] and r1 == stream[1:10:2]


@pytest.mark.slow
def test_training_moves_samples_toward_the_data(tmp_path, discs_folder):
    """A minute of training from scratch pulls the generator's colours toward red discs on white."""
    reals = np.stack(
        [np.asarray(p.convert("RGB").resize((16, 16))) for p in map(_open, sorted(discs_folder.iterdir()))]
    )
    real_mean = reals.reshape(-1, 3).mean(0)
    config = tiny_config(
        discs_folder,
        tmp_path / "run",
        kimg=1.6,
        batch=16,
        snap_kimg=1.6,
        sample_kimg=1.6,
        aug="none",
        g_lr=0.005,
        d_lr=0.005,
    )
    events: list[dict] = []
    result = train(config, events.append)
    assert result["status"] == "completed" and result["kimg"] >= 1.6
    bundle = load_checkpoint(result["checkpoint"])
    before = render_seeds(_initial_generator(config), 32)
    after = render_seeds(bundle.G_ema, 32)
    gap_before = np.abs(before.reshape(-1, 3).mean(0) - real_mean).mean()
    gap_after = np.abs(after.reshape(-1, 3).mean(0) - real_mean).mean()
    assert gap_after < 0.5 * gap_before, (gap_before, gap_after)
    # White background dominates the data: most generated pixels must have become light.
    assert (after.mean(-1) > 150).mean() > 0.5
    kinds = {e["event"] for e in events}
    assert {"started", "import_report", "progress", "samples", "checkpoint", "finished"} <= kinds
    progress = [e for e in events if e["event"] == "progress"][-1]
    assert {"step", "kimg", "losses", "augment_p", "images_per_s", "eta_s"} <= progress.keys()
    run = RunDir(config.out)
    assert json.loads(run.config_path.read_text())["kimg"] == 1.6
    assert sum(1 for _ in run.stats_path.open()) >= 3
    assert len(run.checkpoints()) <= config.keep_checkpoints


def _open(path):
    from PIL import Image

    return Image.open(path)


def _initial_generator(config: TrainConfig):
    from models.stylegan2 import Generator

    torch.manual_seed(config.seed)
    return Generator(
        config.z_dim,
        0,
        config.w_dim,
        config.resolution,
        3,
        mapping_kwargs=dict(num_layers=config.map_layers),
        synthesis_kwargs=dict(channel_base=config.channel_base, channel_max=config.channel_max),
    ).eval()


def test_ada_raises_p_on_a_tiny_dataset(tmp_path, discs_folder):
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(discs_folder.iterdir())[:6]:
        (few / path.name).write_bytes(path.read_bytes())
    config = tiny_config(few, tmp_path / "run", kimg=0.32, aug="ada", ada_kimg=1.0, ada_target=0.2, d_lr=0.01)
    events: list[dict] = []
    train(config, events.append)
    ps = [e["augment_p"] for e in events if e["event"] == "progress"]
    assert ps[-1] > 0.05 and ps[-1] > ps[0], ps


def test_fine_tuning_starts_from_the_base_and_freezes_d_blocks(tmp_path, discs_folder):
    first = train(tiny_config(discs_folder, tmp_path / "base", kimg=0.016))
    base = load_checkpoint(first["checkpoint"])
    config = tiny_config(
        discs_folder, tmp_path / "tuned", base=first["checkpoint"], resolution=None, kimg=0.016, freeze_d=1,
        batch_gpu=4,  # two passes of 4 accumulate into each batch of 8
    )
    events: list[dict] = []
    result = train(config, events.append)
    tuned = load_checkpoint(result["checkpoint"])
    frozen, trained = base.D.blocks()[0], tuned.D.blocks()[0]
    for (name, before), after in zip(frozen.state_dict().items(), trained.state_dict().values(), strict=True):
        assert torch.equal(before, after), f"frozen D block changed: {name}"
    assert not torch.equal(base.D.b4.out.weight, tuned.D.b4.out.weight)
    assert not torch.equal(base.G.synthesis.b4.conv1.weight, tuned.G.synthesis.b4.conv1.weight)
    assert next(e for e in events if e["event"] == "started")["resolution"] == 16


def test_fine_tuning_a_generator_without_d_warns_and_builds_one(tmp_path, discs_folder, tiny_generator_file):
    config = tiny_config(discs_folder, tmp_path / "run", base=str(tiny_generator_file), resolution=None, kimg=0.008)
    events: list[dict] = []
    result = train(config, events.append)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("no discriminator" in w for w in warnings)
    assert load_checkpoint(result["checkpoint"]).D is not None


def test_g_ema_moves_towards_g_by_its_half_life(tmp_path, discs_folder, tiny_generator_file):
    """One step of 8 images with a 4-image half-life (no ramp-up): G_ema = base + (1 - 0.5 ** (8 / 4)) · (G - base)."""
    config = tiny_config(
        discs_folder, tmp_path / "run", base=str(tiny_generator_file), resolution=None, kimg=0.008, ema_kimg=0.004,
        ema_rampup=None,
    )  # fmt: skip
    tuned = load_checkpoint(train(config)["checkpoint"])
    base = load_checkpoint(tiny_generator_file).G_ema
    params = zip(tuned.G_ema.named_parameters(), tuned.G.parameters(), base.parameters(), strict=True)
    moved = 0
    for (name, ema), g, b in params:
        torch.testing.assert_close(ema, b + 0.75 * (g - b), msg=name)
        moved += not torch.equal(g, b)
    assert moved > 0


def test_fine_tuning_from_a_tensorflow_pickle_starts_from_its_generator_and_discriminator(tmp_path, discs_folder):
    G, Gs, D = fx.make_generator(seed=2), fx.make_generator(seed=0), fx.make_discriminator()
    base = fx.write_pickle(tmp_path / "stylegan2-tiny.pkl", fx.tensorflow_pickle(G, D, Gs, tmp_path / "marker"))
    config = tiny_config(discs_folder, tmp_path / "run", base=str(base), resolution=None, kimg=0.008, freeze_d=1)
    events: list[dict] = []
    tuned = load_checkpoint(train(config, events.append)["checkpoint"])
    assert not [e for e in events if e["event"] == "warning" and "no discriminator" in e["message"]]
    # The frozen first D block is the TensorFlow D's, to the bit; the rest of D and G went on training.
    frozen = zip(D.blocks()[0].state_dict().items(), tuned.D.blocks()[0].state_dict().values(), strict=True)
    for (name, before), after in frozen:
        assert torch.equal(before, after), f"the base's frozen D block changed: {name}"
    assert not torch.equal(D.b4.out.weight, tuned.D.b4.out.weight)
    assert not torch.equal(G.synthesis.b4.conv1.weight, tuned.G.synthesis.b4.conv1.weight)
    assert tuned.G.synthesis.b4.conv1.weight.sub(G.synthesis.b4.conv1.weight).abs().max() < 0.1  # from G's, not fresh


def test_metrics_are_logged_during_training(tmp_path, discs_folder):
    config = tiny_config(discs_folder, tmp_path / "run", kimg=0.016, metrics_kimg=0.016, metrics_n=10)
    events: list[dict] = []
    train(config, events.append)
    metrics = [e for e in events if e["event"] == "metrics"]
    assert len(metrics) == 1 and metrics[0]["n_real"] == metrics[0]["n_fake"] == 10
    assert metrics[0]["fd_effnet"] > 0
    assert 0 <= metrics[0]["c2st"] <= 1 and metrics[0]["c2st_n"] == 10
    logged = [json.loads(line) for line in RunDir(config.out).stats_path.open()]
    assert any(e["event"] == "metrics" for e in logged)


@pytest.mark.slow
def test_a_resumed_run_with_metrics_matches_the_uninterrupted_run(tmp_path, discs_folder, monkeypatch):
    """The feature network is built once per process; building it must not draw from the training's random
    stream, or the resumed process (which builds it again at its first metrics) trains on different noise."""
    import functools

    from training import metrics
    from training.metrics import feature_extractor

    # The real two-sample test, trained for 5 batches instead of 300: a minute less per metrics call here.
    monkeypatch.setattr(metrics, "c2st", functools.partial(metrics.c2st, steps=5))
    settings = dict(kimg=0.040, metrics_kimg=0.016, metrics_n=10)  # 5 steps; metrics after steps 2 and 4
    whole = tiny_config(discs_folder, tmp_path / "whole", **settings)
    feature_extractor.cache_clear()  # each run below is a fresh process in real life
    train(whole)
    split = tiny_config(discs_folder, tmp_path / "split", **settings)
    seen = {"started": False, "steps": 0}

    def stop_after_three_steps() -> bool:
        seen["steps"] += seen["started"]
        return seen["steps"] > 3

    feature_extractor.cache_clear()
    train(split, lambda e: seen.update(started=seen["started"] or e["event"] == "started"), stop_after_three_steps)
    feature_extractor.cache_clear()
    assert train(split, resume=True)["step"] == 5
    a = load_checkpoint(RunDir(whole.out).latest_checkpoint().network)
    b = load_checkpoint(RunDir(split.out).latest_checkpoint().network)
    for (key, x), y in zip(a.G.state_dict().items(), b.G.state_dict().values(), strict=True):
        assert torch.equal(x, y), f"G.{key} differs after a resume with metrics"


RESUME_RECIPES = {
    "stylegan": dict(aug="ada", ada_kimg=5.0, pl_weight=1.0, pl_interval=2, r1_interval=2),
    "projected": dict(PRESETS["finetune-fast"], projected_size=64, pl_weight=1.0, pl_interval=2),
}


@pytest.mark.parametrize("recipe", sorted(RESUME_RECIPES))
def test_resumed_run_matches_uninterrupted_run(tmp_path, discs_folder, recipe):
    whole = tiny_config(discs_folder, tmp_path / "whole", **RESUME_RECIPES[recipe])
    train(whole)
    split = tiny_config(discs_folder, tmp_path / "split", **RESUME_RECIPES[recipe])
    seen = {"started": False, "steps": 0}

    def note(event: dict) -> None:
        seen["started"] |= event["event"] == "started"

    def stop_after_three_steps() -> bool:  # asked once per step once training has started
        if seen["started"]:
            seen["steps"] += 1
        return seen["steps"] > 3

    first = train(split, note, abort_fn=stop_after_three_steps)
    assert first["status"] == "stopped" and first["step"] == 3
    second = train(split, resume=True)
    assert second["status"] == "completed" and second["step"] == whole.kimg * 1000 / whole.batch
    a = load_checkpoint(RunDir(whole.out).latest_checkpoint().network)
    b = load_checkpoint(RunDir(split.out).latest_checkpoint().network)
    for name in ("G_ema", "G", "D") if recipe == "stylegan" else ("G_ema", "G"):
        for (key, x), y in zip(
            getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values(), strict=True
        ):
            assert torch.equal(x, y), f"{name}.{key} differs after resume"
    assert a.augment_p == b.augment_p
    if recipe == "projected":  # its D lives in the training state: heads, spectral-norm vectors, projections
        sa, sb = (torch.load(RunDir(c.out).latest_checkpoint().state, weights_only=True) for c in (whole, split))
        assert sa["projected_D"].keys() == sb["projected_D"].keys()
        for key, x in sa["projected_D"].items():
            assert torch.equal(x, sb["projected_D"][key]), f"projected D {key} differs after resume"


class SteppingClock:
    """The training loop's time.time(), moving on by `step_s` at every call: the run's pace then no longer
    depends on the machine's load, so a budget's arithmetic can be checked closely."""

    def __init__(self, step_s: float):
        self.now, self.step_s = 1.0e9, step_s

    def time(self) -> float:
        self.now += self.step_s
        return self.now


def test_a_time_budget_measures_the_speed_then_trains_what_fits(tmp_path, discs_folder, monkeypatch):
    budget, clock = 10.0, SteppingClock(0.05)
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(time=clock.time))
    config = tiny_config(discs_folder, tmp_path / "run", time_budget_s=budget, snap_kimg=1, sample_kimg=1,
                         progress_interval_s=0.2)
    events: list[dict] = []
    result = train(config, events.append)
    kinds = [e["event"] for e in events]
    measured = events[kinds.index("budget")]
    before, after = events[: kinds.index("budget")], events[kinds.index("budget") + 1 :]
    assert next(e for e in before if e["event"] == "started")["kimg"] is None  # no length until measured
    assert all(e["total_kimg"] is None and e["eta_s"] is None for e in before if e["event"] == "progress")
    total = measured["total_kimg"]
    assert all(e["total_kimg"] == total and e["eta_s"] >= 0 for e in after if e["event"] == "progress")
    assert "this run will train" in measured["message"] and measured["time_budget_s"] == budget
    # The length is what the measured speed fits into the budget left after start-up and the warm-up.
    speed, started_at = measured["images_per_s"], before[-1]["elapsed_s"]
    assert speed > 0 and speed * (budget - started_at) - config.batch <= total * 1000 <= speed * budget
    assert result["status"] == "completed" and result["kimg"] == total and total * 1000 % config.batch == 0
    assert 0 < started_at < result["elapsed_s"]
    assert budget * 0.9 < result["elapsed_s"] < budget * 1.1, result  # it ends near its budget
    saved = json.loads(RunDir(config.out).config_path.read_text())
    assert (saved["kimg"], saved["measured_images_per_s"], saved["time_budget_s"]) == (total, speed, budget)


def test_a_resumed_time_budget_run_keeps_its_measured_length(tmp_path, discs_folder, monkeypatch):
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(time=SteppingClock(0.05).time))  # load-proof pace
    config = tiny_config(discs_folder, tmp_path / "run", time_budget_s=10.0, snap_kimg=1, sample_kimg=1)
    events: list[dict] = []

    def stop_once_measured() -> bool:
        return any(e["event"] == "budget" for e in events)

    first = train(config, events.append, stop_once_measured)
    total = next(e for e in events if e["event"] == "budget")["total_kimg"]
    assert first["status"] == "stopped" and first["kimg"] < total
    resumed: list[dict] = []
    second = train(TrainConfig.load(RunDir(config.out).config_path), resumed.append, resume=True)
    assert next(e for e in resumed if e["event"] == "started")["kimg"] == total
    assert not any(e["event"] == "budget" for e in resumed)  # measured once: the length stays
    assert second["status"] == "completed" and second["kimg"] == total


def test_the_last_step_passing_the_total_shows_100_percent_and_no_negative_eta(tmp_path, discs_folder, capsys):
    config = tiny_config(discs_folder, tmp_path / "run", kimg=0.02, progress_interval_s=0)  # 3 steps of 8 images
    events: list[dict] = []
    train(config, events.append)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["kimg"] == 0.024 and progress[-1]["total_kimg"] == 0.02  # 4 images past the total
    assert all(e["eta_s"] is None or e["eta_s"] >= 0 for e in progress) and progress[-1]["eta_s"] == 0
    output = _Output(jsonl=False)  # the terminal's tqdm bar
    for event in events:
        output(event)
        if event["event"] == "progress":
            bar = output.bar.format_dict
            assert bar["n"] <= bar["total"] == 0.02
    assert "100%" in capsys.readouterr().err


def test_training_on_the_cpu_keeps_freed_memory_for_the_next_step(tmp_path, discs_folder, monkeypatch):
    calls = []
    monkeypatch.setattr("training.loop.keep_freed_memory", lambda: calls.append("armed"))
    train(tiny_config(discs_folder, tmp_path / "run", kimg=0.008, device="cpu"))
    assert calls == ["armed"]  # the effect itself: tests/models/test_device.py


def test_cli_length_in_minutes(tmp_path):
    args = ["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--minutes", "10"]
    config = config_from_args(build_parser().parse_args(args))
    assert config.time_budget_s == 600 and config.length_unknown()
    with pytest.raises(ConfigError, match="--kimg or as --minutes"):
        config_from_args(build_parser().parse_args([*args, "--kimg", "5"]))


def test_cli_sigkill_then_resume_continues_from_the_checkpoint(tmp_path, discs_folder):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        cli_args(discs_folder, out, 0.096), stdout=subprocess.PIPE, text=True, cwd=REPO, env=ONE_THREAD
    )
    checkpoint = None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "checkpoint":
            checkpoint = event
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert checkpoint is not None and proc.returncode == -signal.SIGKILL
    saved_kimg = RunDir(out).latest_checkpoint().nimg / 1000
    assert saved_kimg >= checkpoint["kimg"]
    # Resuming may change options: here the run is lengthened, which config.json then records.
    done = subprocess.run(
        [sys.executable, "-m", "training", "--resume", str(out), "--events", "jsonl", "--set", "kimg=0.112"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ONE_THREAD,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    events = events_of(done.stdout)
    started = next(e for e in events if e["event"] == "started")
    assert started["resumed"] and started["cur_kimg"] == saved_kimg
    finished = events[-1]
    assert finished["event"] == "finished" and finished["status"] == "completed" and finished["kimg"] >= 0.112
    assert json.loads((out / "config.json").read_text())["kimg"] == 0.112


@pytest.mark.parametrize("how", ["SIGTERM", "STOP file"])
def test_cli_stop_request_checkpoints_and_exits_cleanly(tmp_path, discs_folder, how):
    """SIGTERM, or the run folder's STOP file (Windows has no SIGTERM; the app writes the file everywhere)."""
    out = tmp_path / "run"
    out.mkdir()
    RunDir(out).request_stop()  # a stale request from an earlier session must not stop this one at once
    proc = subprocess.Popen(
        cli_args(discs_folder, out, 50), stdout=subprocess.PIPE, text=True, cwd=REPO, env=ONE_THREAD
    )
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["step"] >= 2:
            if how == "SIGTERM":
                proc.send_signal(signal.SIGTERM)
            else:
                RunDir(out).request_stop()
            break
    rest, _ = proc.communicate(timeout=120)
    events += events_of(rest)
    assert proc.returncode == 0
    assert any(e["event"] == "progress" and e["step"] >= 2 for e in events)  # it ran until asked to stop
    finished = events[-1]
    assert finished["event"] == "finished" and finished["status"] == "stopped"
    assert finished["checkpoint"] and Path(finished["checkpoint"]).exists()


def test_cli_reports_errors_as_events(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--data",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "run"),
            "--resolution",
            "16",
            "--events",
            "jsonl",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ONE_THREAD,
        timeout=120,
    )
    assert done.returncode != 0
    error = events_of(done.stdout)[-1]
    assert error["event"] == "error" and "missing" in error["message"]
    recorded = [json.loads(line) for line in RunDir(tmp_path / "run").stats_path.open()]
    assert recorded[-1]["event"] == "error" and recorded[-1]["message"] == error["message"]  # the folder says why


@pytest.mark.parametrize(
    "entry",
    [
        ["-m", "training"],
        ["-c", "from training.cli import run; run()"],  # what the gan-studio-train console script runs
    ],
    ids=["python -m training", "gan-studio-train"],
)
def test_both_entry_points_under_torchrun_leaves_with_the_runs_exit_code_and_its_output(tmp_path, entry):
    """Under torchrun the entry points leave through os._exit, which skips Python's flushing of a piped
    stdout: the exit code and the last event must still come out."""
    done = subprocess.run(
        [sys.executable, *entry, "--resume", str(tmp_path / "no-run"), "--events", "jsonl"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**ONE_THREAD, "WORLD_SIZE": "2"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    error = events_of(done.stdout)[-1]
    assert error["event"] == "error" and "is not a training run" in error["message"]


@pytest.mark.parametrize("entry", ["-m training", "from training.cli import run; run()"])
def test_help_answers_without_loading_torch(entry):
    """`--help` is the first thing a new user types: it must not wait seconds for torch to load."""
    code = f"""
import runpy, sys
sys.argv = ["gan-studio-train", "--help"]
try:
    {"runpy.run_module('training', run_name='__main__')" if entry.startswith("-m") else entry}
except SystemExit as done:
    assert done.code == 0, done.code
print("torch loaded" if "torch" in sys.modules else "torch not loaded")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--resume RUN_DIR" in done.stdout and done.stdout.strip().endswith("torch not loaded")


def torchrun(args: list[str], port: int, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "training", *args],
        capture_output=True, text=True, cwd=REPO, env=ONE_THREAD, timeout=timeout,
    )


def test_ddp_a_failure_on_rank_0_stops_every_rank(tmp_path):
    """Rank 0 alone prepares the dataset; when it finds nothing usable, rank 1 must stop with it instead of
    waiting forever at the next collective."""
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.png").write_bytes(b"not a png")
    done = torchrun(cli_args(junk, tmp_path / "run", 0.016)[3:], 29534, timeout=180)
    assert done.returncode != 0
    error = events_of(done.stdout)[-1]
    assert error["event"] == "error" and "no usable images" in error["message"]
    assert "rank 0 failed: no usable images" in done.stdout + done.stderr  # what rank 1 said


@pytest.mark.parametrize(
    ("discriminator", "port"), [("stylegan", 29533), pytest.param("projected", 29535, marks=pytest.mark.slow)]
)
def test_ddp_two_processes_train_in_step(tmp_path, discs_folder, discriminator, port):
    """torchrun, two CPU processes over gloo: the run completes and the replicas' weights agree at every
    checkpoint (the loop compares them and stops on divergence). With the projected D, DDP syncs only its
    heads: the frozen network is not a submodule, and every rank derives the same projections from the seed;
    its heads also judge the features of G's pass through DDP (reuse_fake_features)."""
    out = tmp_path / "run"
    reuse = ["--set", "reuse_fakes=true", "--set", "reuse_fake_features=true"]
    extra = ["--discriminator", discriminator] + (
        ["--aug", "diffaug", "--set", "gan_loss=hinge", "--set", "projected_size=64", *reuse]
        if discriminator == "projected"
        else []
    )
    done = torchrun(cli_args(discs_folder, out, 0.048, *extra)[3:], port, timeout=300)  # [3:]: drop "python -m"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "`broadcast_buffers` is deprecated" not in done.stderr
    events = events_of(done.stdout)
    started = next(e for e in events if e["event"] == "started")
    assert started["world_size"] == 2
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "completed"
    assert len(RunDir(out).checkpoints()) >= 2


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One rank of a two-process gloo run, started by hand (not torchrun) so that each rank gets its own stop request.
# The loop asks once per step; rank 0 alone also asks while it prepares the dataset, and it is never stopped.
_RANK_SCRIPT = """
import json, sys
import torch
from tests.training.conftest import tiny_config
from training.loop import train
data, out, stop_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = []
def asked() -> bool:
    calls.append(1)
    return 0 <= stop_after < len(calls)
result = train(tiny_config(data, out, kimg=1.0, snap_kimg=1.0, sample_kimg=1.0), abort_fn=asked)
print(json.dumps({**result, "group_left": torch.distributed.is_initialized()}))
"""


def test_ddp_a_stop_reaching_one_rank_stops_every_rank_at_the_same_step(tmp_path, discs_folder):
    """A signal or the STOP file can reach the ranks at different steps. Here only rank 1 is asked to stop
    (after 2 steps): both must leave the loop at the same step and checkpoint, instead of one rank waiting
    forever in a collective the other has left. The run's process group is gone when `train` returns: left to
    the interpreter's exit, Gloo aborted a completed run once in CI."""
    env = {**ONE_THREAD, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", _RANK_SCRIPT, str(discs_folder), str(tmp_path / "run"), str(stop_after)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
        )
        for rank, stop_after in ((0, -1), (1, 2))
    ]
    try:
        outputs = [proc.communicate(timeout=420) for proc in ranks]  # before the fix: a hang
    finally:
        for proc in ranks:
            proc.kill()
    for proc, (_, err) in zip(ranks, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    results = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert [r["status"] for r in results] == ["stopped", "stopped"]
    assert results[0]["step"] == results[1]["step"] == 2
    assert [r["group_left"] for r in results] == [False, False]
    assert RunDir(tmp_path / "run").latest_checkpoint().nimg == results[0]["step"] * 8


def kill_with_workers(launcher: int) -> None:
    """SIGKILL torchrun's workers, then torchrun: it starts each worker in a session of its own, so killing its
    process group would leave them training (and writing checkpoints) on their own."""
    workers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == launcher:  # the field after the state: the parent
                    workers.append(int(entry.name))
    assert workers, "torchrun has started no workers"
    for pid in [*workers, launcher]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_ddp_sigkill_then_resume_matches_the_uninterrupted_run_bit_for_bit(tmp_path, discs_folder):
    """torchrun, two gloo processes, with everything that differs between ranks in play (their noise, their
    path-length means, their ADA sign counts): the run is SIGKILLed (launcher and workers) after its first
    checkpoint, resumed, and must end with exactly the uninterrupted run's weights."""
    recipe = ["--pl-weight", "1", "--set", "pl_interval=2", "--set", "r1_interval=2", "--aug", "ada",
              "--ada-kimg", "5"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    done = torchrun(cli_args(discs_folder, whole, 0.064, *recipe)[3:], free_port(), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "training", *cli_args(discs_folder, split, 0.064, *recipe)[3:]]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env=ONE_THREAD,
                            start_new_session=True)
    killed_after = None
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "checkpoint":
            kill_with_workers(proc.pid)
            killed_after = event["kimg"]
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert killed_after is not None and proc.returncode == -signal.SIGKILL
    resumed_from = RunDir(split).latest_checkpoint().nimg
    assert 0 < resumed_from < 64

    done = torchrun(["--resume", str(split), "--events", "jsonl"], free_port(), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = events_of(done.stdout)
    assert next(e for e in events if e["event"] == "started")["cur_kimg"] == resumed_from / 1000
    assert not [e for e in events if e["event"] == "warning" and "processes" in e["message"]]
    a = load_checkpoint(RunDir(whole).latest_checkpoint().network)
    b = load_checkpoint(RunDir(split).latest_checkpoint().network)
    assert a.meta.training["kimg"] == b.meta.training["kimg"] == 0.064
    for name in ("G_ema", "G", "D"):
        for (key, x), y in zip(
            getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values(), strict=True
        ):
            assert torch.equal(x, y), f"{name}.{key} differs after the two-process resume"
    assert a.augment_p == b.augment_p


@pytest.mark.parametrize("reuse", [True, False])
def test_reuse_fakes_gives_d_the_images_g_just_made(tmp_path, discs_folder, monkeypatch, reuse):
    """With reuse_fakes, D's step judges exactly the fakes of G's step before it (one G forward fewer per
    micro-batch); without, it draws fresh ones. Two micro-batches per step, so each must be matched."""
    made: list[torch.Tensor] = []
    judged: list[torch.Tensor] = []
    generator_loss, discriminator_loss = loop_module.generator_loss, loop_module.discriminator_loss

    def recording_generator_loss(D, fake, *args, **kwargs):
        made.append(fake.detach().clone())
        return generator_loss(D, fake, *args, **kwargs)

    def recording_discriminator_loss(D, fake, *args, **kwargs):
        judged.append(fake.clone())
        return discriminator_loss(D, fake, *args, **kwargs)

    monkeypatch.setattr(loop_module, "generator_loss", recording_generator_loss)
    monkeypatch.setattr(loop_module, "discriminator_loss", recording_discriminator_loss)
    config = tiny_config(discs_folder, tmp_path / "run", kimg=0.024, batch=8, batch_gpu=4, reuse_fakes=reuse)
    assert train(config)["status"] == "completed"

    assert len(made) == len(judged) == 3 * 2
    same = [torch.equal(g, d) for g, d in zip(made, judged, strict=True)]
    assert all(same) if reuse else not any(same)
    assert all(not d.requires_grad for d in judged)
