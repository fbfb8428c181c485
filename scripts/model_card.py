"""Package a finished training run as a bundled model: fp16 weights, a sample grid and a model card.

    python scripts/model_card.py --run RUN_DIR [--kimg K] [--name fluent-emoji-64] [--n 1000]
        [--demo SUMMARY_JSON] [--previous MODEL]

A run that continued an earlier model (its `--base`, or MODEL when that file has since been replaced) adds
its kimg and hours to that model's training record: the card lists each stage and its recipe.

The card reports FD-EffNet (Fréchet distance on EfficientNet-Lite0 features — not the Inception FID of
papers), KID, precision, recall and C2ST (a classifier two-sample test that uses no ImageNet features) against
the training data, next to two reference points measured the same way: the same network with random weights
(ceiling) and two disjoint halves of the data (floor).
With `--demo`, it adds the fine-tuning demonstration that scripts/finetune_demo.sh summarised.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.checkpoints import CheckpointBundle, load_checkpoint, save_checkpoint  # noqa: E402
from models.seeds import z_from_seed  # noqa: E402
from training.dataset import PreparedDataset  # noqa: E402
from training.metrics import c2st, extract_features, metrics_from_features  # noqa: E402
from training.run_dir import RunDir, save_image_grid, to_uint8  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def generate(G, n: int, seed: int = 1) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.inference_mode():
        for start in range(0, n, 32):
            z = torch.randn([min(32, n - start), G.z_dim], generator=gen)
            out.append(to_uint8(G.render(z, noise_mode="const")))
    return np.concatenate(out)


def recipe_summary(config: dict) -> str:
    """The options that tell one run's recipe from another's, as the card prints them."""
    keys = ["channel_base", "channel_max", "z_dim", "w_dim", "map_layers"] if config["base"] == "scratch" else []
    keys += ["batch", "g_lr", "d_lr", "discriminator", "gan_loss", "aug", "mirror", "pl_weight"]
    keys += ["ema_kimg"] if config.get("ema_kimg") is not None else []
    keys += {"ada": ["ada_target", "ada_kimg"], "diffaug": ["diffaug_policy"]}.get(config["aug"], [])
    keys += ["projected_size", "projected_norm"] if config.get("discriminator") == "projected" else ["r1_gamma"]
    return ", ".join(f"{k}={config.get(k)}" for k in keys)


def earlier_stages(previous: Path | None) -> list[dict]:
    """The training record of the model a run continued: its own stages, or one stage for a model made before
    cards recorded them."""
    if previous is None:
        return []
    record = load_checkpoint(previous).meta.training
    if "stages" in record:
        return list(record["stages"])
    scratch = record.get("base") == "scratch"
    recipe = "from scratch, StyleGAN2 discriminator, logistic loss with R1, ADA" if scratch else "not recorded"
    return [{"kimg": record["kimg"], "wall_time_h": record["wall_time_h"], "recipe": recipe}]


def stage_lines(stages: list[dict]) -> str:
    lines = []
    for number, stage in enumerate(stages, 1):
        precision = f", {stage['precision']}" if "precision" in stage else ""
        lines.append(
            f"{number}. **{stage['kimg']:.1f} kimg**, {stage['wall_time_h']:.2f} h{precision}: {stage['recipe']}"
        )
    return "\n".join(lines)


def demo_verdict(summary: dict) -> str:
    before, after = summary["before"]["fd_effnet"], summary["after"]["fd_effnet"]
    if after < 0.95 * before:
        return f"FD-EffNet against Noto fell from {before:.1f} to {after:.1f} within this budget."
    return (
        f"**Within this budget FD-EffNet against Noto did not improve** ({before:.1f} → {after:.1f}): the grids "
        "show the change beginning (flatter colours, harder outlines), but the metric does not see it yet; "
        "a longer run (`KIMG=20 bash scripts/finetune_demo.sh`) is the next measurement to make."
    )


def demo_section(summary: dict, out_dir: Path, name: str, row) -> str:
    """The card's account of scripts/finetune_demo.sh: before/after grids (same seeds) and FD-EffNet vs Noto."""
    before, after = out_dir / f"{name}-noto-before.png", out_dir / f"{name}-noto-after.png"
    shutil.copyfile(summary["before_grid"], before)
    shutil.copyfile(summary["after_grid"], after)
    n = summary["after"]["n_real"]
    return f"""
## Fine-tuning demonstration: Noto Color Emoji
This model fine-tuned on Noto Color Emoji (Apache-2.0, Debian's `fonts-noto-color-emoji`:
{summary["dataset_size"]} emoji after our importer's checks, composited on white, letterboxed to 64 px) with
our own tool, for a fixed short budget:
**{summary["kimg"]:g} kimg, {summary["wall_s"] / 60:.0f} minutes** on the CPU above
(`bash scripts/finetune_demo.sh`: the `{summary.get("preset", "finetune")}` preset, batch 8).

| vs Noto Color Emoji ({n} images a side) | FD-EffNet | KID-EffNet | precision | recall | C2ST |
| --- | --- | --- | --- | --- | --- |
{row("before: the bundled model", summary["before"])}
{row(f"after {summary['kimg']:g} kimg of fine-tuning", summary["after"])}

{demo_verdict(summary)}

Before (the bundled model), then after, from the same seeds:

![before fine-tuning](./{before.name})
![after fine-tuning](./{after.name})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the training run folder")
    parser.add_argument("--kimg", type=float, help="package the run's snapshot at K kimg (default: its last)")
    parser.add_argument("--name", default="fluent-emoji-64")
    parser.add_argument("--n", type=int, default=1000, help="images per side for the metrics")
    parser.add_argument("--hardware", default=f"{platform.processor() or platform.machine()}, no GPU")
    parser.add_argument("--demo", type=Path, help="summary.json of scripts/finetune_demo.sh")
    parser.add_argument("--previous", type=Path, help="the model this run continued (default: the run's --base)")
    parser.add_argument("--precision", default="fp32", help="what the run computed in, for the card")
    parser.add_argument("--stage-note", default="", help="anything the run's config.json does not say")
    parser.add_argument(
        "--cover-seed", type=int, default=0, help="the seed the app opens the model on (chosen from the sample grid)"
    )
    args = parser.parse_args()

    run = RunDir(args.run)
    snapshots = run.checkpoints()
    if args.kimg is None:
        snapshot = snapshots[-1]
    else:
        chosen = [s for s in snapshots if s.nimg == round(args.kimg * 1000)]
        if not chosen:
            parser.error(f"{args.run} has no snapshot at {args.kimg} kimg: {[s.nimg / 1000 for s in snapshots]}")
        snapshot = chosen[0]
    config = json.loads(run.config_path.read_text())
    stats = [json.loads(line) for line in run.stats_path.open()]
    progress = [e for e in stats if e["event"] == "progress" and e["kimg"] * 1000 <= snapshot.nimg]
    wall_s = sum(
        max(0.0, b["elapsed_s"] - a["elapsed_s"])
        for a, b in zip(progress, progress[1:], strict=False)
        if b["elapsed_s"] > a["elapsed_s"]
    )
    bundle = load_checkpoint(snapshot.network)
    previous = args.previous or (None if config["base"] == "scratch" else Path(config["base"]))
    stages = earlier_stages(previous)
    stages.append(
        {
            "kimg": round(snapshot.nimg / 1000, 3),
            "wall_time_h": round(wall_s / 3600, 2),
            "recipe": recipe_summary(config) + (f" ({args.stage_note})" if args.stage_note else ""),
            "precision": args.precision,
        }
    )
    kimg = sum(stage["kimg"] for stage in stages)
    wall_h = sum(stage["wall_time_h"] for stage in stages)

    given = Path(config["data"])  # a prepared dataset, or images the run prepared into RUN/dataset
    data = PreparedDataset(given if (given / "manifest.json").exists() else Path(args.run) / "dataset", xflip=False)
    order = torch.randperm(data.num_images, generator=torch.Generator().manual_seed(0))
    n = min(args.n, data.num_images // 2)
    reals = np.stack([data[int(i)][0].permute(1, 2, 0).numpy() for i in order[: 2 * n]])
    real_f = extract_features(reals)

    def measure(fakes: np.ndarray, fake_f: np.ndarray) -> dict:
        return {**metrics_from_features(real_f[:n], fake_f), **c2st(reals[:n], fakes)}

    fakes = generate(bundle.G_ema, n)
    model = measure(fakes, extract_features(fakes))
    random_G = copy.deepcopy(bundle.G_ema)
    torch.manual_seed(0)
    fresh = type(random_G)(**random_G.init_kwargs).eval()
    fakes = generate(fresh, n)
    random_metrics = measure(fakes, extract_features(fakes))
    previous_metrics = None
    if previous is not None:  # what this run's stage bought, on the same real images
        fakes = generate(load_checkpoint(previous).G_ema, n)
        previous_metrics = measure(fakes, extract_features(fakes))
    halves = measure(reals[n : 2 * n], real_f[n : 2 * n])

    out_dir = REPO / "resources" / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{args.name}.safetensors"
    grid_path = out_dir / f"{args.name}-samples.png"
    bundle.meta.source_name = f"{args.name}.safetensors"
    bundle.meta.training = {
        **{k: v for k, v in bundle.meta.training.items() if k not in ("run_dir", "dataset", "base")},
        "kimg": kimg,
        "dataset": "Fluent Emoji 3D 1.1.0 (@lobehub/fluent-emoji-3d, MIT), composited on white, 64 px, x-flips",
        "licence": "weights: MIT (trained by GAN Studio on MIT-licensed images)",
        "fd_effnet": model["fd_effnet"],
        "c2st": model["c2st"],
        "wall_time_h": round(wall_h, 2),
        "hardware": args.hardware,
        "stages": stages,
        "cover_seed": args.cover_seed,
    }
    save_checkpoint(
        weights, CheckpointBundle(bundle.G_ema, bundle.G, bundle.D, bundle.augment_p, bundle.meta), torch.float16
    )
    z = torch.cat([z_from_seed(s, bundle.G_ema.z_dim) for s in range(32)])
    with torch.inference_mode():
        save_image_grid(to_uint8(bundle.G_ema.render(z, noise_mode="const")), 8, grid_path)

    def row(name: str, m: dict) -> str:
        c2st_cell = f"{m['c2st']:.3f}" if "c2st" in m else "not measured"  # summaries made before C2ST existed
        return (
            f"| {name} | {m['fd_effnet']:.1f} | {m['kid_effnet']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} "
            f"| {c2st_cell} |"
        )

    span = random_metrics["fd_effnet"] - halves["fd_effnet"]
    closed = (random_metrics["fd_effnet"] - model["fd_effnet"]) / span if span > 0 else 0.0
    verdict = (
        f"The model has closed {closed:.0%} of the FD-EffNet gap between random weights and the data itself."
        if closed > 0.05
        else "**Not yet better than random weights by FD-EffNet**: this run is far too short; it is shipped so the"
        " app has something to open, and its training continues (`gan-studio-train --resume`)."
    )
    rows = [row("this model", model)]
    if previous_metrics:
        rows.append(row(f"before the last stage ({kimg - stages[-1]['kimg']:.1f} kimg)", previous_metrics))
    rows.append(row("same network, random weights (ceiling)", random_metrics))
    rows.append(row("two disjoint halves of the data (floor)", halves))
    table_rows = "\n".join(rows)
    projected_note = (
        "The StyleGAN discriminator shipped for fine-tuning is the last one a StyleGAN-D stage trained: a projected"
        " discriminator's heads live in its run folder, not in model files.\n"
        if config.get("discriminator") == "projected"
        else ""
    )
    cover_reason = ", picked from these samples: some seeds draw almost nothing" if args.cover_seed else ""
    card = f"""# {args.name}: GAN Studio's bundled default generator

