"""Exports: single images, seed batches, contact sheets, interpolation videos (MP4/GIF) and latents.

Every file is written atomically under a name that never replaces an existing file (`unique_path`), images
carry their recipe, and every OSError becomes an `ExportError` saying what to do. Long exports report
`progress(done, total, message)` and stop when `cancel()` returns True: the file being written is removed,
finished files of a batch are kept, and a cancelled grid or video returns None.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from studio.engine.files import ExportError, atomic_write, export_errors
from studio.engine.imaging import grid, resize
from studio.engine.library import ModelEntry, Progress
from studio.engine.recipe import make_recipe, save_image
from studio.engine.session import Session
from studio.engine.state import RenderState

__all__ = [
    "ExportError",
    "export_batch",
    "export_grid",
    "export_image",
    "export_latents",
    "export_video",
    "frame_positions",
    "interpolate_latents",
    "unique_path",
]

Cancel = Callable[[], bool]
FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif"}
SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff"}
UPSCALES = (1, 2, 4)
EASINGS = ("linear", "smooth")
VIDEO_SUFFIXES = (".mp4", ".gif")


class _Cancelled(Exception):
    pass


def unique_path(path: str | os.PathLike[str]) -> Path:
    """`path` if free, else the first free "name (2).ext", "name (3).ext", …"""
    path = Path(path)
    if not path.exists():
        return path
    stem = re.sub(r" \(\d+\)$", "", path.stem)
    n = 2
    while (candidate := path.with_name(f"{stem} ({n}){path.suffix}")).exists():
        n += 1
    return candidate


def export_image(
    image: np.ndarray,
    path: str | os.PathLike[str],
    fmt: str = "png",
    upscale: int = 1,
    state: RenderState | None = None,
    entry: ModelEntry | None = None,
) -> Path:
    """Save uint8 RGB `image` as `fmt`, Lanczos-upscaled ×`upscale`, with the recipe when `state` and `entry`
    are given; returns the path written (the suffix follows `fmt`; an existing file is never replaced)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}: use {', '.join(FORMATS)}")
    if upscale not in UPSCALES:
        raise ValueError(f"upscale must be one of {UPSCALES}, not {upscale}")
    path = Path(path)
    if SUFFIXES.get(path.suffix.lower()) != fmt:
        path = (
            path.with_suffix(FORMATS[fmt])
            if path.suffix.lower() in SUFFIXES
            else Path(f"{path}{FORMATS[fmt]}")
        )
    if upscale > 1:
        image = resize(image, (image.shape[1] * upscale, image.shape[0] * upscale))
    recipe = make_recipe(state, entry) if state is not None and entry is not None else None
    target = unique_path(path)
    save_image(Image.fromarray(image), target, fmt, recipe)
    return target


def export_batch(
    session: Session,
    seeds: Sequence[int],
    state: RenderState,
    out_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    fmt: str = "png",
    upscale: int = 1,
) -> list[Path]:
    """One image per seed (the rest of `state` kept), named `seed0042.png`; returns the files written."""
    out_dir = Path(out_dir)
    with export_errors(out_dir / "seed.png"):
        out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, seed in enumerate(seeds):
        if cancel is not None and cancel():
            break
        seed_state = state.replace(seed=seed, w=None)
        image = session.render(seed_state)
        written.append(
            export_image(image, out_dir / f"seed{seed:04d}", fmt, upscale, seed_state, session.entry)
        )
        if progress is not None:
            progress(i + 1, len(seeds), f"Saved {written[-1].name}")
    return written


def export_grid(
    session: Session,
    states: Sequence[RenderState],
    path: str | os.PathLike[str],
    columns: int | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    tile: int | None = None,
    padding: int = 4,
    labels: bool = True,
) -> Path | None:
    """A contact sheet of `states` (tiles of `tile` px, default up to 256; captions "seed N") as a PNG."""
    if not states:
        raise ValueError("a grid needs at least one image")
    columns = columns or math.ceil(math.sqrt(len(states)))
    size = tile or min(session.resolution, 256)
    images = []
    for i, state in enumerate(states):
        if cancel is not None and cancel():
            return None
        images.append(resize(session.render(state), (size, size)))
        if progress is not None:
            progress(i + 1, len(states), f"Rendered {i + 1} of {len(states)}")
    captions = [f"seed {s.seed}" if s.w is None else "latent" for s in states] if labels else None
    sheet = grid(images, columns, padding=padding, labels=captions)
    return export_image(sheet, path, "png")


