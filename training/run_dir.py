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
import hashlib
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

    @property
    def digests(self) -> Path:
        """The pair's SHA-256 digests, written after both: what tells a damaged checkpoint from a whole one."""
        return self.network.with_name(self.network.name.removesuffix(".safetensors") + ".sha256")


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
    def held(self, wait_s: float = 2.0) -> Iterator[int | None]:
        """Hold the run's lock while training it; RunInUse (naming the holder's PID) if another process holds
        it. Waits a little first: `in_use()` elsewhere takes the lock for an instant to test it.

        Yields the PID of a process that held the lock and died without releasing it (killed, crashed, power
        lost): the system dropped its lock, its PID stayed in the file; None after a clean end."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as f:
            deadline = time.monotonic() + wait_s
            while not _try_lock(f):
                if time.monotonic() > deadline:
                    raise RunInUse(self._in_use_message())
                time.sleep(0.05)
            try:
                previous = _read_pid(self.lock_path)
                _write_pid(f, os.getpid())
                yield previous
            finally:
                _write_pid(f, None)  # a clean end: the next process takes over nothing
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

    def ensure_free(self) -> None:
        """RunInUse, naming the holder's PID, if a process is training this run now."""
        if self.in_use():
            raise RunInUse(self._in_use_message())

    def _in_use_message(self) -> str:
        pid = _read_pid(self.lock_path)
        who = f"another process (PID {pid})" if pid is not None else "another process"
        return f"{who} is training {self.root}; stop it first, or wait for it to finish"

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
        try:
            torch.save(state, tmp)
            _fsync_replace(tmp, paths.state)
        finally:
            tmp.unlink(missing_ok=True)  # left only by a failed write (a full disk)

    def seal(self, paths: CheckpointPaths) -> None:
        """Record the digests of a checkpoint just written, for `verify` to check when resuming from it."""
        digests = {"network": _sha256(paths.network), "state": _sha256(paths.state)}
        tmp = paths.digests.with_name(paths.digests.name + ".tmp")
        try:
            tmp.write_text(json.dumps(digests))
            _fsync_replace(tmp, paths.digests)
        finally:
            tmp.unlink(missing_ok=True)

    def verify(self, paths: CheckpointPaths) -> None:
        """ValueError if a file of the checkpoint no longer has the digest recorded when it was written (bytes
        changed on disk: a bad sector, a broken copy). Checkpoints from before digests pass unchecked."""
        if not paths.digests.exists():
            return
        recorded = json.loads(paths.digests.read_text())
        for name, path in (("network", paths.network), ("state", paths.state)):
            if _sha256(path) != recorded.get(name):
                raise ValueError(f"{path.name} is not the file that was written (its SHA-256 differs)")

    def set_aside(self, paths: CheckpointPaths) -> Path:
        """Rename a damaged checkpoint out of the way (not deleted: it may still be worth a look); its new name."""
        for path in (paths.state, paths.digests, paths.network):
            aside = path.with_name(path.name + ".damaged")
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, aside)
        return paths.network.with_name(paths.network.name + ".damaged")

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` checkpoints, and leftovers of interrupted writes."""
        for old in self.checkpoints()[:-keep]:
            old.network.unlink(missing_ok=True)
            old.state.unlink(missing_ok=True)
            old.digests.unlink(missing_ok=True)
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


# The PID is written after the first byte: on Windows the locked byte 0 cannot be read by other processes.
_PID_OFFSET = 1


def _write_pid(f: IO[bytes], pid: int | None) -> None:
    f.truncate(_PID_OFFSET)  # "a+b" appends every write, so the record is cut back, then appended
    if pid is not None:
        f.write(f"{pid}\n".encode())
    f.flush()


def _read_pid(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            f.seek(_PID_OFFSET)
            text = f.read(32).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
    try:
        Image.fromarray(grid[..., 0] if c == 1 else grid).save(tmp, format="PNG")
        _fsync_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only by a failed write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], NCHW → uint8 NHWC."""
    x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
