"""Prepare a dataset: scan the sources and store every usable image as a square at the training resolution.

Re-running it on the same folder adds only files whose content (sha256) is new and keeps the rest, so an
artist can drop more pictures on a dataset as they find them. The sources themselves are only ever read.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from training.decode import WHITE, AlphaMode, Colour, DecodedImage, parse_colour
from training.near_duplicates import NearDuplicateIndex
from training.scan import CancelFn, ImageRecord, ImportReport, ProgressFn, ScanOptions, scan_images
from training.sources import SourcePaths
from training.store import (
    DatasetError,
    Manifest,
    ShardWriter,
    open_dataset_folder,
    read_fingerprints,
    remove_unreferenced,
    write_fingerprints,
    write_manifest,
)

FitMode = Literal["crop", "pad", "stretch"]
FIT_MODES = ("crop", "pad", "stretch")
ALPHA_MODES = ("composite", "keep")
REDUCING_GAP = 3.0  # box-reduce big images first, then Lanczos the last factor of 3: same look, much faster


def prepare_dataset(
    sources: SourcePaths,
    out_dir: str | os.PathLike[str],
    resolution: int,
    *,
    mode: FitMode = "crop",
    xflip: bool = False,
    alpha: AlphaMode = "composite",
    background: str | Colour = WHITE,
    pad_fill: str | Colour = "edge",
    drop_duplicates: bool = True,
    max_pixels: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> ImportReport:
    """Scan `sources` and add their new usable images to the prepared dataset in `out_dir`.

    mode: "crop" (centre square), "pad" (letterbox with `pad_fill`: "edge" replicates the border, or a
    colour) or "stretch". alpha: "composite" flattens transparency onto `background`; "keep" stores RGBA.
    xflip: the loader doubles the dataset with mirror images (nothing extra is stored). `cancel()` returning
    True stops the import and leaves the folder as it was. Raises DatasetError when `out_dir` holds a
    dataset prepared with other settings, or other files; per-file problems are only reported.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, not {resolution!r}")
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {', '.join(FIT_MODES)}, not {mode!r}")
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}, not {alpha!r}")
    background = parse_colour(background)
    fill: str | list[int] = "edge" if pad_fill == "edge" else list(parse_colour(pad_fill))
    settings = {
        "resolution": resolution,
        "channels": 4 if alpha == "keep" else 3,
        "mode": mode,
        "alpha": alpha,
        "background": list(background),
        "pad_fill": fill,
    }
    folder = Path(out_dir).absolute()
    old, created = open_dataset_folder(folder)
    if old is not None and old.settings() != settings:
        raise DatasetError(_settings_mismatch(folder, old.settings(), settings))
    remove_unreferenced(folder, old)
    new = _successor(old, settings, xflip)
    index = _index_of(folder, old)
    report = ImportReport(resolution=resolution, drop_duplicates=drop_duplicates, output_dir=str(folder))
    options = ScanOptions(resolution, alpha, background, drop_duplicates, max_pixels)
    writer: ShardWriter | None = None
    try:
        for usable in scan_images(
            sources,
            report,
            options,
            index=index,
            prepared={entry["sha256"] for entry in new.images},
            exclude=folder,
            progress=progress,
            cancel=cancel,
        ):
            pixels, box = fit_square(usable.decoded, resolution, mode, fill)
            if writer is None:
                writer = ShardWriter(folder, new)
            writer.append(pixels)
            new.images.append(_entry(len(new.images), usable.record, box))
        report.cancelled = report.cancelled or (cancel is not None and cancel())
        if not report.cancelled:
            if writer is not None:
                new.shards = writer.finish()
                write_fingerprints(folder, new, index.fingerprints())
            write_manifest(folder, new)
    except BaseException:
        _discard(folder, old, writer, created)
        raise
    if report.cancelled:
        _discard(folder, old, writer, created)
        return report
    remove_unreferenced(folder, new)
    report.dataset_size = len(new.images)
    if progress is not None:
        progress(report.scanned, report.found, f"saved {len(new.images)} images to {folder}")
    return report


