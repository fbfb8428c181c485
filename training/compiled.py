"""What torch.compile (inductor) compiles for training on a CPU: G's synthesis, and a projected D's frozen
feature network for the passes that need no gradient through it.

Inductor fuses the elementwise work around the convolutions (modulation, noise, bias, activation and their
gradients), which is half of G's training time on a CPU. Measured for the bundled model's width at 64² on one
core of a Xeon with AMX (G's forward and backward, batch 16): 399 → 215 ms in bf16 (1.85×), 706 → 553 ms in
fp32 (1.28×), after about a minute of compiling the first time (seconds once inductor's on-disk cache holds it).
The projected D's EfficientNet is compiled for D's step only, where it runs forward without gradients: there
inductor folds its weights in as constants (`freezing`) and fuses each ReLU6 into its convolution (8 images at
128 px, one AMX core: 23 → 14 ms). Compiled with its backward (G's pass) it took 2.3× eager's time, and the
StyleGAN D's forward and backward 57 ms against 54, so those stay eager.

What else stays eager: path-length regularisation (a double backward, which compiled graphs do not support),
G_ema (samples and metrics), StyleGAN3 synthesis (not measured), runs of several processes (not measured with
DDP), and other devices unless `GAN_STUDIO_COMPILE=1` (not measured).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

from models.device import COMPILE_ENV, autocast, compiling_unavailable
from training.projected import ProjectedDiscriminator, frozen_backbone, stage_features

# Runs shorter than this (in steps, or seconds for a time budget) train eagerly: a cold compile takes about a
# minute, which a run of the bundled model pays back after some 600 steps of batch 16 in bf16 (115 ms a step).
COMPILE_MIN_STEPS = 1000
COMPILE_MIN_SECONDS = 15 * 60


def compile_unavailable(device: torch.device, world: int, steps_left: int | None, seconds: float | None) -> str | None:
    """Why this run trains without torch.compile, or None if it compiles. `steps_left` is None for a run whose
    length a time budget (`seconds`) sets."""
    if (reason := compiling_unavailable()) is not None:
        return reason
    if world > 1:
        return "compiled only for runs of one process"
    if os.environ.get(COMPILE_ENV) == "1":
        return None
    if device.type != "cpu":
        return f"compiled only on the CPU, not {device.type} ({COMPILE_ENV}=1 compiles anyway)"
    too_short = steps_left < COMPILE_MIN_STEPS if steps_left is not None else (seconds or 0) < COMPILE_MIN_SECONDS
    if too_short:
        return "the run is too short to pay back compiling"
    return None


def synthesis_compile_unavailable(
    device: torch.device, world: int, family: str, steps_left: int | None, seconds: float | None
) -> str | None:
    """Why this run trains G's synthesis eagerly, or None if it compiles it."""
    if family != "stylegan2":
        return f"compiled only for StyleGAN2 generators, not {family}"
    return compile_unavailable(device, world, steps_left, seconds)


def compile_synthesis(
    G: torch.nn.Module,
    batch: int,
    trainable: list[torch.nn.Parameter],
    device: torch.device,
    dtype: torch.dtype | None,
    without_grad: bool,
) -> Callable:
    """G's synthesis forward compiled for the training step, compiled now by running it on a throwaway batch of
    `batch` latents: forward and backward as in G's step (`trainable` requiring grad), and with `without_grad`
    also forward only, as when D's step makes its own fakes. Raises what torch.compile raises where it cannot
    compile. The run's random stream is left as it was, and G's parameters without gradients and not requiring
    grad, as the training loop keeps them between its steps."""
    compiled = torch.compile(G.synthesis.forward, dynamic=False)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the probe's noise, and inductor's seeds for it
        ws = torch.randn([batch, G.num_ws, G.w_dim], device=device)
        try:
            for p in trainable:
                p.requires_grad_(True)
            with autocast(device, dtype):
                # As in G's step: its latents need a gradient only where the mapping network trains.
                trainable_ids = {id(p) for p in trainable}
                mapping_trains = any(id(p) in trainable_ids for p in G.mapping.parameters())
                img = compiled(ws.requires_grad_(mapping_trains), noise_mode="random")
            img.float().sum().backward()
            G.requires_grad_(False)
            if without_grad:
                with torch.no_grad(), autocast(device, dtype):
                    compiled(ws.detach(), noise_mode="random")
        finally:
            G.requires_grad_(False)
            for p in G.parameters():
                p.grad = None
    return compiled


def compile_features(
    D: ProjectedDiscriminator, batch: int, device: torch.device, dtype: torch.dtype | None
) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The projected D's frozen feature network compiled for its passes without gradients, compiled now on a
    throwaway batch of `batch` images. Raises what torch.compile raises where it cannot compile."""
    compiled = torch.compile(
        functools.partial(stage_features, frozen_backbone(device, dtype)), dynamic=False, options={"freezing": True}
    )
    size = D.input_size
    x = torch.zeros([batch, 3, size, size], device=device, dtype=dtype or torch.float32)
    with torch.no_grad(), autocast(device, dtype):
        compiled(x.contiguous(memory_format=torch.channels_last))
    return compiled
