"""Differentiable augmentation of what the discriminator sees: ADA (Karras et al. 2020), DiffAugment, or none.

A discriminator trained on few images memorises them; augmenting every image it sees (reals and fakes alike)
prevents that, and because ADA applies each transform with a probability `p` < 1 the generator cannot learn
to produce augmented-looking images. `AdaController` tunes `p` from the sign of D's outputs on reals.

Written in plain PyTorch (no compiled ops) so it runs on CPU, CUDA and MPS. Geometry is done in float32
with elementwise arithmetic rather than matmul, so that TF32 or autocast can never round pixel coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from training.diffaugment import diff_augment, parse_policy

_GROUPS = {
    "b": ("xflip", "rotate90", "xint"),
    "g": ("scale", "rotate", "aniso", "xfrac"),
    "c": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
}
_LONG_NAMES = {"blit": "b", "geom": "g", "color": "c"}
PRESETS = ("b", "g", "c", "bg", "bc", "gc", "bgc", *_LONG_NAMES)
Kind = Literal["ada", "diffaug", "none"]


def _matrix(*rows: tuple[Tensor | float, ...]) -> Tensor:
    """Batched matrix [N, R, C] from entries that are per-sample tensors [N] or constants."""
    ref = next(e for row in rows for e in row if isinstance(e, Tensor))
    entries = [e if isinstance(e, Tensor) else torch.full_like(ref, e) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(*ref.shape, len(rows), len(rows[0]))


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """Batched a @ b without matmul kernels: exact for integer matrices and immune to TF32."""
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrix((1, 0, tx), (0, 1, ty), (0, 0, 1))


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrix((sx, 0, 0), (0, sy, 0), (0, 0, 1))


def _rotate2d(cos: Tensor, sin: Tensor) -> Tensor:
    return _matrix((cos, -sin, 0), (sin, cos, 0), (0, 0, 1))


def _log2_normal(n: int, std: float, device: torch.device) -> Tensor:
    """Per-sample factors 2^N(0, std^2): the paper's distribution for every scaling."""
    return torch.exp2(torch.randn([n], device=device) * std)


def _fold(coord: Tensor, size: int) -> Tensor:
    """Mirror coordinates about the edge pixel centres into [0, size - 1], at any distance (F.pad 'reflect').

    Bilinear interpolation of a mirrored image equals interpolation at the mirrored coordinate.
    """
    period = 2 * size - 2
    if period == 0:
        return torch.zeros_like(coord)
    coord = coord.remainder(period)
    return torch.where(coord > size - 1, period - coord, coord)


def _resample(images: Tensor, g_inv: Tensor) -> Tensor:
    """Bilinearly sample `images` at G_inv @ (output pixel), both in pixel units about the image centre.

    Outside the image the content is mirrored, so no border ever shows. This gathers the four neighbours
    itself instead of calling F.grid_sample: integer coordinates stay exact (flips, 90-degree turns and
    integer shifts are pure pixel permutations), it is differentiable to any order (R1 needs the gradient
    of a gradient), and its backward runs on MPS, which has lacked grid_sample's backward.
    """
    n, c, h, w = images.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32, device=images.device) - cx
    ys = (torch.arange(h, dtype=torch.float32, device=images.device) - cy)[:, None]
    g = g_inv[:, :2, :, None, None]
    src_x = _fold(g[:, 0, 0] * xs + g[:, 0, 1] * ys + g[:, 0, 2] + cx, w)
    src_y = _fold(g[:, 1, 0] * xs + g[:, 1, 1] * ys + g[:, 1, 2] + cy, h)
    x0, y0 = src_x.floor(), src_y.floor()
    fx = (src_x - x0).reshape(n, 1, h * w).to(images.dtype)
    fy = (src_y - y0).reshape(n, 1, h * w).to(images.dtype)
    # A zero row and column after the image stand in for the neighbour x0 + 1 (or y0 + 1) at the last
    # pixel, where its weight is exactly 0.
    padded = F.pad(images, (0, 1, 0, 1)).reshape(n, c, (h + 1) * (w + 1))
    base = (y0 * (w + 1) + x0).long().reshape(n, 1, h * w)

    def tap(offset: int) -> Tensor:
        return padded.gather(2, (base + offset).expand(n, c, h * w))

    # a + f * (b - a) rather than torch.lerp: exact at f = 0 and much faster on CPU with broadcast weights.
    top, bottom = tap(0), tap(w + 1)
    top = top + fx * (tap(1) - top)
    bottom = bottom + fx * (tap(w + 2) - bottom)
    return (top + fy * (bottom - top)).reshape(n, c, h, w)


