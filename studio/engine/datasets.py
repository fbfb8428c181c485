"""The dataset store: prepared datasets under `user_data_dir()/datasets/<name>/`, kept for the Dataset panel.

It wraps training's scan and prepare (the very code `gan-studio-train --data` runs, so the GUI and the CLI
accept and refuse the same files) and adds what only the studio needs: names, listing, rename, delete, the
last import report, thumbnails and crop previews. Qt-free; it reaches training only through the public
facade `training.dataset`.
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio.engine.files import atomic_write_bytes
from studio.engine.paths import user_data_dir
from training.dataset import (
    FIT_MODES,
    IMAGE_EXTENSIONS,
    DatasetError,
    ImageRecord,
    ImageRejected,
    ImportReport,
    SourceFile,
    SourceReader,
    decode_image,
    fit_square,
    open_shard,
    prepare_dataset,
    read_manifest,
    scan_sources,
)

__all__ = [
    "DROP_SUFFIXES",
    "FIT_MODES",
    "DatasetError",
    "DatasetInfo",
    "DatasetStore",
    "FEW_IMAGES",
    "ImageRejected",
    "ImportReport",
    "PreparedImages",
    "SourceImages",
    "scan_sources",
]

Progress = Callable[[int, int, str], None]
Cancel = Callable[[], bool]
REPORT_NAME = "import-report.json"
DROP_SUFFIXES = frozenset(IMAGE_EXTENSIONS | {".zip"})  # what a drop on the window may bring for a dataset
FEW_IMAGES = 10  # below this many, training mostly learns to repeat the images: the panel says so
_BAD_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    path: Path
    resolution: int
    count: int
    mode: str
    xflip: bool


class DatasetStore:
    """Prepared datasets, one folder each, named by the artist; the folder name is the dataset's name."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else user_data_dir() / "datasets"
        self.root.mkdir(parents=True, exist_ok=True)
        self._variants = self.root / ".variants"
        self._lock = threading.Lock()  # rename/delete against a listing on another thread

    def datasets(self) -> list[DatasetInfo]:
        """Every readable prepared dataset, by name; a damaged one is skipped (its folder stays intact)."""
        found = []
        with self._lock:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in folders:
            try:
                found.append(self.get(folder.name))
            except DatasetError:
                continue
        return found

    def get(self, name: str) -> DatasetInfo:
        path = self.root / name
        manifest = read_manifest(path)
        if manifest is None:
            raise DatasetError(f"there is no dataset named “{name}” in {self.root}")
        count = len(manifest.images)
        return DatasetInfo(name, path, manifest.resolution, count, manifest.mode, manifest.xflip)

    def prepare(
        self,
        name: str,
        sources: Sequence[str | Path],
        resolution: int,
        mode: str = "crop",
        xflip: bool = False,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> ImportReport:
        """Prepare (or add to) the dataset `name`; its report is kept so reopening shows what was refused.

        Raises DatasetError when the dataset would hold no image (an empty dataset only fails training later);
        a dataset this call created is then removed again.
        """
        path = self.root / self._check_name(name)
        existed = path.exists()
        report = prepare_dataset(
            [str(s) for s in sources], path, resolution,
            mode=mode, xflip=xflip, progress=progress, cancel=cancel,
        )
        if report.cancelled:
            return report
        if not report.dataset_size:
            if not existed:
                shutil.rmtree(path, ignore_errors=True)
            raise DatasetError(
                f"“{name}” has no usable images, so it was not saved. {report.summary().splitlines()[0]}"
            )
        atomic_write_bytes(path / REPORT_NAME, json.dumps(report.to_dict()).encode("utf-8"))
        return report

    def report(self, name: str) -> dict[str, Any] | None:
        """The last import report of `name` as `ImportReport.to_dict()` gave it, or None."""
        try:
            return json.loads((self.root / name / REPORT_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def rename(self, name: str, new_name: str) -> DatasetInfo:
        new_name = self._check_name(new_name)
        with self._lock:
            target = self.root / new_name
            if target.exists():
                raise DatasetError(f"a dataset named “{new_name}” already exists; choose another name")
            (self.root / name).rename(target)
            for variant in self._variants.glob(f"{glob.escape(name)}@*px"):  # its copies at other sizes follow
                variant.rename(variant.with_name(new_name + variant.name[len(name):]))
        return self.get(new_name)

    def delete(self, name: str) -> None:
        """Remove the prepared copy (and its copies at other resolutions); the originals stay untouched."""
        self.get(name)  # refuses anything that is not one of our datasets
        with self._lock:
            shutil.rmtree(self.root / name)
            for variant in self._variants.glob(f"{glob.escape(name)}@*px"):
                shutil.rmtree(variant, ignore_errors=True)

    def at_resolution(
        self, name: str, resolution: int, progress: Progress | None = None, cancel: Cancel | None = None
    ) -> Path:
        """The dataset's folder at `resolution`: itself, or a copy prepared again from the original files
        (fine-tuning trains at the base model's size). The copy is kept, so the next run reuses it."""
        info = self.get(name)
        if info.resolution == resolution:
            return info.path
        manifest = read_manifest(info.path)
        sources = list(dict.fromkeys(image["source"] for image in manifest.images))
        path = self._variants / f"{name}@{resolution}px"
        report = prepare_dataset(sources, path, resolution, mode=info.mode, xflip=info.xflip,
                                 progress=progress, cancel=cancel)
        if report.cancelled:
            raise DatasetError("cancelled")
        if not report.dataset_size:
            raise DatasetError(
                f"none of the original images of “{name}” could be read again at {resolution} px "
                f"(were they moved?):\n{report.summary()}"
            )
        return path

    def unique_name(self, stem: str) -> str:
        """`stem`, or `stem 2`, `stem 3`… whichever is free (a safe folder name)."""
        stem = _BAD_NAME.sub("_", stem).strip(" .") or "dataset"
        name, n = stem, 2
        while (self.root / name).exists():
            name, n = f"{stem} {n}", n + 1
        return name

    @staticmethod
    def _check_name(name: str) -> str:
        name = name.strip()
        if not name or name.startswith(".") or _BAD_NAME.search(name):
            raise DatasetError(
                f"“{name}” cannot be a dataset name: avoid / \\ : * ? \" < > | and a leading dot"
            )
        return name


class SourceImages:
    """The usable images of a scan, read from the artist's files (or zips) for thumbnails and previews."""

    def __init__(self, records: Sequence[ImageRecord]):
        self.records = list(records)
        self._reader = SourceReader()
        self._lock = threading.Lock()  # one reader keeps zips open; loader threads take turns

    def __len__(self) -> int:
        return len(self.records)

    def name(self, index: int) -> str:
        return self.records[index].name

    def thumbnail(self, index: int, size: int) -> np.ndarray:
        """uint8 RGB no larger than `size`; ImageRejected when the file changed since the scan."""
        image = self._decode(index, size).image
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image.convert("RGB"))

    def fitted(self, index: int, resolution: int, mode: str) -> np.ndarray:
        """The image as preparation will store it (crop, pad or stretch to `resolution`)."""
        pixels, _ = fit_square(self._decode(index, resolution), resolution, mode)
        return pixels[..., :3]

    def _decode(self, index: int, short_side: int):
        record = self.records[index]
        with self._lock:
            data = self._reader.read(SourceFile(record.path, record.member))
        return decode_image(data, draft_short_side=short_side)

    def close(self) -> None:
        with self._lock:
            self._reader.__exit__(None, None, None)


class PreparedImages:
    """A prepared dataset's stored pixels (memory-mapped shards): thumbnails of 10 000 images cost nothing."""

    def __init__(self, path: Path):
        manifest = read_manifest(path)
        if manifest is None:
            raise DatasetError(f"{path} is not a prepared dataset (it has no manifest.json)")
        self.path = path
        self.images = manifest.images
        shape = (manifest.resolution, manifest.resolution, manifest.channels)
        self._shards = [open_shard(path, shard, shape) for shard in manifest.shards]
        self._ends = np.cumsum([shard["count"] for shard in manifest.shards])

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return self.images[index]["name"]

    def pixels(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[shard - 1]) if shard else 0
        return np.asarray(self._shards[shard][index - start][..., :3])

    def thumbnail(self, index: int, size: int) -> np.ndarray:
        image = Image.fromarray(self.pixels(index))
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image)

