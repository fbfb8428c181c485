"""Training runs as the studio sees them: the command that starts one, its JSON events, and past run folders.

The GUI starts `python -m training … --events jsonl` (the command headless users run) and only reads the
events it prints; afterwards the run folder (`config.json`, `stats.jsonl`, samples, checkpoints — see
`training/run_dir.py`) is all there is. A run without a `finished` event was interrupted (killed, crashed,
power cut) and can be resumed from its last checkpoint, as can one stopped on purpose; one that ended with an
`error` event, or died before its first checkpoint, failed, and says why.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.checkpoints import load_checkpoint
from models.device import select_precision
from studio.engine.paths import user_data_dir
from training.config import ConfigError, TrainConfig
from training.loop import discriminator_for, ready_to_train, step_probe
from training.pace import measure_images_per_s
from training.run_dir import RunDir

__all__ = [
    "PRESETS",
    "ConfigError",
    "EventReader",
    "RunInfo",
    "cpu_finetune_images_per_s",
    "format_kimg",
    "list_runs",
    "new_run_dir",
    "read_run",
    "request_stop",
    "rerun_options",
    "resume_command",
    "runs_root",
    "snapshot_name",
    "train_command",
    "validate_options",
]

# Run lengths as time on this machine (seconds): a first look, a usable fine-tune, a polished one. The run
# measures its speed and turns the time into kimg (`time_budget_s` in training/config.py).
PRESETS: dict[str, float] = {"About 10 minutes": 600.0, "About an hour": 3600.0, "Overnight (8 h)": 8 * 3600.0}
DIED_EARLY = "the training process ended before its first checkpoint (killed, crashed or out of memory)"
_FIXED_FLAGS = {"data": "--data", "out": "--out", "base": "--base", "preset": "--preset"}


def cpu_training_precision(choice: str) -> str:
    """What a CPU run given this precision choice computes in: "bf16" or "fp32" (fp16, which a CPU refuses when
    the run starts, is estimated as fp32)."""
    try:
        dtype = select_precision(torch.device("cpu"), choice)
    except ValueError:
        return "fp32"
    return "bf16" if dtype is torch.bfloat16 else "fp32"


def cpu_finetune_images_per_s(model_path: Path, precision: str) -> float:
    """How fast fine-tuning this model trains on this CPU in `precision` ("bf16" or "fp32"), measured on a step
    of its own G and D (a fresh one if the file has none), as the run itself measures it before it starts."""
    bundle = load_checkpoint(model_path)
    G = bundle.G if bundle.G is not None else bundle.G_ema
    D = bundle.D if bundle.D is not None else discriminator_for(G)
    cpu = torch.device("cpu")
    ready_to_train(cpu, G, D)
    return measure_images_per_s(step_probe(G, D, cpu, select_precision(cpu, precision)), images=2)


def runs_root() -> Path:
    root = user_data_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_run_dir(label: str, root: Path | None = None) -> Path:
    """A fresh, not yet existing folder for a run, named by date and `label` so the list sorts by age."""
    root = root or runs_root()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    stem = time.strftime("%Y%m%d-%H%M%S") + "-" + safe
    path, n = root / stem, 2
    while path.exists():
        path, n = root / f"{stem}-{n}", n + 1
    return path


def format_kimg(kimg: float) -> str:
    """Three significant digits, never in scientific notation: 0.16, 4.01, 56.9, 1234."""
    if kimg <= 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(kimg)))
    return f"{kimg:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{kimg:.0f}"


def snapshot_name(run_dir: Path, kimg: float) -> str:
    """How a run's checkpoint is named in the library: the run and how far it had trained."""
    return f"{Path(run_dir).name} · {format_kimg(kimg)} kimg"


def validate_options(options: Mapping[str, Any]) -> TrainConfig:
    """The config `options` (TrainConfig fields) describe; ConfigError naming the first bad one.

    Checked before starting, so a typo shows in the panel instead of as a failed process."""
    config = TrainConfig.from_dict(dict(options))
    config.validate()
    return config


def training_launcher() -> list[str]:
    """How to start `gan-studio-train`: `python -m training`, or the frozen app's own `train` subcommand (a
    packaged app has no Python interpreter to run `-m` with). On Windows the frozen app is windowed, without a
    stdout for events, so its console twin `gan-studio-cli.exe` (see packaging/gan-studio.spec) runs it."""
    if not getattr(sys, "frozen", False):
        return [sys.executable, "-m", "training"]
    app = Path(sys.executable)
    console_twin = app.with_name("gan-studio-cli" + app.suffix)
    return [str(console_twin if console_twin.exists() else app), "train"]