class AugmentPipe(nn.Module):
    """The ADA pipeline: random geometric and colour transforms, each applied to a sample with probability p.

    Each argument is a multiplier on p for its transform (0 disables it). All geometric transforms
    compose into one 3x3 matrix per sample so the image is resampled once; all colour transforms
    compose into one 4x4 matrix applied to RGB. Works on 3-channel (RGB) and 1-channel (L) images;
    an L image is treated as grey RGB, so hue and saturation leave it unchanged (as in NVIDIA's pipe).
    """

    p: Tensor

    def __init__(
        self,
        xflip: float = 1,
        rotate90: float = 1,
        xint: float = 1,
        scale: float = 1,
        rotate: float = 1,
        aniso: float = 1,
        xfrac: float = 1,
        brightness: float = 1,
        contrast: float = 1,
        lumaflip: float = 1,
        hue: float = 1,
        saturation: float = 1,
        *,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1,
        saturation_std: float = 1,
        p: float = 0.0,
    ) -> None:
        super().__init__()
        settings = dict(locals())
        for name in ("self", "__class__", "p"):
            settings.pop(name, None)
        for name, value in settings.items():
            if not value >= 0:
                raise ValueError(f"AugmentPipe: {name} must be a number >= 0, got {value!r}")
            setattr(self, name, float(value))
        if not 0 <= p <= 1:
            raise ValueError(f"AugmentPipe: p is a probability and must be in [0, 1], got {p!r}")
        self.register_buffer("p", torch.tensor(float(p)))
        # Colour constants, kept on the pipe's device so that forward never copies from the host (a sync
        # on CUDA): v v^T for the luma axis v = [1, 1, 1, 0] / sqrt(3), sqrt(3) [v]_x, and the RGB identity.
        luma, cross, rgb = torch.zeros(3, 4, 4)
        luma[:3, :3] = 1 / 3
        cross[:3, :3] = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
        rgb[:3, :3] = torch.eye(3)
        for name, value in (("luma", luma), ("cross", cross), ("rgb", rgb)):
            self.register_buffer(f"_{name}", value, persistent=False)

    @classmethod
    def from_preset(cls, name: str, **kwargs: float) -> AugmentPipe:
        """A pipe with the transform groups named by letters: b(lit), g(eom), c(olor); "bgc" is ADA's default.

        `kwargs` override strengths (e.g. `xint_max`) or set the initial `p`.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}")
        letters = _LONG_NAMES.get(name, name)
        enabled = {t: float(letter in letters) for letter, group in _GROUPS.items() for t in group}
        return cls(**{**enabled, **kwargs})

    def _applied(self, values: Tensor, neutral: float, strength: float | Tensor) -> Tensor:
        """`values` where a per-sample coin with P(heads) = strength lands heads, else the neutral value."""
        heads = torch.rand(values.shape[0], device=values.device) < strength
        return torch.where(heads.reshape(-1, *[1] * (values.ndim - 1)), values, neutral)

    def _geometry(self, n: int, h: int, w: int, device: torch.device) -> Tensor:
        """Per-sample inverse transform [N, 3, 3] (output pixel -> input pixel), composed as in the paper."""
        p = self.p
        g_inv = torch.eye(3, device=device).expand(n, 3, 3)
        if self.xflip > 0:
            i = self._applied(torch.randint(0, 2, [n], device=device).float(), 0, self.xflip * p)
            g_inv = _matmul(g_inv, _scale2d(1 - 2 * i, torch.ones_like(i)))
        if self.rotate90 > 0:
            k = self._applied(torch.randint(0, 4, [n], device=device).float(), 0, self.rotate90 * p)
            # Exact cos and sin of k quarter turns: (1, 0), (0, 1), (-1, 0), (0, -1).
            even = k.remainder(2) == 0
            g_inv = _matmul(g_inv, _rotate2d(torch.where(even, 1 - k, 0), torch.where(even, 0, 2 - k)))
        if self.xint > 0:
            t = self._applied((torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max, 0, self.xint * p)
            g_inv = _matmul(g_inv, _translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h)))
        if self.scale > 0:
            s = self._applied(_log2_normal(n, self.scale_std, device), 1, self.scale * p)
            g_inv = _matmul(g_inv, _scale2d(1 / s, 1 / s))
        # Rotation happens before and/or after the anisotropic scaling, each with P = p_rot: P(either) = p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))

        def rotation() -> Tensor:
            theta = (torch.rand([n], device=device) * 2 - 1) * (math.pi * self.rotate_max)
            theta = self._applied(theta, 0, p_rot)
            return _rotate2d(torch.cos(theta), torch.sin(theta))

        if self.rotate > 0:
            g_inv = _matmul(g_inv, rotation())
        if self.aniso > 0:
            s = self._applied(_log2_normal(n, self.aniso_std, device), 1, self.aniso * p)
            g_inv = _matmul(g_inv, _scale2d(1 / s, s))
        if self.rotate > 0:
            g_inv = _matmul(g_inv, rotation())
        if self.xfrac > 0:
            t = self._applied(torch.randn([n, 2], device=device) * self.xfrac_std, 0, self.xfrac * p)
            g_inv = _matmul(g_inv, _translate2d(-t[:, 0] * w, -t[:, 1] * h))
        return g_inv

    def _color(self, n: int, device: torch.device) -> Tensor:
        """Per-sample colour transform [N, 4, 4] acting on (r, g, b, 1), composed as in the paper."""
        p = self.p
        eye = torch.eye(4, device=device)
        luma, cross, rgb = (m.to(device) for m in (self._luma, self._cross, self._rgb))  # no-op once moved
        col = (..., None, None)
        c = eye.expand(n, 4, 4)
        if self.brightness > 0:
            b = self._applied(torch.randn([n], device=device) * self.brightness_std, 0, self.brightness * p)
            c = _matmul(_matrix((1, 0, 0, b), (0, 1, 0, b), (0, 0, 1, b), (0, 0, 0, 1)), c)
        if self.contrast > 0:
            s = self._applied(_log2_normal(n, self.contrast_std, device), 1, self.contrast * p)
            c = _matmul(_matrix((s, 0, 0, 0), (0, s, 0, 0), (0, 0, s, 0), (0, 0, 0, 1)), c)
        if self.lumaflip > 0:
            i = self._applied(torch.randint(0, 2, [n], device=device).float(), 0, self.lumaflip * p)
            c = _matmul(eye - 2 * luma * i[col], c)  # Householder reflection of the luma axis
        if self.hue > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * (math.pi * self.hue_max)
            theta = self._applied(theta, 0, self.hue * p)
            cos, sin = torch.cos(theta)[col], torch.sin(theta)[col]
            c = _matmul(eye + (cos - 1) * rgb + (1 - cos) * luma + sin / math.sqrt(3) * cross, c)
        if self.saturation > 0:
            s = self._applied(_log2_normal(n, self.saturation_std, device), 1, self.saturation * p)
            c = _matmul(eye + (s[col] - 1) * rgb + (1 - s[col]) * luma, c)
        return c

    def forward(self, images: Tensor) -> Tensor:
        """Augment images [N, C, H, W] in [-1, 1]; differentiable w.r.t. them; returns their dtype."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects images shaped [N, C, H, W], got {list(images.shape)}")
        n, channels, h, w = images.shape
        uses_color = any(getattr(self, t) > 0 for t in _GROUPS["c"])
        if uses_color and channels not in (1, 3):
            raise ValueError(
                f"colour augmentation needs 1 (L) or 3 (RGB) channels, got {channels}; "
                "use a preset without colour ('bg')"
            )
        x = images.to(torch.promote_types(images.dtype, torch.float32))
        if any(getattr(self, t) > 0 for t in (*_GROUPS["b"], *_GROUPS["g"])):
            x = _resample(x, self._geometry(n, h, w, x.device))
        if uses_color:
            c = self._color(n, x.device).to(x.dtype)
            flat = x.reshape(n, channels, h * w)
            if channels == 3:
                flat = (c[:, :3, :3, None] * flat[:, None]).sum(2) + c[:, :3, 3:]
            else:  # grey as (L, L, L): each row's gain is its sum; back to L by averaging the rows
                flat = flat * c[:, :3, :3].sum(2).mean(1)[:, None, None] + c[:, :3, 3].mean(1)[:, None, None]
            x = flat.reshape(n, channels, h, w)
        return x.to(images.dtype)


