"""The run folder: configuration, stats, sample grids and checkpoints, written atomically, last K kept.

A checkpoint is a pair: `network-<nimg>.safetensors` (our model format: G_ema, G, D) and
`network-<nimg>.state.pt` (optimisers, augmentation and RNG state; plain tensors, loads with
weights_only=True). The state file is written first and the network file last, so a pair whose network
file exists is complete; a run killed mid-write leaves only `.tmp` files, which are ignored.

While a process trains a run it holds a lock on the folder's `LOCK` file; the system releases it however
the process ends, so a run that is not locked and did not finish is known to have died.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

CHECKPOINT_RE = re.compile(r"^network-(\d{9})\.safetensors$")


@dataclass(frozen=True)
class CheckpointPaths:
    nimg: int
    network: Path
    state: Path


class RunDir:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.checkpoints_dir = self.root / "checkpoints"
        self.samples_dir = self.root / "samples"
        self.config_path = self.root / "config.json"
        self.stats_path = self.root / "stats.jsonl"
        # A file whose appearance asks the run to checkpoint and exit: how the app stops a run on Windows,
        # which has no SIGTERM, and how anyone can from a shell or a file manager.
        self.stop_path = self.root / "STOP"
        self.lock_path = self.root / "LOCK"

    def request_stop(self) -> None:
        self.stop_path.touch()

    @contextlib.contextmanager
    def held(self, wait_s: float = 2.0) -> Iterator[None]:
        """Hold the run's lock while training it; RunInUse if another process holds it. Waits a little
        first: `in_use()` elsewhere takes the lock for an instant to test it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as f:
            deadline = time.monotonic() + wait_s
            while not _try_lock(f):
                if time.monotonic() > deadline:
                    raise RunInUse(f"another process is training {self.root}; stop it first")
                time.sleep(0.05)
            try:
                yield
            finally:
                _unlock(f)

    def in_use(self) -> bool:
        """Whether a process is training this run now."""
        if not self.lock_path.exists():
            return False
        try:
            with open(self.lock_path, "a+b") as f:
                if not _try_lock(f):
                    return True
                _unlock(f)
        except OSError:
            return False
        return False

    def create(self) -> None:
        for folder in (self.root, self.checkpoints_dir, self.samples_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def checkpoint_paths(self, nimg: int) -> CheckpointPaths:
        stem = f"network-{nimg:09d}"
        return CheckpointPaths(
            nimg, self.checkpoints_dir / f"{stem}.safetensors", self.checkpoints_dir / f"{stem}.state.pt"
        )

    def checkpoints(self) -> list[CheckpointPaths]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for path in self.checkpoints_dir.iterdir():
            match = CHECKPOINT_RE.match(path.name)
            if match:
                paths = self.checkpoint_paths(int(match.group(1)))
                if paths.state.exists():
                    found.append(paths)
        return sorted(found, key=lambda p: p.nimg)

    def latest_checkpoint(self) -> CheckpointPaths | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save_state(self, paths: CheckpointPaths, state: dict[str, Any]) -> None:
        tmp = paths.state.with_name(paths.state.name + ".tmp")
        torch.save(state, tmp)
        _fsync_replace(tmp, paths.state)

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` checkpoints, and leftovers of interrupted writes."""
        for old in self.checkpoints()[:-keep]:
            old.network.unlink(missing_ok=True)
            old.state.unlink(missing_ok=True)
        for tmp in self.checkpoints_dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def samples_path(self, nimg: int) -> Path:
        return self.samples_dir / f"samples-{nimg:09d}.png"

    def append_stats(self, record: dict[str, Any]) -> None:
        with self.stats_path.open("a") as f:
            f.write(json.dumps({"time": time.time(), **record}) + "\n")


class RunInUse(RuntimeError):
    """The run is being trained by another process."""


if os.name == "nt":
    import msvcrt

    def _try_lock(f: IO[bytes]) -> bool:
        f.seek(0)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(f: IO[bytes]) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(f: IO[bytes]) -> bool:
        try:  # flock, not lockf: two opens in one process exclude each other too
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(f: IO[bytes]) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def save_image_grid(images: np.ndarray, columns: int, path: Path) -> None:
    """images uint8 [N, H, W, C] → one PNG grid, atomically."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.zeros([rows * h, columns * w, c], dtype=np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(tmp, format="PNG")
    _fsync_replace(tmp, path)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], NCHW → uint8 NHWC."""
    x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