def train_command(options: Mapping[str, Any]) -> list[str]:
    """`python -m training --data … --out … --base … --preset … --set key=value… --events jsonl` for `options`.

    Every option except data/out/base/preset goes through `--set`, which takes any TrainConfig field as JSON, so the
    command can express everything the panel can."""
    validate_options(options)
    command = training_launcher()
    for key, flag in _FIXED_FLAGS.items():
        if options.get(key) is not None:
            command += [flag, str(options[key])]
    for key, value in options.items():
        if key not in _FIXED_FLAGS:
            command += ["--set", f"{key}={json.dumps(value)}"]
    return [*command, "--events", "jsonl"]


def rerun_options(run_dir: Path, root: Path | None = None) -> dict[str, Any]:
    """The options of the run in `run_dir` for a new run in a new folder: the same settings on its images as
    they are now (a resumed run keeps the ones it started with); a time budget is measured afresh."""
    options = TrainConfig.load(RunDir(run_dir).config_path).to_dict()
    options["out"] = str(new_run_dir(Path(options["data"]).name, root))
    options["measured_images_per_s"] = None
    return options


def resume_command(run_dir: Path) -> list[str]:
    return [*training_launcher(), "--resume", str(run_dir), "--events", "jsonl"]


def request_stop(run_dir: Path) -> None:
    """Ask the run in `run_dir` to write a checkpoint and exit (its STOP file: works on every platform)."""
    RunDir(run_dir).request_stop()


class EventReader:
    """Splits the process's stdout into JSON events; a line that is not an event (a library printing to
    stdout) is kept aside, not fatal, so it can still be shown if the run fails."""

    def __init__(self) -> None:
        self._partial = b""
        self.other_lines: list[str] = []

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                events.append(event)
            else:
                self.other_lines = [*self.other_lines[-19:], text]
        return events


@dataclass
class RunInfo:
    """One run folder, summarised from its config and `stats.jsonl`."""

    path: Path
    config: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # progress, samples, checkpoint, finished…
    active: bool = False  # a process is training it now (it holds the run's lock)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """running, completed, stopped (paused on purpose), failed (an `error` event, or it died before its first
        checkpoint) or interrupted (killed or crashed after a checkpoint: its last record is not a `finished`
        event; a resumed run appends after its earlier one)."""
        if self.active:
            return "running"
        last = self.events[-1] if self.events else {}
        if last.get("event") == "finished":
            return str(last.get("status", "interrupted"))
        if last.get("event") == "error" or not self.checkpoints():
            return "failed"
        return "interrupted"

    @property
    def error(self) -> str | None:
        """Why a failed run failed."""
        if self.status != "failed":
            return None
        last = self.events[-1] if self.events else {}
        return str(last.get("message", "unknown error")) if last.get("event") == "error" else DIED_EARLY

    @property
    def kimg(self) -> float:
        return max((float(e.get("kimg", 0)) for e in self.events if "kimg" in e), default=0.0)

    @property
    def total_kimg(self) -> float | None:
        """The run's length; None while a time budget has not measured its speed yet."""
        if self.config.get("time_budget_s") is not None and self.config.get("measured_images_per_s") is None:
            return None
        return float(self.config.get("kimg", 0))

    def checkpoints(self) -> list[tuple[float, Path]]:
        """Complete checkpoints (kimg, network file), oldest first."""
        return [(c.nimg / 1000, c.network) for c in RunDir(self.path).checkpoints()]

    def samples(self) -> list[tuple[float, Path]]:
        """Sample grids (kimg, PNG), oldest first."""
        grids = sorted(RunDir(self.path).samples_dir.glob("samples-*.png"))
        return [(int(p.stem.split("-")[1]) / 1000, p) for p in grids if p.stem.split("-")[1].isdigit()]

    @property
    def resumable(self) -> bool:
        return self.status not in ("completed", "running") and bool(self.checkpoints())


def read_run(path: Path) -> RunInfo:
    """The run in `path`; unreadable stats lines (a write cut by a kill) are skipped."""
    run = RunDir(path)
    try:
        config = json.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable training run ({exc})") from None
    events = []
    if run.stats_path.exists():
        for line in run.stats_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return RunInfo(Path(path), config, events, active=run.in_use())


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Past runs, newest first; folders that are not runs are skipped."""
    root = root or runs_root()
    found = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True):
        try:
            found.append(read_run(folder))
        except ConfigError:
            continue
    return found
