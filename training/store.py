"""The prepared-dataset folder: `manifest.json` plus uint8 `.npy` shards of shape [n, H, W, C].

The manifest is the commit point. Shards and the fingerprint file are written under names the current
manifest does not use, then the manifest is replaced atomically, then files it no longer names are
deleted; a crash or a cancel at any moment leaves the previous dataset whole. Shards are streamed to
disk image by image (the `.npy` header is written last), so writing one never holds more than one image.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "gan-studio-prepared-dataset"
FORMAT_VERSION = 1
SHARD_IMAGES = 1000
SHARD_BYTES = 1 << 30  # fewer images per shard at high resolution
_OWN_FILE = re.compile(r"(images|fingerprints)-\d{5}\.npy(\.partial)?|manifest\.json\.partial")
_NPY_HEADER_BYTES = 128  # fixed, so the header can be rewritten in place once the count is known


class DatasetError(ValueError):
    """A prepared-dataset folder that cannot be used or extended as asked; the message says why."""


@dataclass
class Manifest:
    """Settings of a prepared dataset and one entry per image (in order: entry i is image i)."""

    resolution: int
    channels: int
    mode: str
    alpha: str
    background: list[int]
    pad_fill: str | list[int]
    xflip: bool
    shards: list[dict[str, Any]] = field(default_factory=list)  # {"file": name, "count": n}, in order
    images: list[dict[str, Any]] = field(default_factory=list)
    fingerprints: str | None = None  # file of near-duplicate fingerprints, one row per image
    next_file: int = 0  # number for the next file written, so a new file never replaces a live one

    def settings(self) -> dict[str, Any]:
        """What fixes the stored pixels: images prepared with different settings cannot share a dataset."""
        keys = ("resolution", "channels", "mode", "alpha", "background", "pad_fill")
        return {key: getattr(self, key) for key in keys}


def open_dataset_folder(folder: Path) -> tuple[Manifest | None, bool]:
    """The folder's manifest (None for a new dataset) and whether the folder had to be created.

    A folder with other content and no manifest is refused: it is probably the user's, not ours.
    """
    if not folder.exists():
        folder.mkdir(parents=True)
        return None, True
    if not folder.is_dir():
        raise DatasetError(f"{folder} is a file; choose a folder for the prepared dataset")
    manifest = read_manifest(folder)
    if manifest is None and any(not _OWN_FILE.fullmatch(entry.name) for entry in os.scandir(folder)):
        raise DatasetError(
            f"{folder} already holds other files and no prepared dataset; choose an empty or new folder"
        )
    return manifest, False


def read_manifest(folder: str | os.PathLike[str]) -> Manifest | None:
    """The folder's manifest, or None when it has none; DatasetError when it cannot be read."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_NAME:
            raise DatasetError(f"{path} is not a GAN Studio dataset manifest")
        if data.get("version") != FORMAT_VERSION:
            raise DatasetError(f"{path} has format version {data.get('version')}; this version reads 1")
        fields = {key: value for key, value in data.items() if key not in ("format", "version")}
        return Manifest(**fields)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}); prepare the dataset again") from None


def write_manifest(folder: str | os.PathLike[str], manifest: Manifest) -> None:
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **vars(manifest)}  # vars: no deep copy
    write_atomically(
        Path(folder) / MANIFEST_NAME, json.dumps(document, separators=(",", ":")).encode("utf-8")
    )


def write_atomically(path: Path, data: bytes) -> None:
    """Write a side file, flush it to disk, then rename it over `path`: readers see old or new, never half."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def write_fingerprints(folder: Path, manifest: Manifest, fingerprints: np.ndarray) -> None:
    """Store the fingerprints under a fresh name and point the (not yet written) manifest at it."""
    name = f"fingerprints-{manifest.next_file:05d}.npy"
    manifest.next_file += 1
    header = _npy_header(fingerprints.shape)
    write_atomically(folder / name, header + np.ascontiguousarray(fingerprints, np.uint8).tobytes())
    manifest.fingerprints = name


def read_fingerprints(folder: Path, manifest: Manifest) -> np.ndarray:
    if manifest.fingerprints is None:
        return np.empty((0, 0), np.uint8)
    path = folder / manifest.fingerprints
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}); prepare the dataset again") from None


def remove_unreferenced(folder: Path, manifest: Manifest | None) -> None:
    """Delete this module's files that `manifest` does not name: leftovers of replaced or abandoned writes.

    Only names this module writes are touched. A file still open elsewhere (Windows) stays for next time.
    """
    live = {shard["file"] for shard in manifest.shards} if manifest else set()
    if manifest is not None and manifest.fingerprints:
        live.add(manifest.fingerprints)
    for entry in os.scandir(folder):
        if _OWN_FILE.fullmatch(entry.name) and entry.name not in live:
            try:
                os.remove(entry.path)
            except OSError:
                pass


def open_shard(folder: Path, shard: dict[str, Any], image_shape: tuple[int, int, int]) -> np.ndarray:
    """Memory-map one shard, checking it holds what the manifest says."""
    path = folder / shard["file"]
    expected = (shard["count"], *image_shape)
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}); prepare the dataset again") from None
    if array.dtype != np.uint8 or array.shape != expected:
        raise DatasetError(
            f"{path} holds {array.dtype}{list(array.shape)}, the manifest expects uint8{list(expected)}"
        )
    return array


class ShardWriter:
    """Appends images to new shards, topping up the manifest's last shard if it has room.

    The topped-up shard is copied into a new file; the old one stays until the new manifest is written.
    """

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self.shape = (manifest.resolution, manifest.resolution, manifest.channels)
        self.capacity = max(1, min(SHARD_IMAGES, SHARD_BYTES // int(np.prod(self.shape))))
        self.shards = [dict(shard) for shard in manifest.shards]
        self._file: Any = None
        self._name = ""
        self._count = 0
        if self.shards and self.shards[-1]["count"] < self.capacity:
            try:
                previous = open_shard(folder, self.shards.pop(), self.shape)
                for image in previous:
                    self.append(image)
                del previous  # unmap now: the file is deleted once the new manifest is written
            except BaseException:
                self.abort()
                raise

    def append(self, image: np.ndarray) -> None:
        if image.shape != self.shape or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image of shape {self.shape}, got {image.dtype}{image.shape}")
        if self._file is None:
            self._open()
        self._file.write(np.ascontiguousarray(image).tobytes())
        self._count += 1
        if self._count == self.capacity:
            self._close()

    def finish(self) -> list[dict[str, Any]]:
        """Close the last shard; the shard list for the new manifest."""
        if self._file is not None:
            self._close()
        return self.shards

    def abort(self) -> None:
        """Close without finishing; the partial file is removed with the other unreferenced files."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> None:
        name = f"images-{self.manifest.next_file:05d}.npy"
        self.manifest.next_file += 1
        self._name = name
        self._file = open(self.folder / (name + ".partial"), "wb")
        self._file.write(_npy_header((0, *self.shape)))
        self._count = 0

    def _close(self) -> None:
        self._file.seek(0)
        self._file.write(_npy_header((self._count, *self.shape)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.folder / (self._name + ".partial"), self.folder / self._name)
        self.shards.append({"file": self._name, "count": self._count})


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A version 1.0 `.npy` header for C-ordered uint8 data, padded to a fixed length."""
    text = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    padding = _NPY_HEADER_BYTES - 10 - len(text) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _NPY_HEADER_BYTES - 10) + text + b" " * padding + b"\n"
