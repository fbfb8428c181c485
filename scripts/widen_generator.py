"""Widen a StyleGAN2 generator's synthesis network without changing what it draws (Net2Net-style growth).

    python scripts/widen_generator.py IN.safetensors OUT.safetensors --channel-base 4096 --channel-max 256

Every tensor keeps its trained values in its leading slice. The added channels start as a fresh network's
would (random convolution weights and styles, zero biases), and every weight that reads an added channel
starts at zero, so no trained channel sees them until training moves those weights. Demodulation ignores
zero weights, and toRGB's weights are rescaled for its 1/sqrt(channels) gain: the widened network renders
the same images as the narrow one, to float rounding. Used for the bundled model's fourth stage
(scripts/build_default_model.sh), when its FD-EffNet had levelled off at the narrow width.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from models.stylegan2 import Generator  # noqa: E402


def widen(G: Generator, channel_base: int, channel_max: int, seed: int = 0) -> Generator:
    """A copy of `G` with the wider synthesis network; the same `seed` gives the same added weights."""
    if getattr(G, "family", "stylegan2") != "stylegan2":
        raise ValueError("only StyleGAN2 generators can be widened")
    synthesis = dict(G.init_kwargs["synthesis_kwargs"], channel_base=channel_base, channel_max=channel_max)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = Generator(**{**G.init_kwargs, "synthesis_kwargs": synthesis})
    narrow_channels, wide_channels = G.synthesis.channels, wide.synthesis.channels
    if any(wide_channels[r] < narrow_channels[r] for r in narrow_channels):
        raise ValueError(f"the new widths {wide_channels} are narrower than {narrow_channels} somewhere")
    old = G.state_dict()
    new = wide.state_dict()
    with torch.no_grad():
        for name, tensor in new.items():
            source = old[name]
            if source.shape == tensor.shape:
                tensor.copy_(source)
                continue
            leading = tuple(slice(0, n) for n in source.shape)
            if name.endswith(("conv0.weight", "conv1.weight")):
                tensor[: source.shape[0], source.shape[1] :] = 0  # trained outputs ignore added inputs
            elif name.endswith("torgb.weight"):
                tensor[:, source.shape[1] :] = 0
                source = source * math.sqrt(tensor.shape[1] / source.shape[1])  # its gain is 1/sqrt(inputs)
            elif name.endswith(".bias") and "affine" not in name:
                tensor.zero_()
            tensor[leading] = source
    return wide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--channel-base", type=int, required=True)
    parser.add_argument("--channel-max", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bundle = load_checkpoint(args.source)
    before = bundle.G_ema.synthesis.channels
    bundle.G_ema = widen(bundle.G_ema, args.channel_base, args.channel_max, args.seed)
    if bundle.G is not None:  # the same added weights as G_ema's, so their average starts where both are
        bundle.G = widen(bundle.G, args.channel_base, args.channel_max, args.seed)
    save_checkpoint(args.out, bundle)
    print(f"widened {before} to {bundle.G_ema.synthesis.channels}: {args.out}")


if __name__ == "__main__":
    main()
