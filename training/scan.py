"""Scan sources into an import report: usable images, each rejected file with its reason, duplicates.

`scan_sources` gives the report the GUI shows before preparing. `scan_images` is the same pass, yielding
each usable image's pixels one at a time, which preparation consumes so that memory stays flat whatever
the size of the folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.decode import (
    IMAGE_EXTENSIONS,
    WHITE,
    AlphaMode,
    Colour,
    DecodedImage,
    ImageRejected,
    decode_image,
    unsupported_type_reason,
)
from training.near_duplicates import NearDuplicateIndex, fingerprint
from training.sources import SourceFile, SourcePaths, SourceReader, list_sources

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]

SIZE_BUCKETS = ((64, "<64"), (128, "64-127"), (256, "128-255"), (512, "256-511"), (1024, "512-1023"))
LARGEST_BUCKET = "≥1024"
SUMMARY_LINES = 20  # per section; the full lists are in to_dict()


@dataclass
class ImageRecord:
    """A usable image: where it came from, its content hash and its upright size."""

    name: str
    path: str
    member: str | None
    sha256: str
    width: int
    height: int


@dataclass
class RejectedFile:
    name: str
    path: str
    member: str | None
    reason: str


@dataclass
class DuplicateGroup:
    """The first file seen with some content (kept) and later files with the same or nearly the same."""

    original: str
    copies: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import found; `to_dict()` is JSON-ready, `summary()` is what the CLI prints."""

    resolution: int | None = None
    drop_duplicates: bool = True
    found: int = 0  # files the sources cover
    scanned: int = 0  # files examined: fewer than found when cancelled
    images: list[ImageRecord] = field(default_factory=list)  # new usable images, in dataset order
    rejected: list[RejectedFile] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    near_duplicates: list[DuplicateGroup] = field(default_factory=list)
    small: list[str] = field(default_factory=list)  # usable, but short side under half the resolution
    already_prepared: int = 0  # skipped: their content is already in the prepared dataset
    cancelled: bool = False
    output_dir: str | None = None
    dataset_size: int | None = None  # images in the prepared dataset after this import

    def counts(self) -> dict[str, int]:
        return {
            "found": self.found,
            "scanned": self.scanned,
            "usable": len(self.images),
            "rejected": len(self.rejected),
            "duplicates": sum(len(group.copies) for group in self.duplicates),
            "near_duplicates": sum(len(group.copies) for group in self.near_duplicates),
            "small": len(self.small),
            "already_prepared": self.already_prepared,
        }

    def size_histogram(self) -> dict[str, int]:
        """Usable images per bucket of their short side, in pixels."""
        histogram = dict.fromkeys([label for _, label in SIZE_BUCKETS] + [LARGEST_BUCKET], 0)
        for image in self.images:
            short = min(image.width, image.height)
            label = next((label for bound, label in SIZE_BUCKETS if short < bound), LARGEST_BUCKET)
            histogram[label] += 1
        return histogram

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts(), "size_histogram": self.size_histogram()}

    def summary(self) -> str:
        counts = self.counts()
        fate = "dropped" if self.drop_duplicates else "kept"
        parts = [f"{counts['usable']} usable", f"{counts['rejected']} rejected"]
        if counts["duplicates"]:
            parts.append(f"{_plural(counts['duplicates'], 'exact duplicate')} {fate}")
        if counts["near_duplicates"]:
            parts.append(f"{_plural(counts['near_duplicates'], 'near-duplicate')} {fate}")
        if counts["small"]:
            parts.append(f"{counts['small']} small")
        if counts["already_prepared"]:
            parts.append(f"{counts['already_prepared']} already prepared")
        scanned = f"{self.scanned} of {self.found}" if self.cancelled else f"{self.scanned}"
        lines = [f"Scanned {scanned} files: {', '.join(parts)}."]
        if self.cancelled:
            lines.append(
                "Cancelled: the prepared dataset was left as it was." if self.output_dir else "Cancelled."
            )
        elif self.output_dir is not None:
            side = f"{self.resolution}×{self.resolution}"
            lines.append(f"Prepared dataset: {self.output_dir} ({self.dataset_size} images at {side}).")
        sizes = {image.name: (image.width, image.height) for image in self.images if image.name in self.small}
        _section(lines, "Rejected", [f"{r.name}: {r.reason}" for r in self.rejected])
        _section(lines, f"Exact duplicates ({fate})", _pairs(self.duplicates, "="))
        _section(lines, f"Near-duplicates ({fate})", _pairs(self.near_duplicates, "≈"))
        _section(
            lines,
            f"Small (kept; short side under {(self.resolution or 0) / 2:g} px)",
            [f"{name} ({sizes[name][0]}×{sizes[name][1]})" for name in self.small],
        )
        if self.images:
            histogram = ", ".join(f"{label}: {n}" for label, n in self.size_histogram().items())
            lines.append(f"Sizes (short side, px): {histogram}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ScanOptions:
    resolution: int | None = None  # enables the small flag and reduced JPEG decoding
    alpha: AlphaMode = "composite"
    background: Colour = WHITE
    drop_duplicates: bool = True
    max_pixels: int | None = None  # None: Pillow's limit (about 89 megapixels)


@dataclass(frozen=True)
class UsableImage:
    record: ImageRecord
    decoded: DecodedImage
    fingerprint: np.ndarray


def scan_sources(
    sources: SourcePaths,
    resolution: int | None = None,
    *,
    drop_duplicates: bool = True,
    max_pixels: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ImportReport:
    """Examine every file the sources cover and report, writing nothing.

    With `resolution`, images whose short side is under half of it are flagged small.
    """
    options = ScanOptions(resolution=resolution, drop_duplicates=drop_duplicates, max_pixels=max_pixels)
    report = ImportReport(resolution=resolution, drop_duplicates=drop_duplicates)
    for _ in scan_images(sources, report, options, progress=progress, cancel=cancel):
        pass
    return report


def scan_images(
    sources: SourcePaths,
    report: ImportReport,
    options: ScanOptions,
    *,
    index: NearDuplicateIndex | None = None,
    prepared: Collection[str] = (),
    exclude: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Iterator[UsableImage]:
    """Yield each usable image in order while filling `report`.

    `index` holds the fingerprints of images already in a prepared dataset and receives every image
    yielded; files whose sha256 is in `prepared` are counted as already prepared and not decoded.
    """
    files, unlisted = list_sources(sources, exclude)
    report.found = len(files) + len(unlisted)
    for source, reason in unlisted:
        _reject(report, source, reason)
    report.scanned = len(unlisted)
    examiner = _Examiner(report, options, NearDuplicateIndex() if index is None else index, prepared)
    with SourceReader() as reader:
        for source in files:
            if cancel is not None and cancel():
                report.cancelled = True
                return
            usable = examiner.examine(source, reader)
            report.scanned += 1
            if usable is not None:
                yield usable
            if progress is not None:
                progress(report.scanned, report.found, source.name)


class _Examiner:
    """Decides the fate of one file at a time, remembering what it has kept so far."""

    def __init__(
        self, report: ImportReport, options: ScanOptions, index: NearDuplicateIndex, prepared: Collection[str]
    ) -> None:
        self.report = report
        self.options = options
        self.index = index
        self.prepared = prepared
        self.first_with_sha256: dict[str, str] = {}
        self.groups: dict[tuple[str, str], DuplicateGroup] = {}

    def examine(self, source: SourceFile, reader: SourceReader) -> UsableImage | None:
        report, options = self.report, self.options
        if source.extension not in IMAGE_EXTENSIONS:
            _reject(report, source, unsupported_type_reason(source.extension))
            return None
        try:
            data = reader.read(source)
        except ImageRejected as exc:
            _reject(report, source, str(exc))
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 in self.prepared:
            report.already_prepared += 1
            return None
        original = self.first_with_sha256.get(sha256)
        if original is not None:
            self._group(report.duplicates, "exact", original, source.name)
            if options.drop_duplicates:
                return None
        draft = 2 * options.resolution if options.resolution else None
        try:
            decoded = decode_image(
                data,
                alpha=options.alpha,
                background=options.background,
                max_pixels=options.max_pixels,
                draft_short_side=draft,
            )
        except ImageRejected as exc:
            _reject(report, source, str(exc))
            return None
        print_ = fingerprint(decoded.image)
        if original is None:  # exact copies are reported once, not also as near-duplicates
            similar = self.index.find(print_)
            if similar is not None:
                self._group(report.near_duplicates, "near", similar, source.name)
                if options.drop_duplicates:
                    return None
        width, height = decoded.original_size
        record = ImageRecord(source.name, source.path, source.member, sha256, width, height)
        self.first_with_sha256.setdefault(sha256, source.name)
        self.index.add(print_, source.name)
        report.images.append(record)
        if options.resolution and min(width, height) < options.resolution / 2:
            report.small.append(source.name)
        return UsableImage(record, decoded, print_)

    def _group(self, groups: list[DuplicateGroup], kind: str, original: str, copy: str) -> None:
        group = self.groups.get((kind, original))
        if group is None:
            group = self.groups[kind, original] = DuplicateGroup(original)
            groups.append(group)
        group.copies.append(copy)


def _reject(report: ImportReport, source: SourceFile, reason: str) -> None:
    report.rejected.append(RejectedFile(source.name, source.path, source.member, reason))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _pairs(groups: list[DuplicateGroup], sign: str) -> list[str]:
    return [f"{copy} {sign} {group.original}" for group in groups for copy in group.copies]


def _section(lines: list[str], title: str, items: list[str]) -> None:
    if not items:
        return
    lines.append(f"{title}:")
    lines.extend(f"  {item}" for item in items[:SUMMARY_LINES])
    if len(items) > SUMMARY_LINES:
        lines.append(f"  … and {len(items) - SUMMARY_LINES} more")
