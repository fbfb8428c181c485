"""Interpretable latent directions of a StyleGAN2 generator, found without labels.

GANSpace (Härkönen et al. 2020) takes the principal components of w over many sampled z: the directions
along which the mapping network spreads its outputs most. SeFa (Shen & Zhou 2021) solves in closed form
for the unit w directions that the style affines amplify most: the top eigenvectors of AᵀA, where A
stacks the affine weights of the chosen layers. Both return unit vectors sorted strongest first; the
sign of each is fixed (largest-magnitude coordinate positive) so that the same model always gives the
same directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from models.stylegan2 import Generator


class Components(NamedTuple):
    """Unit directions [k, w_dim] (float32) and their strengths [k]: explained variance or eigenvalue."""

    vectors: np.ndarray
    strengths: np.ndarray


def sample_w(G: Generator, num_samples: int, seed: int = 0, batch: int = 2048) -> torch.Tensor:
    """Untruncated w [num_samples, w_dim] on the CPU for z drawn from a seeded normal (reproducible)."""
    device = G.mapping.fc0.weight.device
    rng = torch.Generator().manual_seed(seed)
    c = None
    if G.c_dim > 0:  # a conditional model: spread the samples evenly over its classes
        labels = torch.arange(num_samples) % G.c_dim
        c_all = torch.nn.functional.one_hot(labels, G.c_dim).float()
    out = []
    with torch.inference_mode():
        for start in range(0, num_samples, batch):
            n = min(batch, num_samples - start)
            z = torch.randn([n, G.z_dim], generator=rng).to(device)
            if G.c_dim > 0:
                c = c_all[start : start + n].to(device)
            out.append(G.z_to_w(z, c).float().cpu())
    return torch.cat(out)


def principal_components(samples: torch.Tensor, k: int) -> Components:
    """The top-k principal axes of `samples` [N, D] with the variance each explains."""
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"PCA needs at least two samples of shape [N, D], got {tuple(samples.shape)}")
    x = samples.cpu().double()  # float64 on the CPU: MPS has none
    x = x - x.mean(dim=0)
    cov = x.T @ x / (x.shape[0] - 1)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(values, descending=True)[:k]
    return _components(vectors[:, order].T, values[order].clamp_min(0))


def ganspace(G: Generator, num_components: int = 20, num_samples: int = 10_000, seed: int = 0) -> Components:
    """GANSpace directions: principal components of w; strengths are their explained variances."""
    return principal_components(sample_w(G, num_samples, seed), num_components)


def style_affines(G: Generator, include_torgb: bool = False) -> list[tuple[int, str, torch.Tensor]]:
    """(index into ws, parameter name, affine weight [C, w_dim]) of every style layer in synthesis order.

    A block's torgb reads the same w as the next block's conv0 (see `SynthesisNetwork.w_slices`). In a
    StyleGAN3 network ws[0] drives the input's rotation and translation, not a style, and layer i reads ws[i+1].
    """
    if hasattr(G.synthesis, "layer_names"):  # StyleGAN3
        names = G.synthesis.layer_names if include_torgb else G.synthesis.layer_names[:-1]
        return [
            (i + 1, f"synthesis.{name}.affine.weight", getattr(G.synthesis, name).affine.weight)
            for i, name in enumerate(names)
        ]
    out = []
    for res, (start, _count) in G.synthesis.w_slices().items():
        block = getattr(G.synthesis, f"b{res}")
        names = (["conv0"] if block.in_channels != 0 else []) + ["conv1"]
        for offset, name in enumerate(names):
            out.append(
                (start + offset, f"synthesis.b{res}.{name}.affine.weight", getattr(block, name).affine.weight)
            )
        if include_torgb:
            out.append(
                (start + len(names), f"synthesis.b{res}.torgb.affine.weight", block.torgb.affine.weight)
            )
    return out


def sefa(
    G: Generator,
    num_components: int = 20,
    layers: Sequence[int] | None = None,
    include_torgb: bool = False,
) -> Components:
    """SeFa directions for the style layers reading ws indices `layers` (all when None), with eigenvalues.

    Each style channel's weight row is normalised to unit length first, as in the paper's reference code,
    so that layers with larger weights do not drown out the others.
    """
    chosen = [w for idx, _name, w in style_affines(G, include_torgb) if layers is None or idx in layers]
    if not chosen:
        raise ValueError(f"no style layers read ws indices {list(layers or [])} (the model has {G.num_ws})")
    A = torch.cat([w.detach().cpu().double() for w in chosen])  # [sum C, w_dim]
    A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(A.T @ A)
    order = torch.argsort(values, descending=True)[:num_components]
    return _components(vectors[:, order].T, values[order].clamp_min(0))


def _components(vectors: torch.Tensor, values: torch.Tensor) -> Components:
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    pivot = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, pivot[:, None]))
    vectors = vectors * signs
    return Components(vectors.float().numpy(), values.float().numpy())
