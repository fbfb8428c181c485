"""Training throughput (images/s) of the real training loop at 64², 128² and 256², fp32 vs bf16, batch 8.

Run on demand: `python benchmarks/train.py [--resolutions 64,128,256] [--steps 4] [--threads N]
[--channel-base 16384 --channel-max 512]`.
Each configuration trains from scratch on a procedural dataset through `training.loop.train`, and the rate
is read from its progress events after a warm-up step; ratios are against fp32 measured in the same run.
Widths follow StyleGAN2-ADA's 256² config (channel_base 16384, channel_max 512, 2 mapping layers) unless
given (the bundled model's width is 2048/128).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.device import cpu_has_fast_bf16  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import train  # noqa: E402


def make_images(folder: Path, resolution: int, count: int = 32) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(resolution, resolution, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def measure(
    resolution: int, precision: str, steps: int, scratch: Path, channel_base: int = 16384, channel_max: int = 512
) -> float:
    """Images per second over `steps` steps after one warm-up step."""
    data = make_images(scratch / f"data{resolution}", resolution)
    batch = 8
    stamps: list[tuple[float, float]] = []

    def on_event(event: dict) -> None:
        if event["event"] == "progress":
            stamps.append((time.perf_counter(), event["kimg"]))

    config = TrainConfig(
        data=str(data),
        out=str(scratch / f"run{resolution}{precision}"),
        resolution=resolution,
        kimg=batch * (steps + 1) / 1000,
        batch=batch,
        precision=precision,
        snap_kimg=1e6,
        sample_kimg=1e6,
        device="cpu",
        channel_base=channel_base,
        channel_max=channel_max,
        progress_interval_s=0.0,  # an event per step, so the warm-up step can be left out
    )
    train(config, on_event)
    (t0, k0), (t1, k1) = stamps[0], stamps[-1]
    return (k1 - k0) * 1000 / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="64,128,256")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--bf16-steps", type=int, default=1)
    parser.add_argument(
        "--bf16-resolutions",
        default=None,
        help="where to measure bf16 (default: all with native bf16, else 64 only: emulated bf16 takes minutes a step)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--channel-base", type=int, default=16384, help="network width (default: StyleGAN2's 256²)")
    parser.add_argument("--channel-max", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, native bf16: {cpu_has_fast_bf16()}")
    print(f"{'resolution':>10} {'fp32 img/s':>11} {'bf16 img/s':>11} {'bf16/fp32':>10}")
    resolutions = [int(r) for r in args.resolutions.split(",")]
    bf16_at = args.bf16_resolutions or (args.resolutions if cpu_has_fast_bf16() else "64")
    bf16_resolutions = {int(r) for r in bf16_at.split(",") if r.strip().isdigit()}  # "none": fp32 only
    with tempfile.TemporaryDirectory() as scratch:
        for res in resolutions:
            width = (args.channel_base, args.channel_max)
            fp32 = measure(res, "fp32", args.steps, Path(scratch), *width)
            print(f"{res:>9}² {fp32:>11.2f}", end="", flush=True)
            if res in bf16_resolutions:
                bf16 = measure(res, "bf16", args.bf16_steps, Path(scratch), *width)
                print(f" {bf16:>11.2f} {bf16 / fp32:>9.2f}×", flush=True)
            else:
                print(f" {'skipped':>11}", flush=True)


if __name__ == "__main__":
    main()
