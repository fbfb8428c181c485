"""What gives generated images away to the classifier two-sample test (C2ST, training/metrics.py)?

Run on demand (a few minutes on one core):
    python benchmarks/c2st_cues.py --data RUN_DIR/dataset [--model MODEL] [--n 1000]

Measures C2ST between `--n` real images of a prepared dataset (a training run's `dataset/` folder) and as many
samples of MODEL (default: the bundled one; ψ = 1, constant noise), first as they are, then with the same
change applied to both sides: what a change leaves for the classifier to go on tells which cues it uses.
Shrinking both to 16 or 8 px keeps only layout and colour; blurring keeps all but fine detail; grey keeps all
but colour; whitening the generated backgrounds removes haze from them. Then three changes to real images
only, against other real images, show how little it takes to be told apart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quality import render  # noqa: E402 - this folder's benchmark: the same rendering of samples

from models.checkpoints import load_checkpoint  # noqa: E402
from training.dataset import PreparedDataset  # noqa: E402
from training.metrics import c2st  # noqa: E402

BASE = ROOT / "resources" / "models" / "fluent-emoji-64.safetensors"
Change = Callable[[torch.Tensor], torch.Tensor]  # NCHW uint8 -> NCHW uint8


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def shrunk_and_back(size: int) -> Change:
    def change(x: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True)
        return to_pixels(F.interpolate(small, size=x.shape[-2:], mode="bilinear"))

    return change


def blurred(sigma: float) -> Change:
    taps = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()

    def change(x: torch.Tensor) -> torch.Tensor:
        y = F.pad(x.float(), (3, 3, 3, 3), mode="replicate")
        y = F.conv2d(y, kernel.view(1, 1, 1, 7).repeat(3, 1, 1, 1), groups=3)
        return to_pixels(F.conv2d(y, kernel.view(1, 1, 7, 1).repeat(3, 1, 1, 1), groups=3))

    return change


def grey(x: torch.Tensor) -> torch.Tensor:
    luma = (x.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return to_pixels(luma.expand_as(x))


def white_background(x: torch.Tensor) -> torch.Tensor:
    """Near-white, nearly grey pixels (every channel >= 230, spread <= 20) set to pure white."""
    low, high = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
    background = (low >= 230) & (high.int() - low.int() <= 20)
    return torch.where(background, torch.full_like(x, 255), x)


def noisy(x: torch.Tensor) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 2.0
    return to_pixels(x.float() + noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a prepared dataset folder (a run's dataset/)")
    parser.add_argument("--model", type=Path, default=BASE)
    parser.add_argument("--n", type=int, default=1000, help="images a side (the data needs twice as many)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    dataset = PreparedDataset(args.data, xflip=False)
    if dataset.num_images < 2 * args.n:
        raise SystemExit(f"{args.data} has {dataset.num_images} images; --n {args.n} needs {2 * args.n}")
    order = torch.randperm(dataset.num_images, generator=torch.Generator().manual_seed(0))
    reals = torch.stack([dataset[int(i)][0] for i in order[: args.n]])
    other_reals = torch.stack([dataset[int(i)][0] for i in order[args.n : 2 * args.n]])
    G = load_checkpoint(args.model).G_ema.float().eval()
    z = torch.randn([args.n, G.z_dim], generator=torch.Generator().manual_seed(1))
    fakes = torch.from_numpy(render(G, z)).permute(0, 3, 1, 2)

    def row(label: str, a: torch.Tensor, b: torch.Tensor) -> None:
        print(f"{label:<52} {c2st(a, b)['c2st']:.3f}", flush=True)

    print(f"C2ST at n = {args.n} a side (0.5: cannot tell; 1.0: tells every image)")
    row("real vs generated", reals, fakes)
    both: list[tuple[str, Change]] = [
        ("both shrunk to 16 px and back (layout, colour)", shrunk_and_back(16)),
        ("both shrunk to 8 px and back", shrunk_and_back(8)),
        ("both blurred, sigma 1 px", blurred(1.0)),
        ("both blurred, sigma 2 px", blurred(2.0)),
        ("both grey", grey),
    ]
    for label, change in both:
        row(label, change(reals), change(fakes))
    row("generated backgrounds whitened", reals, white_background(fakes))
    row("real vs real (two halves of the data)", reals, other_reals)
    row("real vs real blurred, sigma 0.6 px", reals, blurred(0.6)(other_reals))
    row("real vs real shrunk to 32 px and back", reals, shrunk_and_back(32)(other_reals))
    row("real vs real with noise, sigma 2 levels", reals, noisy(other_reals))


if __name__ == "__main__":
    main()
