"""DiffAugment (Zhao et al. 2020): cheap, always-on, differentiable augmentation for data-efficient GANs.

Unlike ADA there is no probability to tune: every image the discriminator sees (real or fake, in both the
G and D steps) gets the same policy. The transforms follow the paper's reference code: random brightness,
saturation and contrast; a translation by up to 1/8 of the image size with zero fill; and a cutout of a
half-size rectangle. Written with elementwise ops and gathers so it runs, and back-propagates, everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _uniform(x: Tensor, low: float, high: float) -> Tensor:
    """One U(low, high) number per sample, shaped to broadcast over [N, C, H, W]."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * (high - low) + low


def _brightness(x: Tensor) -> Tensor:
    return x + _uniform(x, -0.5, 0.5)


def _saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _uniform(x, 0, 2) + mean


def _contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def _translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by a random whole number of pixels, up to `ratio` of its size; zeros fill in."""
    n, c, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    src_y = torch.arange(h, device=x.device)[:, None] - shift_y
    src_x = torch.arange(w, device=x.device) - shift_x
    inside = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
    index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    shifted = x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)
    return torch.where(inside[:, None], shifted, 0)


def _cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a `ratio`-sized rectangle centred anywhere in each image (clipped at the borders)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device) - size_y // 2
    left = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device) - size_x // 2
    ys = torch.arange(h, device=x.device)[:, None]
    xs = torch.arange(w, device=x.device)
    hole = (ys >= top) & (ys < top + size_y) & (xs >= left) & (xs < left + size_x)
    return torch.where(hole[:, None], 0, x)


_POLICIES: dict[str, tuple[Callable[[Tensor], Tensor], ...]] = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """The policy's comma-separated names, checked; "" means no augmentation."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in _POLICIES]
    if unknown:
        raise ValueError(
            f"unknown DiffAugment policy {', '.join(map(repr, unknown))} in {policy!r}; "
            f"use a comma-separated subset of {', '.join(_POLICIES)}"
        )
    return names


def diff_augment(x: Tensor, policy: str = "color,translation,cutout") -> Tensor:
    """Augment images [N, C, H, W] in [-1, 1] with every transform of `policy`, differentiably."""
    for name in parse_policy(policy):
        for transform in _POLICIES[name]:
            x = transform(x)
    return x
