"""Pixel helpers shared by rendering, thumbnails, grids and exports: tensors to uint8 RGB, grids, resizing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output [N, C, H, W] in about [-1, 1] → uint8 RGB [N, H, W, 3] (grey repeated, alpha dropped).

    The mapping (x * 127.5 + 128, clamped, truncated) is NVIDIA's, so seeds give their exact pixels.
    """
    x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return np.ascontiguousarray(x[:, :3].permute(0, 2, 3, 1).cpu().numpy())


def resize(
    image: np.ndarray, size: tuple[int, int], resample: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """Resize uint8 RGB [H, W, 3] to (width, height)."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(size, resample))


def grid(
    images: Sequence[np.ndarray | None],
    columns: int,
    padding: int = 0,
    background: tuple[int, int, int] = (255, 255, 255),
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Tile equal-sized images row by row; None leaves a cell blank; `labels` adds a caption under each."""
    sample = next((im for im in images if im is not None), None)
    if sample is None or columns < 1:
        raise ValueError("a grid needs at least one image and one column")
    h, w = sample.shape[:2]
    caption = 0
    if labels is not None:
        font = ImageFont.load_default()
        caption = font.getbbox("Ag")[3] + 6
    rows = -(-len(images) // columns)
    cell_h = h + caption
    sheet = Image.new(
        "RGB", (columns * w + (columns + 1) * padding, rows * cell_h + (rows + 1) * padding), background
    )
    draw = ImageDraw.Draw(sheet)
    for i, image in enumerate(images):
        x = padding + (i % columns) * (w + padding)
        y = padding + (i // columns) * (cell_h + padding)
        if image is not None:
            if image.shape[:2] != (h, w):
                raise ValueError(f"grid images must share one size: {image.shape[:2]} != {(h, w)}")
            sheet.paste(Image.fromarray(image), (x, y))
        if labels is not None and i < len(labels):
            draw.text((x + 3, y + h + 3), labels[i], fill=(0, 0, 0), font=font)
    return np.asarray(sheet)
