"""Projection: find the latent whose image is nearest to an artist's own picture, so the sliders start from it.

The optimisation follows NVIDIA's StyleGAN2 projector (start at w_avg, a learning rate that ramps up and down,
a noise on w that fades out, scaled by the spread of w), with two differences that suit the studio:

- The perceptual distance is an LPIPS-style distance (channel-normalised features, squared differences, unit
  layer weights) on the EfficientNet-Lite0 ImageNet network that ships offline with the metrics, since the VGG16
  LPIPS weights NVIDIA uses would have to be downloaded. A pixel term (mean squared error at up to 64 px)
  pins colours, which ImageNet features barely see.
- It starts from several points at once (`starting_points`), optimised side by side in one batch through both
  phases; the nearest result wins. From w_avg alone the optimisation often stalls in a poor basin, and which
  targets it fails on changes with the latent noise's draws, so with the CPU's rounding too. Dropping the
  trailing starts part-way picked the wrong one: a start that trails early can end nearest.
- The noise maps stay the model's constant ones instead of being optimised: the result is then a plain render
  state (a w+ in the recipe) that reproduces exactly, where optimised noise maps would have to travel as
  megabytes beside every image. A second phase optimises w+ (each layer its own w) to recover what the noise
  and a single w cannot.

`project` runs on the caller's thread, reports `ProjectionProgress` after each step and stops early when
`cancel()` returns True; either way it returns the best latent seen.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.seeds import z_from_seed
from models.stylegan2 import Generator
from studio.engine.imaging import to_uint8
from studio.engine.state import RenderState
from training.dataset import FIT_MODES, ImageRejected, decode_image, fit_square
from training.metrics import feature_extractor

# EfficientNet sees the images at twice the model's resolution, between 64 and 128 px (its features then have
# half, a quarter, … of that side): small models project fast, large ones are shrunk as NVIDIA's projector does.
PERCEPTUAL_SIZES = (64, 128)
FEATURE_TAPS = (0, 2, 4, 10)  # blocks ending a stage (16, 24, 40 and 112 channels)
PIXEL_SIZE = 64  # the pixel term compares images shrunk to at most this side
W_AVG_SAMPLES = 10_000
# The random starts lie half-way from w_avg to random w (truncation ψ 0.5): near the mean's well-behaved
# region yet apart. Over 8 generated images of the bundled model (100 steps), ψ 0.5 recovered the worst at
# 28 dB, ψ 0.25 at 24 dB.
START_PSI = 0.5
PREVIEW_EVERY_S = 0.25  # how often a step's report carries the current reconstruction


@dataclass(frozen=True)
class ProjectionOptions:
    """`steps` in all; with `w_plus`, the last `w_plus_share` of them optimise every layer's w separately."""

    steps: int = 300
    w_plus: bool = True
    w_plus_share: float = 0.4
    learning_rate: float = 0.1
    pixel_weight: float = 1.0
    initial_noise_factor: float = 0.05
    noise_ramp: float = 0.75
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    starts: int = 4  # w_avg and random w optimised side by side (1: w_avg only, as NVIDIA's)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"a projection needs at least one step, not {self.steps}")
        if not 0 <= self.w_plus_share < 1:
            raise ValueError(f"w_plus_share must lie in [0, 1), not {self.w_plus_share}")
        if self.starts < 1:
            raise ValueError(f"a projection needs at least one starting point, not {self.starts}")


@dataclass
class ProjectionProgress:
    """One step done; `image` (uint8 RGB, the current reconstruction) comes a few times a second only."""

    step: int
    steps: int
    phase: str  # "w" or "w+"
    perceptual: float
    pixel: float
    steps_per_s: float
    eta_s: float
    image: np.ndarray | None


@dataclass
class ProjectionResult:
    """The best latent found: `ws` [num_ws, w_dim] float32 and its image, with its distances to the target."""

    ws: np.ndarray
    image: np.ndarray
    perceptual: float
    pixel: float
    psnr: float
    steps_done: int
    cancelled: bool
    seconds: float

    def state(self, model_id: str, base: RenderState | None = None) -> RenderState:
        """A render state showing this latent with the model's own noise (what the projection matched)."""
        return RenderState(model_id=model_id, seed=base.seed if base else 0).replace(
            w=tuple(float(v) for v in self.ws.reshape(-1)), noise_mode="const", noise_strength=1.0
        )


