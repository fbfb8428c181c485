"""Atomic writes and content hashes: a crash or full disk never leaves a half-written file under its name."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temp)` on a temp file beside `path` (same suffix, so writers know the format), then rename.

    The temp file is removed when `write` fails or is interrupted; `path` then keeps its old content, if any.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    open(tmp, "xb").close()  # unlike mkstemp, honours the umask: exports get the user's usual permissions
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))



class ExportError(Exception):
    """A file the artist asked for could not be written; the message says which, where and what to do."""


_REASONS = {
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
    errno.EROFS: "the folder is on a read-only disk: choose another folder",
    errno.ENOSPC: "the disk is full: free some space or choose another folder",
    errno.EDQUOT: "your disk quota is used up: free some space or choose another folder",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "the folder does not exist (part of its path is a file)",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter one",
}


@contextlib.contextmanager
def export_errors(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into an ExportError naming the file, its folder and the remedy."""
    try:
        yield
    except OSError as exc:
        reason = _REASONS.get(exc.errno, exc.strerror or str(exc))
        raise ExportError(f"Could not save {Path(path).name} in {Path(path).parent}: {reason}.") from exc
