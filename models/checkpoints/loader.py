"""One entry point for every checkpoint file: sniff the format from the bytes, then hand it to its reader.

File extensions lie (artists rename, browsers append), so only content decides: a zip (`PK`) or a legacy
`torch.save` stream is a torch file, a pickle (protocol byte `0x80`) a network pickle, and an 8-byte length
followed by a JSON header a safetensors file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from models.checkpoints.bundle import CheckpointBundle
from models.checkpoints.errors import CheckpointError
from models.checkpoints.native import load_native
from models.checkpoints.nvidia_pkl import load_nvidia_pkl
from models.checkpoints.rosinality import load_rosinality

_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first object of a pre-zip torch.save stream
_READERS = {"native": load_native, "nvidia-pkl": load_nvidia_pkl, "rosinality": load_rosinality}
# Files that people mistake for checkpoints, and what to tell them.
_LOOKALIKES = {
    b"version https://git-lfs": "it is a Git LFS pointer, not the model itself: download the actual file",
    b"<!DOCTYPE html": "it is a web page, not a model: the download probably failed",
    b"<html": "it is a web page, not a model: the download probably failed",
    b"\x89PNG": "it is a PNG image, not a model",
    b"\xff\xd8\xff": "it is a JPEG image, not a model",
    b"\x1f\x8b": "it is gzip-compressed: decompress it first",
}


def detect_format(path: str | os.PathLike[str]) -> str:
    """'native', 'nvidia-pkl' or 'rosinality' (any torch.save file), judged from the first bytes only."""
    path = Path(path)
    size = _checked_size(path)
    try:
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError as exc:
        raise CheckpointError(path, f"it could not be read ({exc.strerror or exc})") from None
    if head.startswith(b"PK\x03\x04") or _is_torch_legacy(head):
        return "rosinality"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "nvidia-pkl"
    if len(head) >= 10 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "native"
    for prefix, reason in _LOOKALIKES.items():
        if head.lstrip().startswith(prefix):
            raise CheckpointError(path, reason)
    raise CheckpointError(
        path,
        "it is not a checkpoint GAN Studio reads (NVIDIA or TensorFlow StyleGAN2 .pkl, rosinality .pt, "
        "GAN Studio .safetensors); "
        f"it starts with bytes {head[:8].hex(' ')}",
    )


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> CheckpointBundle:
    """Load any supported checkpoint; every failure is a `CheckpointError` naming the file and the reason."""
    path = Path(path)
    kind = detect_format(path)
    try:
        return _READERS[kind](path, file_sha256(path), device)
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(path, f"it could not be read ({exc.strerror or exc})") from None
    except MemoryError:
        reason = "there is not enough memory to load it (or a damaged size field asks for more than it holds)"
        raise CheckpointError(path, reason) from None
    except Exception as exc:
        reason = f"its contents are damaged or unexpected ({type(exc).__name__}: {exc})"
        raise CheckpointError(path, reason) from exc


def _checked_size(path: Path) -> int:
    if not path.exists():
        raise CheckpointError(path, "the file does not exist")
    if path.is_dir():
        raise CheckpointError(path, "it is a folder, not a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(path, "the file is empty (0 bytes): the download or copy did not finish")
    return size


def _is_torch_legacy(head: bytes) -> bool:
    magic = int.from_bytes(head[4:14], "little")
    return head.startswith(b"\x80\x02\x8a\x0a") and magic == _TORCH_LEGACY_MAGIC


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks (model files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
