"""Seeds as the StyleGAN community shares them: seed s means z = np.random.RandomState(s).randn(1, z_dim).

Using NVIDIA's convention (numpy's Mersenne Twister, not torch's generator) makes "seed 42" give the same
image here as in NVIDIA's tools and in every notebook that quotes it.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_SEED = 2**32 - 1  # numpy's RandomState takes 32-bit seeds
MAX_SEEDS = 100_000  # a range longer than this is a typo, not a request


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The latent [1, z_dim] (float32) that NVIDIA's tools use for `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"a seed is a whole number from 0 to {MAX_SEED}, not {seed!r}")
    return torch.from_numpy(np.random.RandomState(int(seed)).randn(1, z_dim)).float()


def parse_seeds(text: str) -> list[int]:
    """Seeds from a list such as "0-3,7" (ranges inclusive, order kept) → [0, 1, 2, 3, 7]."""
    seeds: list[int] = []
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ValueError("no seeds given: write them like 0-3,7")
    for part in parts:
        if not part:
            raise ValueError(f"empty entry in seed list {text!r}: write them like 0-3,7")
        first, dash, last = (p.strip() for p in part.partition("-"))
        if not _is_number(first) or (dash and not _is_number(last)):
            raise ValueError(f"{part!r} is not a seed or a range of seeds (like 7 or 0-3)")
        start, stop = int(first), int(last) if dash else int(first)
        if stop < start:
            raise ValueError(f"the range {part!r} runs backwards: write {stop}-{start}")
        if stop > MAX_SEED:
            raise ValueError(f"seed {stop} in {part!r} is larger than {MAX_SEED}")
        if len(seeds) + stop - start + 1 > MAX_SEEDS:
            raise ValueError(f"{text!r} asks for more than {MAX_SEEDS} seeds")
        seeds.extend(range(start, stop + 1))
    return seeds


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()
