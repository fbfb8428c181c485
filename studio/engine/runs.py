"""Training runs as the studio sees them: the command that starts one, its JSON events, and past run folders.

The GUI starts `python -m training … --events jsonl` (the command headless users run) and only reads the
events it prints; afterwards the run folder (`config.json`, `stats.jsonl`, samples, checkpoints — see
`training/run_dir.py`) is all there is. A run without a `finished` event was interrupted (killed, crashed,
power cut) and can be resumed from its last checkpoint, as can one stopped on purpose.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.engine.paths import user_data_dir
from training.config import ConfigError, TrainConfig
from training.run_dir import RunDir

__all__ = [
    "PRESETS",
    "ConfigError",
    "EventReader",
    "RunInfo",
    "list_runs",
    "new_run_dir",
    "read_run",
    "request_stop",
    "resume_command",
    "runs_root",
    "train_command",
    "validate_options",
]

# Run lengths in thousands of images shown to D: a first look, a usable fine-tune, a polished one.
PRESETS: dict[str, float] = {"Quick sketch": 20.0, "Balanced": 100.0, "Best quality": 500.0}
_FIXED_FLAGS = {"data": "--data", "out": "--out", "base": "--base"}


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
    """`python -m training --data … --out … --base … --set key=value… --events jsonl` for `options`.

    Every option except data/out/base goes through `--set`, which takes any TrainConfig field as JSON, so the
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

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        """completed, stopped (paused on purpose) or interrupted (killed or crashed: its last record is not a
        `finished` event; a resumed run appends after its earlier one)."""
        last = self.events[-1] if self.events else {}
        return str(last.get("status", "interrupted")) if last.get("event") == "finished" else "interrupted"

    @property
    def kimg(self) -> float:
        return max((float(e.get("kimg", 0)) for e in self.events if "kimg" in e), default=0.0)

    @property
    def total_kimg(self) -> float:
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
        return self.status != "completed" and bool(self.checkpoints())


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
    return RunInfo(Path(path), config, events)


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
