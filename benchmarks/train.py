"""Training throughput (images/s) of the real training loop, fp32 vs bf16, batch 8.

Run on demand. Two modes:

- `python benchmarks/train.py [--resolutions 64,128,256] [--steps 4] [--threads N]
  [--channel-base 16384 --channel-max 512]`: this tree's loop at several resolutions, bf16 against fp32.
- `python benchmarks/train.py --compare 4f17e27 [--rounds 2] [--steps 8] [--threads 1]`: this tree against an
  older commit (exported with `git archive` into a temporary folder), at the bundled model's width and 64²,
  for both precisions and both discriminators. Each measurement is its own process (old and new import
  different `training` packages), and old and new alternate round by round, so a machine whose load changes
  during the run (other jobs, one core held by a background training run) slows both alike: the ratio is read
  per round, from the pair measured back to back.

Each configuration trains from scratch on a procedural dataset through `training.loop.train`; the rate is read
from its progress events, leaving out the first step (start-up, and the R1 step: R1 runs once in 16 steps, so
short measurements leave it out on both sides alike).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The bundled model's width (since its fourth stage, resources/models/fluent-emoji-64.md) and training settings.
BUNDLED = dict(
    channel_base=4096, channel_max=256, z_dim=128, w_dim=128, map_layers=2, pl_weight=0.0, mirror=True
)
DISCRIMINATOR_SETTINGS = {
    "stylegan": {},
    # finetune-fast's D; that preset's later fields (projected_norm, diffaug_policy, reuse_fakes) come by
    # --old-settings / --new-settings, as older revisions lack them
    "projected": dict(discriminator="projected", gan_loss="hinge", aug="diffaug"),
}


def make_images(folder: Path, resolution: int, count: int = 32) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(resolution, resolution, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return folder


def measure(resolution: int, precision: str, steps: int, scratch: Path, **settings) -> float:
    """Images per second over `steps` steps after one warm-up step, with this process's `training` package."""
    from training.config import TrainConfig
    from training.loop import train

    data = make_images(scratch / f"data{resolution}", resolution)
    batch = 8
    stamps: list[tuple[float, float]] = []

    def on_event(event: dict) -> None:
        if event["event"] == "progress":
            stamps.append((time.perf_counter(), event["kimg"]))

    config = TrainConfig(
        data=str(data),
        out=str(scratch / f"run{resolution}{precision}{time.monotonic_ns()}"),
        resolution=resolution,
        kimg=batch * (steps + 1) / 1000,
        batch=batch,
        precision=precision,
        snap_kimg=1e6,
        sample_kimg=1e6,
        device="cpu",
        progress_interval_s=0.0,  # an event per step, so the warm-up step can be left out
        **settings,
    )
    train(config, on_event)
    (t0, k0), (t1, k1) = stamps[0], stamps[-1]
    return (k1 - k0) * 1000 / (t1 - t0)


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process, with `--tree`'s code; prints its rate as JSON."""
    sys.path.insert(0, str(Path(args.tree).resolve()))
    import torch

    torch.set_num_threads(args.threads)
    settings = {**BUNDLED, **DISCRIMINATOR_SETTINGS[args.discriminator], **json.loads(args.settings or "{}")}
    with tempfile.TemporaryDirectory() as scratch:
        rate = measure(64, args.precision, args.steps, Path(scratch), **settings)
    print(json.dumps({"images_per_s": rate}))


def export_tree(rev: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def compare(args: argparse.Namespace) -> None:
    import torch

    from models.device import cpu_has_fast_bf16

    precisions = ["bf16", "fp32"] if cpu_has_fast_bf16() else ["fp32"]
    cases = [(p, d) for d in args.discriminators.split(",") for p in precisions]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), native bf16: {cpu_has_fast_bf16()}; "
        f"64², bundled width, batch 8; {args.rounds} round(s) of {args.steps} steps; "
        f"old = {' '.join(filter(None, [args.compare, args.old_settings]))}, "
        f"new = {' '.join(filter(None, [args.new or 'this working tree', args.new_settings]))}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        old_tree, new_tree = Path(tmp, "old"), Path(tmp, "new")
        old_tree.mkdir(), new_tree.mkdir()
        new = export_tree(args.new, new_tree) if args.new else REPO
        trees = {"old": export_tree(args.compare, old_tree), "new": new}
        print(f"{'D':>9} {'precision':>9} {'old img/s':>10} {'new img/s':>10} {'new/old':>8}  (per round)", flush=True)
        for precision, discriminator in cases:
            rates: dict[str, list[float]] = {"old": [], "new": []}
            for r in range(args.rounds):
                for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    command = [
                        sys.executable, __file__, "--worker", "--tree", str(trees[name]), "--precision", precision,
                        "--discriminator", discriminator, "--steps", str(args.steps), "--threads", str(args.threads),
                    ]  # fmt: skip
                    if settings := {"old": args.old_settings, "new": args.new_settings}[name]:
                        command += ["--settings", settings]
                    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=trees[name])
                    rates[name].append(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])
            ratios = [n / o for n, o in zip(rates["new"], rates["old"], strict=True)]
            old, new, ratio = (statistics.median(x) for x in (rates["old"], rates["new"], ratios))
            each = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"{discriminator:>9} {precision:>9} {old:>10.2f} {new:>10.2f} {ratio:>7.2f}×  ({each})", flush=True)


def resolutions_table(args: argparse.Namespace) -> None:
    import torch

    from models.device import cpu_has_fast_bf16

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, native bf16: {cpu_has_fast_bf16()}")
    print(f"{'resolution':>10} {'fp32 img/s':>11} {'bf16 img/s':>11} {'bf16/fp32':>10}")
    resolutions = [int(r) for r in args.resolutions.split(",")]
    bf16_at = args.bf16_resolutions or (args.resolutions if cpu_has_fast_bf16() else "64")
    bf16_resolutions = {int(r) for r in bf16_at.split(",") if r.strip().isdigit()}  # "none": fp32 only
    width = dict(channel_base=args.channel_base, channel_max=args.channel_max)
    with tempfile.TemporaryDirectory() as scratch:
        for res in resolutions:
            fp32 = measure(res, "fp32", args.steps, Path(scratch), **width)
            print(f"{res:>9}² {fp32:>11.2f}", end="", flush=True)
            if res in bf16_resolutions:
                bf16 = measure(res, "bf16", args.bf16_steps, Path(scratch), **width)
                print(f" {bf16:>11.2f} {bf16 / fp32:>9.2f}×", flush=True)
            else:
                print(f" {'skipped':>11}", flush=True)


def main() -> None:
    import torch

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
    parser.add_argument("--compare", metavar="REV", help="measure this tree against git revision REV, alternately")
    parser.add_argument("--new", metavar="REV", help="--compare: measure revision REV instead of this working tree")
    parser.add_argument(
        "--new-settings", metavar="JSON", help='--compare: TrainConfig fields for new only, e.g. {"reuse_fakes": true}'
    )
    parser.add_argument("--old-settings", metavar="JSON", help="--compare: TrainConfig fields for old only")
    parser.add_argument("--rounds", type=int, default=2, help="--compare: old/new pairs per configuration")
    parser.add_argument("--discriminators", default="stylegan,projected", help="--compare: which to measure")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--discriminator", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    elif args.compare:
        sys.path.insert(0, str(REPO))
        compare(args)
    else:
        sys.path.insert(0, str(REPO))
        resolutions_table(args)


if __name__ == "__main__":
    main()