def frame_positions(num_frames: int, num_keyframes: int, loop: bool) -> np.ndarray:
    """Where each frame sits on the keyframe path, from 0 (first keyframe) to `num_keyframes - 1`, or to
    `num_keyframes` (the first again) when looping — a position the frames stop one step short of, so the
    video repeats without a doubled frame."""
    segments = num_keyframes if loop else num_keyframes - 1
    if loop:
        return np.arange(num_frames) * (segments / num_frames)
    return np.linspace(0, segments, num_frames) if num_frames > 1 else np.zeros(1)


def interpolate_latents(
    keys: np.ndarray, positions: np.ndarray, easing: str = "linear", loop: bool = False
) -> np.ndarray:
    """Latents at `positions` on the path through `keys` [K, ...], linear in w+ with optional ease-in-out
    at each keyframe ("smooth" pauses briefly on every keyframe)."""
    if easing not in EASINGS:
        raise ValueError(f"easing must be one of {', '.join(EASINGS)}, not {easing!r}")
    count = len(keys)
    segments = count if loop else count - 1
    out = np.empty((len(positions), *keys.shape[1:]), dtype=np.float32)
    for i, position in enumerate(positions):
        a = min(int(math.floor(position)), segments - 1)
        u = float(position) - a
        if easing == "smooth":
            u = u * u * (3 - 2 * u)
        b = (a + 1) % count
        out[i] = keys[a] + (keys[b] - keys[a]) * np.float32(u)
    return out


def export_video(
    session: Session,
    keyframes: Sequence[RenderState],
    path: str | os.PathLike[str],
    seconds: float,
    fps: int,
    easing: str = "linear",
    loop: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> Path | None:
    """An interpolation video through `keyframes` (MP4 via ffmpeg or GIF), seconds × fps frames; noise
    settings come from the first keyframe, and StyleGAN3's camera moves with the latents (rotation linearly in
    degrees; StyleGAN2 models have no camera and ignore it). Returns the path written, or None when cancelled."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in VIDEO_SUFFIXES:
        raise ValueError(f"videos are saved as .mp4 or .gif, not {path.suffix or 'a file without extension'}")
    if len(keyframes) < 2:
        raise ValueError("a video needs at least two keyframes")
    num_frames = round(seconds * fps)
    if fps <= 0 or num_frames < 1:
        raise ValueError(f"{seconds} s at {fps} frames per second makes no frames")
    keys = np.stack([session.ws_for_state(k) for k in keyframes])
    positions = frame_positions(num_frames, len(keyframes), loop)
    latents = interpolate_latents(keys, positions, easing, loop)
    cameras = np.array([k.camera for k in keyframes]) if session.has_camera else np.zeros((len(keyframes), 3))
    camera_path = interpolate_latents(cameras, positions, easing, loop)

    def frames() -> Iterator[np.ndarray]:
        for i, (ws, camera) in enumerate(zip(latents, camera_path, strict=True)):
            if cancel is not None and cancel():
                raise _Cancelled
            yield session.render_ws(ws, keyframes[0].with_camera(camera))
            if progress is not None:
                progress(i + 1, num_frames, f"Frame {i + 1} of {num_frames}")

    target = unique_path(path)
    try:
        with export_errors(target):
            atomic_write(
                target, lambda tmp: (_write_mp4 if kind == ".mp4" else _write_gif)(tmp, frames(), fps)
            )
    except _Cancelled:
        return None
    return target


def _write_mp4(path: Path, frames: Iterator[np.ndarray], fps: int) -> None:
    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        quality=8,
        pixelformat="yuv420p",
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def _write_gif(path: Path, frames: Iterator[np.ndarray], fps: int) -> None:
    first = Image.fromarray(next(frames))
    rest = (Image.fromarray(frame) for frame in frames)
    first.save(path, format="GIF", save_all=True, append_images=rest, duration=round(1000 / fps), loop=0)


def export_latents(session: Session, states: Sequence[RenderState], path: str | os.PathLike[str]) -> Path:
    """The w+ of each state as float32 .npy [N, num_ws, w_dim]; what renders (truncated, mixed, edited)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        path = Path(f"{path}.npy")
    latents = np.stack([session.ws_for_state(s) for s in states]).astype(np.float32)
    target = unique_path(path)
    with export_errors(target):
        atomic_write(target, lambda tmp: np.save(tmp, latents))
    return target
