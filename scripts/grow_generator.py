"""Grow a StyleGAN2 generator to twice its resolution without changing what it draws.

    python scripts/grow_generator.py IN.safetensors OUT.safetensors

The skip generator sums every block's RGB into an image upsampled block by block, so an added top block whose
toRGB starts at zero draws the old image upsampled (the [1,3,3,1] filter's smooth doubling). Its convolutions
start as a fresh network's would; its toRGB's weights take gradients from the first step, and its
convolutions from the step after. The added block's channels follow the generator's own width rule. The file
keeps no discriminator: a StyleGAN one is made fresh at the new resolution when a recipe needs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from models.stylegan2 import Generator  # noqa: E402


def grow(G: Generator, seed: int = 0) -> Generator:
    """A copy of `G` at twice its resolution; the same `seed` gives the same added weights."""
    if getattr(G, "family", "stylegan2") != "stylegan2":
        raise ValueError("only StyleGAN2 generators can be grown")
    resolution = 2 * G.img_resolution
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = Generator(**{**G.init_kwargs, "img_resolution": resolution})
    if any(grown.synthesis.channels[r] != c for r, c in G.synthesis.channels.items()):
        raise ValueError("the grown network's widths differ from the source's below its new block")
    missing = grown.load_state_dict(G.state_dict(), strict=False).missing_keys
    if any(not key.startswith(f"synthesis.b{resolution}.") for key in missing):
        raise ValueError(f"weights of the source did not carry over: {missing}")
    with torch.no_grad():
        top = getattr(grown.synthesis, f"b{resolution}")
        top.torgb.weight.zero_()
        top.torgb.bias.zero_()
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bundle = load_checkpoint(args.source)
    before = bundle.G_ema.img_resolution
    bundle.G_ema = grow(bundle.G_ema, args.seed)
    if bundle.G is not None:  # the same added weights as G_ema's, so their average starts where both are
        bundle.G = grow(bundle.G, args.seed)
    bundle.D = None
    save_checkpoint(args.out, bundle)
    print(f"grew {before} px to {bundle.G_ema.img_resolution} px: {args.out}")


if __name__ == "__main__":
    main()
