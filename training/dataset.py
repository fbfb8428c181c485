"""Datasets for training: import (scan, report, prepare) and the loader that feeds the training loop.

This module is the one import for dataset work, the training loop's and the studio's: `scan_sources` and
`prepare_dataset` come from the modules that implement them (scan, prepare), with what their callers need to
show the results (decoding, fitting, reading sources and prepared shards); `PreparedDataset` reads what they
wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training.decode import IMAGE_EXTENSIONS, ImageRejected, decode_image
from training.prepare import FIT_MODES, fit_square, prepare_dataset
from training.scan import DuplicateGroup, ImageRecord, ImportReport, RejectedFile, scan_sources
from training.sources import SourceFile, SourceReader
from training.store import DatasetError, open_shard, read_manifest

__all__ = [
    "FIT_MODES",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "DuplicateGroup",
    "ImageRecord",
    "ImageRejected",
    "ImportReport",
    "PreparedDataset",
    "RejectedFile",
    "SourceFile",
    "SourceReader",
    "decode_image",
    "fit_square",
    "open_shard",
    "prepare_dataset",
    "read_manifest",
    "scan_sources",
]

NO_LABEL = -1  # datasets are unconditional: images carry no class


class PreparedDataset(Dataset):
    """A prepared-dataset folder as `(uint8 tensor [C, H, W], label)` items, shards memory-mapped.

    With x-flip on (the manifest's setting unless `xflip` overrides it) the dataset is twice as long: item
    `i + n` is item `i` mirrored left to right.
    """

    def __init__(self, path: str | os.PathLike[str], xflip: bool | None = None) -> None:
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            raise DatasetError(f"{self.path} is not a prepared dataset (it has no manifest.json)")
        if not manifest.images:
            raise DatasetError(f"{self.path} holds no images; add some before training")
        self.resolution = manifest.resolution
        self.num_channels = manifest.channels
        self.num_images = len(manifest.images)
        self.xflip = manifest.xflip if xflip is None else xflip
        self.images = manifest.images  # per image: name, source, member, sha256, size, box (see prepare)
        self._shards = manifest.shards
        self._ends = np.cumsum([0] + [shard["count"] for shard in manifest.shards])[1:]
        stored = int(self._ends[-1]) if len(self._ends) else 0
        if stored != self.num_images:
            raise DatasetError(
                f"{self.path}: shards hold {stored} images, the manifest lists {self.num_images}"
            )
        self._maps = [self._open(i) for i in range(len(self._shards))]  # checks every shard up front

    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        flip, image = divmod(index, self.num_images)
        shard = int(np.searchsorted(self._ends, image, side="right"))
        start = self._ends[shard - 1] if shard else 0
        pixels = self._map(shard)[image - start]
        if flip:
            pixels = pixels[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), NO_LABEL

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get the dataset pickled (spawn on macOS/Windows): send paths, not mapped pixels.
        return {**self.__dict__, "_maps": [None] * len(self._shards)}

    def _map(self, shard: int) -> np.ndarray:
        if self._maps[shard] is None:
            self._maps[shard] = self._open(shard)
        return self._maps[shard]

    def _open(self, shard: int) -> np.ndarray:
        shape = (self.resolution, self.resolution, self.num_channels)
        return open_shard(self.path, self._shards[shard], shape)