def _all_reduce_sum(stats: Tensor) -> Tensor:
    """Sum over DDP ranks when torch.distributed is running; unchanged otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stats)
    return stats


class AdaController:
    """Adapts the pipe's p so that rt = E[sign(D(real))] stays near `target` (ADA's overfitting heuristic).

    Call `accumulate(real_logits)` at every discriminator pass on reals and `update(pipe, batch_size)` once
    every `interval` training steps, on every rank (the statistics are summed over ranks). p moves by
    `adjust_kimg` thousand images' worth from 0 to 1 at the most. `reduce` replaces the default
    torch.distributed all-reduce (sum) if given.
    """

    def __init__(
        self,
        target: float = 0.6,
        adjust_kimg: float = 500,
        interval: int = 4,
        reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not 0 <= target <= 1 or not adjust_kimg > 0 or not interval >= 1:
            raise ValueError(
                f"AdaController needs 0 <= target <= 1, adjust_kimg > 0 and interval >= 1; "
                f"got target={target}, adjust_kimg={adjust_kimg}, interval={interval}"
            )
        self.target = float(target)
        self.adjust_kimg = float(adjust_kimg)
        self.interval = int(interval)
        self._reduce = reduce or _all_reduce_sum
        self._stats: Tensor | None = None  # [sum of signs, number of logits] since the last update
        self.rt: float | None = None

    def accumulate(self, real_logits: Tensor) -> None:
        """Add the signs of D's logits on (augmented) reals; no device sync."""
        signs = real_logits.detach().float().sign()
        stats = torch.stack([signs.sum(), torch.full((), float(signs.numel()), device=signs.device)])
        self._stats = stats if self._stats is None else self._stats.to(stats.device) + stats

    def update(self, pipe: AugmentPipe, batch_size_per_interval: int) -> None:
        """Set `rt` from the signs seen since the last update and step `pipe.p` towards the target.

        `batch_size_per_interval` is the global batch size (images per step, all ranks) of the steps in
        this interval; p moves by sign(rt - target) * batch * interval / (adjust_kimg * 1000).
        """
        device = pipe.p.device
        stats = self._stats.to(device) if self._stats is not None else torch.zeros(2, device=device)
        total, count = self._reduce(stats).tolist()
        self._stats = None
        if count == 0:
            return
        self.rt = total / count
        direction = (self.rt > self.target) - (self.rt < self.target)
        adjust = direction * batch_size_per_interval * self.interval / (self.adjust_kimg * 1000)
        with torch.no_grad():
            pipe.p.copy_((pipe.p + adjust).clamp(0, 1))

    def state_dict(self) -> dict[str, float | None]:
        """The accumulators and last rt, as plain numbers (p itself lives in the pipe's state_dict)."""
        total, count = self._stats.tolist() if self._stats is not None else (0.0, 0.0)
        return {"sign_sum": total, "count": count, "rt": self.rt}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        """Restore what `state_dict` returned, so a resumed run adapts p exactly as the original would."""
        missing = {"sign_sum", "count", "rt"} - set(state)
        if missing:
            raise ValueError(f"AdaController state is missing {sorted(missing)}; it is not from state_dict()")
        count = float(state["count"])
        self._stats = torch.tensor([float(state["sign_sum"]), count]) if count else None
        self.rt = None if state["rt"] is None else float(state["rt"])