A StyleGAN2 generator ({bundle.meta.resolution}×{bundle.meta.resolution} px, {bundle.meta.num_ws} style layers) trained
by GAN Studio's own `gan-studio-train` on the Fluent Emoji 3D images. It is small and rough: a narrow network
trained for {wall_h:.0f} hours in all on small machines, not the GPU-weeks of NVIDIA's models, so it is a toy to
play with and a base to fine-tune, not a showcase of StyleGAN.

![samples, seeds 0–31](./{grid_path.name})

The app opens it on seed {args.cover_seed}{cover_reason}.

## Data and licences
- **Images**: Fluent Emoji 3D, npm package `@lobehub/fluent-emoji-3d@1.1.0` (MIT licence, © Microsoft
  Corporation; package by LobeHub): 3,391 RGBA WebP images at 256 px. Our importer dropped exact and near
  duplicates (mostly skin-tone variants) and kept {data.num_images}; transparency composited on white,
  letterboxed (`--crop pad`) to 64×64; left-right mirrors added (`--mirror`).
- **Weights**: MIT, like the rest of GAN Studio. Stored as fp16 (G_ema for rendering, plus G and D so it can
  be fine-tuned{f", and ADA's p = {bundle.augment_p:.3f}" if bundle.augment_p is not None else ""}).

