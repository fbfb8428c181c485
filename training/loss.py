"""StyleGAN2-ADA losses: non-saturating logistic (or hinge) loss, lazy R1, style mixing, path-length regularisation;
and StyleGAN3's blur of the images D sees."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from models.ops import upfirdn2d
from models.stylegan2 import Generator
from training.projected import ProjectedDiscriminator


class GeneratorForTraining(nn.Module):
    """G's training forward (mapping, style mixing, synthesis) as one module, so DDP sees a single forward.

    `update_emas` updates the mapping's w average and, in a StyleGAN3, each synthesis layer's `magnitude_ema`
    (the running input magnitude that normalises its convolution). `compiled_synthesis`, when set, is G's
    synthesis forward compiled for training (training.compiled); `eager=True` passes bypass it (path-length
    regularisation's double backward)."""

    def __init__(self, G: Generator, style_mixing: float):
        super().__init__()
        self.G = G
        self.style_mixing = style_mixing
        self.synthesis_emas = getattr(G, "family", "stylegan2") == "stylegan3"
        self.compiled_synthesis: Callable | None = None

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False, eager: bool = False):
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64).random_(1, num_ws)
            if torch.rand([]) >= self.style_mixing:
                cutoff = torch.full_like(cutoff, num_ws)
            mixed = self.G.mapping(torch.randn_like(z), c)
            keep = (torch.arange(num_ws) < cutoff).to(ws.device)[None, :, None]
            ws = torch.where(keep, ws, mixed)
        if torch.is_grad_enabled() and not ws.requires_grad:  # a frozen mapping network: path-length
            ws = ws.detach().requires_grad_(True)  # regularisation still differentiates the image by ws
        emas = {"update_emas": update_emas} if self.synthesis_emas else {}
        synthesis = self.G.synthesis if eager or self.compiled_synthesis is None else self.compiled_synthesis
        img = synthesis(ws, noise_mode="random", **emas)
        return img, ws


def blur_sigma(nimg: int, init_sigma: float, fade_kimg: float) -> float:
    """StyleGAN3's blur schedule: `init_sigma` pixels at the start, fading linearly to 0 at `fade_kimg`."""
    return max(1 - nimg / (fade_kimg * 1000), 0.0) * init_sigma


def blur_images(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """NVIDIA's StyleGAN3 blur: taps 2^-(x/sigma)² for |x| ≤ 3·sigma, normalised, zero-padded to the same size."""
    radius = math.floor(sigma * 3)
    if radius <= 0:
        return img
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32).div(sigma).square().neg().exp2()
    f = taps.outer(taps)
    return upfirdn2d(img, f / f.sum(), padding=(radius, radius, radius, radius))


def generator_loss(
    D: nn.Module, fake: torch.Tensor, c: torch.Tensor | None, augment, kind: str = "logistic"
) -> torch.Tensor:
    """Non-saturating logistic loss softplus(-D(G(z))), or for `kind="hinge"` the hinge GAN's -D(G(z))."""
    logits = D(augment(fake), c)
    return -logits.float().mean() if kind == "hinge" else F.softplus(-logits).mean()


def discriminator_loss(
    D: nn.Module,
    fake: torch.Tensor,
    real: torch.Tensor,
    c: torch.Tensor | None,
    augment,
    r1_gamma: float,
    r1_gain: float,
    kind: str = "logistic",
    fake_features: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """softplus(D(fake)) + softplus(-D(real)), or for `kind="hinge"` relu(1 + D(fake)) + relu(1 - D(real));
    plus R1 · gamma/2 · gain when r1_gain > 0 (lazy regularisation). `fake_features`: a projected D's features
    of the (augmented) fakes, computed before; its heads judge them in place of `fake`.

    Returns the loss, logged values (detached 0-d tensors), and the real logits (ADA reads their signs).

    Parametrised weights (a projected D's spectral norms) are computed once for both sets: one power iteration
    per step, as in the SNGAN paper. A projected D judges the fakes and the reals in one pass of its heads, as
    two sets its batch norms keep apart: a D step's heads (forward and backward) on one AMX core in bf16 took
    89 -> 81 ms at batch 16 and 67 -> 57 ms at batch 8 against a pass per set.
    """
    do_r1 = r1_gain > 0 and r1_gamma > 0
    real_in = real.detach().requires_grad_(do_r1)
    projected = getattr(D, "module", D)  # under DDP, the wrapped network
    with parametrize.cached():
        if isinstance(projected, ProjectedDiscriminator) and len(fake) == len(real):
            if fake_features is None:
                fake_features = projected.project(augment(fake.detach()))
            real_features = projected.project(augment(real_in))  # no trainable weights: DDP need not see it
            both = [torch.cat(pair) for pair in zip(fake_features, real_features, strict=True)]
            fake_logits, real_logits = D(None, c, features=both, sets=2).chunk(2)
        elif fake_features is not None:
            fake_logits = D(None, c, features=fake_features)
            real_logits = D(augment(real_in), c)
        else:
            fake_logits = D(augment(fake.detach()), c)
            real_logits = D(augment(real_in), c)
    if kind == "hinge":
        loss = F.relu(1 + fake_logits.float()).mean() + F.relu(1 - real_logits.float()).mean()
    else:
        loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    # Detached tensors, not numbers: reading them would make a GPU wait for the step at every micro-batch.
    stats = {"D_fake": fake_logits.detach().float().mean(), "D_real": real_logits.detach().float().mean()}
    if do_r1:
        (grads,) = torch.autograd.grad(real_logits.float().sum(), real_in, create_graph=True)
        penalty = grads.float().square().sum(dim=[1, 2, 3])
        loss = loss + penalty.mean() * (r1_gamma / 2) * r1_gain
        stats["R1"] = penalty.detach().float().mean()
    return loss, stats, real_logits


class PathLengthPenalty:
    """Path-length regularisation: keeps |J_w^T y| near its running mean, for smoother latent walks."""

    def __init__(self, decay: float = 0.01):
        self.decay = decay
        self.mean = torch.zeros([])

    def __call__(self, img: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.float().square().sum(dim=2).mean(dim=1).sqrt()
        self.mean = self.mean.to(lengths.device)
        mean = self.mean.lerp(lengths.detach().mean(), self.decay)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(mean)
            mean /= torch.distributed.get_world_size()
        self.mean = mean.detach()
        penalty = (lengths - self.mean).square().mean()
        return penalty, lengths.detach().mean()


def lazy_adam_hparams(lr: float, interval: int, betas=(0.0, 0.99)) -> tuple[float, tuple[float, float]]:
    """Adam settings for a network regularised every `interval` steps (Karras et al. 2020, appendix B)."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