Progress = Callable[[ProjectionProgress], None]
Cancel = Callable[[], bool]


def load_target(path: str | os.PathLike[str], resolution: int, fit: str = "crop") -> np.ndarray:
    """Any image the dataset importer reads (mode, alpha, EXIF orientation, size), fitted to a square of
    `resolution` px by `fit` ("crop", "pad" or "stretch"): uint8 RGB. Raises ValueError saying what is wrong."""
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {', '.join(FIT_MODES)}, not {fit!r}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    try:
        decoded = decode_image(data)
    except ImageRejected as exc:
        raise ValueError(f"{path.name} cannot be projected: {exc}") from None
    pixels, _box = fit_square(decoded, resolution, fit)
    return np.ascontiguousarray(pixels[..., :3])


def file_origin(path: str | os.PathLike[str], fit: str, options: ProjectionOptions, result: ProjectionResult) -> dict:
    """What a recipe records about a projection: the file (name and sha256), the fit and the settings."""
    path = Path(path)
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "fit": fit,
        "steps": result.steps_done,
        "w_plus": options.w_plus,
        "starts": options.starts,
        "perceptual": round(result.perceptual, 5),
        "pixel": round(result.pixel, 6),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


class PerceptualDistance(torch.nn.Module):
    """LPIPS-style distance on EfficientNet-Lite0 features: per tap, features unit-normalised over channels,
    squared differences summed over channels and averaged over positions; the taps' values are summed."""

    def __init__(self, device: torch.device, resolution: int):
        super().__init__()
        self.size = min(max(2 * resolution, PERCEPTUAL_SIZES[0]), PERCEPTUAL_SIZES[1])
        shared = feature_extractor(device)  # the metrics' cached network; a copy keeps it untouched
        self.net = copy.deepcopy(shared).to(memory_format=torch.contiguous_format).requires_grad_(False)
        self.last = max(FEATURE_TAPS)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [N, 3, H, W] in [-1, 1] → the tapped feature maps, channel-normalised."""
        x = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True)
        x = (x * 127.5 + 1) / 128  # the metrics' (pixels - 127) / 128 scaling
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        taps = []
        for index, block in enumerate(net._blocks[: self.last + 1]):
            x = block(x)
            if index in FEATURE_TAPS:
                taps.append(x / (x.square().sum(dim=1, keepdim=True) + 1e-10).sqrt())
        return taps

    @staticmethod
    def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        return sum((x - y).square().sum(dim=1).mean(dim=(1, 2)) for x, y in zip(a, b, strict=True))


def w_statistics(G: Generator, samples: int = W_AVG_SAMPLES, seed: int = 123) -> tuple[torch.Tensor, float]:
    """The mean w of `samples` random z and their spread (root mean squared distance to it), as NVIDIA's."""
    device = G.mapping.fc0.weight.device
    z = torch.randn([samples, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        w = G.z_to_w(z, _class_zero(G, samples))
    w_avg = w.mean(dim=0, keepdim=True)
    return w_avg, float(((w - w_avg).square().sum() / samples).sqrt())


def default_starts(device: torch.device, resolution: int) -> int:
    """The starts a projection gets unless the artist sets them: four where a batch of four should cost little
    more than one image (an accelerator, which a single image leaves mostly idle: not measured here; a CPU at
    up to 64 px, where four took 2.5-3 times as long as one), else one (a CPU took 4.2 times as long with four at
    256 px)."""
    return ProjectionOptions.starts if device.type != "cpu" or resolution <= 64 else 1


def starting_points(G: Generator, w_avg: torch.Tensor, options: ProjectionOptions) -> torch.Tensor:
    """Where a projection starts: w_avg, then `options.starts - 1` random w (from `options.seed`) truncated
    towards it by `START_PSI`: [starts, w_dim]."""
    z = torch.randn([options.starts - 1, G.z_dim], generator=torch.Generator().manual_seed(options.seed))
    with torch.no_grad():
        w = G.z_to_w(z.to(w_avg.device), _class_zero(G, len(z)))
    return torch.cat([w_avg, w_avg.lerp(w, START_PSI)])


def _class_zero(G: Generator, n: int) -> torch.Tensor | None:
    if not G.c_dim:
        return None
    c = torch.zeros([n, G.c_dim], device=G.mapping.fc0.weight.device)
    c[:, 0] = 1
    return c


def project(
    G: Generator,
    target: np.ndarray,
    options: ProjectionOptions = ProjectionOptions(),
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    perceptual: PerceptualDistance | None = None,
) -> ProjectionResult:
    """Optimise a latent so that `G` (in float32, constant noise) reproduces `target` (uint8 RGB at G's
    resolution); returns the best latent seen, also when `cancel()` stopped it early.

    `G` is copied, so the caller's generator (a session's, rendering meanwhile) is never touched.
    """
    resolution = G.img_resolution
    if target.shape != (resolution, resolution, 3) or target.dtype != np.uint8:
        raise ValueError(
            f"the target must be uint8 RGB of {resolution}×{resolution}, not {target.dtype} {target.shape}"
        )
    started = time.perf_counter()
    G = copy.deepcopy(G).float().eval().requires_grad_(False)
    device = G.mapping.fc0.weight.device
    perceptual = perceptual or PerceptualDistance(device, resolution)
    generator = torch.Generator().manual_seed(options.seed)

    target_t = torch.as_tensor(np.array(target), device=device).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        target_features = perceptual.features(target_t)
    pixel_size = min(resolution, PIXEL_SIZE)
    target_small = F.adaptive_avg_pool2d(target_t, pixel_size)
    w_avg, w_std = w_statistics(G)

    steps_w = options.steps - (round(options.steps * options.w_plus_share) if options.w_plus else 0)
    # [starts, w_dim]: one w for every layer in the first phase
    latent = starting_points(G, w_avg, options).requires_grad_(True)
    optimizer = _Adam(latent)
    # Each start's lowest loss and the w+ it belongs to; before the first step, the starts themselves.
    best_losses = torch.full([options.starts], math.inf, device=device)
    best_ws = G.to_ws(latent.detach()).clone()
    last_preview = -math.inf
    step = 0
    cancelled = False
    step_times: list[float] = []

    def synthesize(ws: torch.Tensor) -> torch.Tensor:
        return G.synthesis(ws, noise_mode="const")

    while step < options.steps:
        if cancel is not None and cancel():
            cancelled = True
            break
        tick = time.perf_counter()
        if step == steps_w:  # second phase: every layer its own w, each start from its best single w
            latent = best_ws.clone().requires_grad_(True)
            optimizer = _Adam(latent)
        in_w_phase = step < steps_w
        phase_steps = steps_w if in_w_phase else options.steps - steps_w
        t = (step if in_w_phase else step - steps_w) / max(phase_steps, 1)
        lr_ramp = min(1.0, (1.0 - t) / options.lr_rampdown)
        lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
        lr_ramp *= min(1.0, t / options.lr_rampup)
        lr = options.learning_rate * lr_ramp * (1.0 if in_w_phase else 0.1)

        noise_scale = w_std * options.initial_noise_factor * max(0.0, 1.0 - t / options.noise_ramp) ** 2
        noise = torch.randn(latent.shape, generator=generator).to(device) * noise_scale if in_w_phase else 0
        ws = G.to_ws(latent + noise)
        image = synthesize(ws)
        perceptual_d = perceptual.distance(perceptual.features(image), target_features)
        pixel_d = (F.adaptive_avg_pool2d(image, pixel_size) - target_small).square().mean(dim=(1, 2, 3))
        losses = perceptual_d + options.pixel_weight * pixel_d  # each start's own: their sum's gradients are apart
        (gradient,) = torch.autograd.grad(losses.sum(), latent)
        losses = losses.detach()
        leader = int(torch.argmin(losses))
        distance, pixel = float(perceptual_d[leader].detach()), float(pixel_d[leader].detach())
        # Kept with the latent its loss belongs to (before the step), measured with the latent's noise, which
        # fades to nothing well before the end.
        improved = losses < best_losses
        best_losses = torch.where(improved, losses, best_losses)
        best_ws[improved] = G.to_ws(latent.detach())[improved]
        optimizer.step(gradient, lr)
        step += 1
        step_times.append(time.perf_counter() - tick)
        if progress is not None:
            recent = step_times[-20:]
            rate = len(recent) / sum(recent)
            preview = None
            now = time.perf_counter()
            if now - last_preview >= PREVIEW_EVERY_S or step == options.steps:
                preview, last_preview = to_uint8(image.detach()[leader : leader + 1])[0], now
            progress(ProjectionProgress(
                step, options.steps, "w" if in_w_phase else "w+", distance, pixel, rate,
                (options.steps - step) / rate, preview,
            ))

    nearest = int(torch.argmin(best_losses))  # cancelled before the first step: 0, w_avg
    best_ws = best_ws[nearest : nearest + 1]
    with torch.no_grad():
        image = synthesize(best_ws)
        final_distance = float(perceptual.distance(perceptual.features(image), target_features)[0])
        final_pixel = float(F.mse_loss(F.adaptive_avg_pool2d(image, pixel_size), target_small))
    pixels = to_uint8(image)[0]
    return ProjectionResult(
        ws=best_ws[0].cpu().numpy().astype(np.float32),
        image=pixels,
        perceptual=final_distance,
        pixel=final_pixel,
        psnr=psnr(pixels, target),
        steps_done=step,
        cancelled=cancelled,
        seconds=time.perf_counter() - started,
    )


class _Adam:
    """Adam (betas 0.9, 0.999) on one tensor. torch.optim's first use imports torch._dynamo, which inside the
    app (thousands of modules loaded) took minutes on a busy CPU."""

    def __init__(self, param: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.betas, self.eps = param, betas, eps
        self.m, self.v = torch.zeros_like(param), torch.zeros_like(param)
        self.t = 0

    def step(self, gradient: torch.Tensor, lr: float) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.lerp_(gradient, 1 - b1)
        self.v.mul_(b2).addcmul_(gradient, gradient, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        with torch.no_grad():
            self.param.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))


def distances(
    G: Generator, ws: torch.Tensor, target: np.ndarray, perceptual: PerceptualDistance
) -> tuple[np.ndarray, np.ndarray]:
    """Perceptual and pixel distances of the images of `ws` [N, num_ws, w_dim] to `target`, by the same
    measures the projection minimises (for comparing it with the mean image or random seeds)."""
    device = G.mapping.fc0.weight.device
    target_t = torch.as_tensor(np.array(target), device=device).permute(2, 0, 1)[None].float() / 127.5 - 1
    pixel_size = min(G.img_resolution, PIXEL_SIZE)
    out_p, out_x = [], []
    with torch.no_grad():
        target_features = perceptual.features(target_t)
        target_small = F.adaptive_avg_pool2d(target_t, pixel_size)
        for chunk in ws.split(16):
            images = G.synthesis(chunk.to(device).float(), noise_mode="const")
            features = perceptual.features(images)
            out_p.append(perceptual.distance(features, [f.expand(len(chunk), -1, -1, -1) for f in target_features]))
            small = F.adaptive_avg_pool2d(images, pixel_size)
            out_x.append((small - target_small).square().mean(dim=(1, 2, 3)))
    return torch.cat(out_p).cpu().numpy(), torch.cat(out_x).cpu().numpy()


def seed_ws(G: Generator, seeds: range | list[int]) -> torch.Tensor:
    """The untruncated w+ of seeds, in NVIDIA's seed convention."""
    device = G.mapping.fc0.weight.device
    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(device)
    with torch.no_grad():
        return G.mapping(z, _class_zero(G, len(z)))