def fit_square(
    decoded: DecodedImage, resolution: int, mode: FitMode, pad_fill: str | list[int] = "edge"
) -> tuple[np.ndarray, list[float]]:
    """uint8 [R, R, C] pixels, and the box (x0, y0, x1, y1) of the upright source they show.

    The box is in the source's full-size pixels; in pad mode it reaches outside the image (the padding).
    """
    image = decoded.image
    width, height = decoded.original_size
    if mode == "pad":
        return _letterbox(image, width, height, resolution, pad_fill)
    if mode == "crop":
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        box = (x0, y0, x0 + side, y0 + side)
    else:
        box = (0, 0, width, height)
    sx, sy = image.width / width, image.height / height  # below 1 when the JPEG was decoded reduced
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    square = image.resize((resolution, resolution), Image.Resampling.LANCZOS, scaled, REDUCING_GAP)
    return np.asarray(square), [float(v) for v in box]


def _letterbox(
    image: Image.Image, width: int, height: int, resolution: int, pad_fill: str | list[int]
) -> tuple[np.ndarray, list[float]]:
    scale = resolution / max(width, height)
    inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
    inner = np.asarray(image.resize((inner_w, inner_h), Image.Resampling.LANCZOS, None, REDUCING_GAP))
    left, top = (resolution - inner_w) // 2, (resolution - inner_h) // 2
    if pad_fill == "edge":
        widths = ((top, resolution - inner_h - top), (left, resolution - inner_w - left), (0, 0))
        square = np.pad(inner, widths, mode="edge")
    else:
        square = np.empty((resolution, resolution, inner.shape[2]), np.uint8)
        square[:] = [*pad_fill, 255][: inner.shape[2]]
        square[top : top + inner_h, left : left + inner_w] = inner
    box = [-left / scale, -top / scale, (resolution - left) / scale, (resolution - top) / scale]
    return square, [round(v, 2) for v in box]


def _successor(old: Manifest | None, settings: dict[str, Any], xflip: bool) -> Manifest:
    """The manifest this import will commit: a copy of the old one (untouched, for a clean abort)."""
    if old is None:
        return Manifest(**settings, xflip=xflip)
    return dataclasses.replace(old, xflip=xflip, shards=list(old.shards), images=list(old.images))


def _index_of(folder: Path, manifest: Manifest | None) -> NearDuplicateIndex:
    """The near-duplicate index of the images already prepared, in dataset order."""
    index = NearDuplicateIndex()
    if manifest is None:
        return index
    fingerprints = read_fingerprints(folder, manifest)
    if len(fingerprints) != len(manifest.images):
        raise DatasetError(f"{folder}: the fingerprint file does not match the manifest; prepare it again")
    for row, entry in zip(fingerprints, manifest.images, strict=True):
        index.add(row, entry["name"])
    return index


def _entry(index: int, record: ImageRecord, box: list[float]) -> dict[str, Any]:
    return {
        "index": index,
        "name": record.name,
        "source": record.path,
        "member": record.member,
        "sha256": record.sha256,
        "size": [record.width, record.height],
        "box": box,
    }


def _discard(folder: Path, old: Manifest | None, writer: ShardWriter | None, created: bool) -> None:
    """Undo an unfinished import: remove what it wrote, and the folder if it made it."""
    if writer is not None:
        writer.abort()
    remove_unreferenced(folder, old)
    if created and not any(folder.iterdir()):
        folder.rmdir()


def _settings_mismatch(folder: Path, have: dict[str, Any], want: dict[str, Any]) -> str:
    differences = ", ".join(
        f"{key} {have[key]} (asked {want[key]})" for key in want if have[key] != want[key]
    )
    return f"{folder} holds a dataset prepared with {differences}; prepare into another folder"
