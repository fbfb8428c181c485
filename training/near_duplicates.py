"""Perceptual fingerprints that find the same picture saved twice (re-encoded, resized) among thousands.

A 256-bit difference hash of a 17×16 grayscale thumbnail finds candidates quickly (Hamming distance);
an 8×8 colour thumbnail then confirms them. The hash alone sees only structure, so recoloured variants of
one drawing (emoji skin tones, palette swaps) would pass for copies and be dropped from the dataset.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from training.decode import WHITE, composite

HASH_SIDE = 16
THUMB_SIDE = 8
HASH_BYTES = HASH_SIDE * HASH_SIDE // 8
FINGERPRINT_BYTES = HASH_BYTES + THUMB_SIDE * THUMB_SIDE * 3
MAX_HASH_DISTANCE = 10  # of 256 bits: JPEG quality 70 or a 10% resize moves 3, another mouth on a face 12+
MAX_COLOUR_DIFFERENCE = 24  # levels, in any thumbnail cell; re-encoding moves 10 at most, a recolour 30+

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def fingerprint(image: Image.Image) -> np.ndarray:
    """uint8[FINGERPRINT_BYTES]: packed hash bits, then the RGB thumbnail (transparency seen on white)."""
    if image.mode == "RGBA":
        image = composite(image, WHITE)
    gray = np.asarray(image.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX), np.int16)
    bits = np.packbits(gray[:, 1:] > gray[:, :-1])
    thumb = np.asarray(image.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))
    return np.concatenate([bits, thumb.reshape(-1)])


class NearDuplicateIndex:
    """The fingerprints of kept images, each with a label (the report's name for that image)."""

    def __init__(self) -> None:
        self._prints = np.empty((0, FINGERPRINT_BYTES), np.uint8)
        self._count = 0
        self._labels: list[str] = []

    def __len__(self) -> int:
        return self._count

    def add(self, print_: np.ndarray, label: str) -> None:
        if self._count == len(self._prints):
            grown = np.empty((max(64, 2 * self._count), FINGERPRINT_BYTES), np.uint8)
            grown[: self._count] = self._prints[: self._count]
            self._prints = grown
        self._prints[self._count] = print_
        self._labels.append(label)
        self._count += 1

    def find(self, print_: np.ndarray) -> str | None:
        """The label of the earliest indexed image this one is a near-duplicate of, if any."""
        prints = self._prints[: self._count]
        distance = _POPCOUNT[prints[:, :HASH_BYTES] ^ print_[:HASH_BYTES]].sum(axis=1)
        for candidate in np.flatnonzero(distance <= MAX_HASH_DISTANCE):
            colours = np.abs(prints[candidate, HASH_BYTES:].astype(np.int16) - print_[HASH_BYTES:])
            if colours.max() <= MAX_COLOUR_DIFFERENCE:
                return self._labels[candidate]
        return None

    def fingerprints(self) -> np.ndarray:
        """All indexed fingerprints in insertion order: what a prepared dataset keeps for the next import."""
        return self._prints[: self._count].copy()
