"""Rendering a timeline to a file: MP4 (H.264, with the timeline in its metadata), GIF or a PNG sequence whose
frames each carry the recipe of their own state (`Animator.state_at`: dropped on the window, a frame comes back).

A partial export never looks complete: a video is written to a hidden temp file renamed at the end, a PNG
sequence fills a hidden folder renamed at the end, and a cancel or a failure removes what was begun.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from studio.engine.export import _Cancelled, _write_gif, _write_mp4, unique_path
from studio.engine.files import atomic_write, atomic_write_bytes, export_errors
from studio.engine.imaging import resize
from studio.engine.library import Progress
from studio.engine.recipe import make_recipe, save_image
from studio.engine.session import Session
from studio.engine.timeline import Animator, Timeline

TIMELINE_SUFFIX = ".json"
METADATA_PREFIX = "gan-studio-timeline:"
MP4_BLOCK = 16  # the MP4 writer pads frames to multiples of 16 px; sizes are kept on that grid instead
MAX_SIZE = 4096
FFMETADATA_SPECIALS = "\\=;#\n"


def export_kind(path: str | os.PathLike[str]) -> str:
    """"mp4", "gif", or "png" (a sequence: the path names its folder)."""
    suffix = Path(path).suffix.lower()
    return {".mp4": "mp4", ".gif": "gif"}.get(suffix, "png")


def export_timeline(
    session: Session,
    timeline: Timeline,
    path: str | os.PathLike[str],
    size: int | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path | None:
    """Render every frame of `timeline` at full resolution (Lanczos-resized to `size` px if given) into `path`
    (.mp4, .gif, or a folder of PNGs). Returns the path written (never replacing a file: "name (2).mp4"…),
    or None when cancelled."""
    if not timeline.keyframes:
        raise ValueError("the timeline has no keyframes: add at least one before exporting")
    kind = export_kind(path)
    if size is not None and not 1 <= size <= MAX_SIZE:
        raise ValueError(f"the frame size must be from 1 to {MAX_SIZE} px, not {size}")
    out_size = size or session.resolution
    if kind == "mp4" and out_size % MP4_BLOCK:
        raise ValueError(f"MP4 frames must be a multiple of {MP4_BLOCK} px wide; {out_size} px is not")
    animator = Animator(session, timeline)
    total = timeline.num_frames
    project = timeline.to_json(session.entry)

    def frames() -> Iterator[np.ndarray]:
        for index in range(total):
            if cancel is not None and cancel():
                raise _Cancelled
            frame = animator.render(timeline.frame_time(index))
            yield resize(frame, (out_size, out_size))
            if progress is not None:
                progress(index + 1, total, f"Frame {index + 1} of {total}")

    def recipes() -> Iterator[dict]:
        for index in range(total):
            yield make_recipe(animator.state_at(timeline.frame_time(index)), session.entry)

    target = unique_path(path)
    try:
        with export_errors(target):
            if kind == "png":
                _write_sequence(target, zip(frames(), recipes(), strict=True), project)
            elif kind == "gif":
                atomic_write(target, lambda tmp: _write_gif(tmp, frames(), timeline.fps))
            else:
                atomic_write(target, lambda tmp: _write_mp4_with_timeline(tmp, frames(), timeline.fps, project))
    except _Cancelled:
        return None
    return target


def save_timeline(timeline: Timeline, session: Session, path: str | os.PathLike[str]) -> Path:
    """Write the project file (atomically; an existing file of that name is replaced, as Save does)."""
    path = Path(path)
    if path.suffix.lower() != TIMELINE_SUFFIX:
        path = Path(f"{path}{TIMELINE_SUFFIX}")
    with export_errors(path):
        atomic_write_bytes(path, json.dumps(timeline.to_dict(session.entry), indent=1).encode("utf-8"))
    return path


def read_timeline(path: str | os.PathLike[str]) -> tuple[Timeline, dict]:
    """The timeline of a project file or of an MP4 exported from one, with the first keyframe's recipe (it
    names the model); ValueError says why there is none."""
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        text = read_mp4_timeline(path)
        if text is None:
            raise ValueError(f"{path.name} carries no GAN Studio timeline")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"could not read {path.name}: {exc}") from None
    return Timeline.from_json(text)


def read_mp4_timeline(path: str | os.PathLike[str]) -> str | None:
    """The timeline JSON in an MP4's comment, or None (another video, or not a video at all)."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    if result.returncode != 0:
        return None
    for line in re.split(r"(?<!\\)\n", result.stdout):
        if line.startswith("comment="):
            value = re.sub(r"\\(.)", r"\1", line[len("comment=") :], flags=re.DOTALL)
            if value.startswith(METADATA_PREFIX):
                return value[len(METADATA_PREFIX) :]
    return None


def _write_mp4_with_timeline(path: Path, frames: Iterator[np.ndarray], fps: int, project: str) -> None:
    """Encode the frames, then copy the stream into `path` with the project as the MP4 comment (ffmpeg's
    metadata file carries any length, unlike a command-line argument)."""
    encoded = path.with_name(f"{path.stem}.frames.mp4")
    metadata = path.with_name(f"{path.stem}.metadata.txt")
    escaped = "".join(f"\\{ch}" if ch in FFMETADATA_SPECIALS else ch for ch in METADATA_PREFIX + project)
    try:
        _write_mp4(encoded, frames, fps)
        metadata.write_text(f";FFMETADATA1\ncomment={escaped}\n", encoding="utf-8")
        result = subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(encoded), "-f", "ffmetadata",
                "-i", str(metadata), "-map", "0", "-map_metadata", "1", "-c", "copy", "-f", "mp4", str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise OSError(f"ffmpeg could not write the video: {result.stderr.strip()}")
    finally:
        encoded.unlink(missing_ok=True)
        metadata.unlink(missing_ok=True)


def _write_sequence(target: Path, frames: Iterator[tuple[np.ndarray, dict]], project: str) -> None:
    """frame_00000.png… (each with its recipe) and the project (timeline.json) in a hidden folder, renamed to
    `target` when whole."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    partial.mkdir(parents=True)
    try:
        for index, (frame, recipe) in enumerate(frames):
            save_image(Image.fromarray(frame), partial / f"frame_{index:05d}.png", "png", recipe)
        (partial / f"timeline{TIMELINE_SUFFIX}").write_text(project, encoding="utf-8")
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
