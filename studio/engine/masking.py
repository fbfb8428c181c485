"""Masked edits: a painted mask confines a change to part of the image by blending feature maps.

The original latents (outside) and the edited ones (inside) run through the synthesis network side by side.
From the chosen block on, after every block, the edited pass's features and RGB become a blend of the two
passes under the mask resized to that block (area-averaged, so small blocks see a soft mask). The inside
content is therefore generated in the context of the original around it, and edges stay seamless instead of
looking pasted; where the full-resolution mask is 0 the image is exactly the original. It costs about two
renders.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from models.stylegan2 import Generator
from studio.engine.state import Mask, MaskStroke, RenderState


@lru_cache(maxsize=8)  # a drag re-renders the same mask at preview and full size; strokes only grow on a press
def rasterize(mask: Mask, size: int) -> np.ndarray:
    """The mask's coverage [size, size] in [0, 1] (float32, read-only), strokes applied in order, inverted last."""
    out = np.zeros((size, size), np.float32)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    for stroke in mask.strokes:
        _apply_stroke(out, centres, stroke)
    if mask.invert:
        out = 1.0 - out
    out.flags.writeable = False
    return out


def _apply_stroke(out: np.ndarray, centres: np.ndarray, stroke: MaskStroke) -> None:
    """Paint (or erase) the capsule around the stroke's polyline: full inside hardness × radius, then a smooth
    fall-off to 0 at the radius. Each segment only touches its bounding box."""
    size = out.shape[0]
    radius, inner = stroke.radius, stroke.radius * stroke.hardness
    points = np.asarray(stroke.points, np.float32)
    segments = zip(points, points[1:], strict=False) if len(points) > 1 else [(points[0], points[0])]
    for a, b in segments:
        lo = np.clip(np.floor((np.minimum(a, b) - radius) * size).astype(int), 0, size)
        hi = np.clip(np.ceil((np.maximum(a, b) + radius) * size).astype(int) + 1, 0, size)
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            continue
        xs, ys = centres[lo[0] : hi[0]][None, :], centres[lo[1] : hi[1]][:, None]
        ab = b - a
        length2 = float(ab @ ab)
        t = 0.0 if length2 == 0 else np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / length2, 0, 1)
        distance = np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))
        u = np.clip((radius - distance) / max(radius - inner, 1e-6), 0, 1)
        alpha = u * u * (3 - 2 * u)
        region = out[lo[1] : hi[1], lo[0] : hi[0]]
        if stroke.erase:
            np.minimum(region, 1 - alpha, out=region)
        else:
            np.maximum(region, alpha, out=region)


def masked_synthesis(
    G: Generator,
    outside: tuple[torch.Tensor, RenderState],
    inside: tuple[torch.Tensor, RenderState],
    coverage: np.ndarray,
    blend_from: int,
    stop_at: int | None = None,
) -> torch.Tensor:
    """The image [1, C, R, R] of the `inside` w+ confined to `coverage` ([H, W] in [0, 1]) over the `outside`
    w+, each with its state's noise settings.

    Each pass runs on its own (batch 1, with its own noise generator when the noise is random), so the outside
    pass is exactly the plain render of the original."""
    synthesis = G.synthesis
    if blend_from not in synthesis.block_resolutions:
        raise ValueError(
            f"masks blend from one of this model's blocks ({', '.join(map(str, synthesis.block_resolutions))} px), "
            f"not {blend_from} px"
        )
    device = inside[0].device
    channels_last = synthesis.channels_last
    if channels_last is None:
        channels_last = device.type == "cpu" and not torch.is_grad_enabled()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    full = torch.tensor(coverage, dtype=torch.float32, device=device)[None, None]
    passes = []
    for ws, state in (outside, inside):
        generator = None
        if state.noise_mode == "random":
            generator = torch.Generator(device=device).manual_seed(state.noise_seed)
        passes.append([None, None, ws, state, generator])
    for res, (start, count) in synthesis.w_slices().items():
        block = getattr(synthesis, f"b{res}")
        for p in passes:
            p[0], p[1] = block(
                p[0], p[1], p[2].narrow(1, start, count), memory_format=memory_format,
                noise_mode=p[3].noise_mode, noise_scale=p[3].noise_strength, generator=p[4],
            )
        if res >= blend_from:
            m = full if full.shape[-1] == res else F.interpolate(full, size=(res, res), mode="area")
            (x_out, img_out), inside = passes[0][:2], passes[1]
            inside[0] = x_out.lerp(inside[0], m.to(x_out.dtype)).contiguous(memory_format=memory_format)
            inside[1] = img_out.lerp(inside[1], m)
        if res == stop_at:
            break
    return passes[1][1]