class Augmenter(nn.Module):
    """What the training loop holds (made by `build_augment`): one callable for every kind, with `pipe`
    (the ADA pipe, whose buffer p the `AdaController` adjusts) set only for ADA."""

    def __init__(self, kind: Kind, pipe: AugmentPipe | None, policy: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.pipe = pipe
        self.policy = policy

    @property
    def p(self) -> float | None:
        """ADA's current probability (for logging), None for the kinds without one."""
        return None if self.pipe is None else float(self.pipe.p)

    def forward(self, images: Tensor) -> Tensor:
        if self.pipe is not None:
            return self.pipe(images)
        if self.kind == "diffaug":
            return diff_augment(images, self.policy)
        return images

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", policy={self.policy!r}" if self.policy else "")


def build_augment(
    kind: Kind,
    *,
    preset: str = "bgc",
    p: float = 0.0,
    policy: str = "color,translation,cutout",
) -> Augmenter:
    """The augmentation named by the config: ADA with `preset` starting at `p`, DiffAugment with `policy`,
    or the identity."""
    if kind == "ada":
        return Augmenter(kind, AugmentPipe.from_preset(preset, p=p))
    if kind == "diffaug":
        parse_policy(policy)
        return Augmenter(kind, None, policy)
    if kind == "none":
        return Augmenter(kind, None)
    raise ValueError(f"unknown augmentation kind {kind!r}; expected 'ada', 'diffaug' or 'none'")