## How it was made
```
bash scripts/build_default_model.sh      # npm pack, then gan-studio-train (see the script for every option)
python scripts/model_card.py --run RUN   # this card, the sample grid and the fp16 weights
```
{stage_lines(stages)}

{projected_note}
- Trained: **{kimg:.1f} kimg** in all, {wall_h:.2f} h of training wall time.
- Hardware: {args.hardware}, the cores shared with development work.

## Quality (FD-EffNet — Fréchet distance on EfficientNet-Lite0 features, *not* the Inception FID of papers)
{n} generated images (random z, ψ = 1, const noise) against {n} training images; lower FD/KID is better,
precision = share of generated images inside the data's manifold, recall = share of the data covered
(k = 3 nearest neighbours, Kynkäänniemi et al. 2019). C2ST, which shares nothing with the ImageNet features:
a small CNN trained from scratch on half of each set to tell generated from real images, scored on the other
half (0.5: it cannot tell them apart; 1.0: every generated image gives itself away).

| | FD-EffNet | KID-EffNet | precision | recall | C2ST |
| --- | --- | --- | --- | --- | --- |
{table_rows}

{verdict}
"""
    if args.demo:
        card += demo_section(json.loads(args.demo.read_text()), out_dir, args.name, row)
    (out_dir / f"{args.name}.md").write_text(card)
    figures = {"model": model, "previous": previous_metrics, "random": random_metrics, "halves": halves, "kimg": kimg}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
