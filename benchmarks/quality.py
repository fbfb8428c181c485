"""Time to quality at equal CPU time: fine-tuning recipes compared on Noto Color Emoji.

Run on demand (minutes to an hour):
    python benchmarks/quality.py [--recipes finetune finetune-fast] [--cpu-minutes 6] [--eval-every 1]
                                 [--n 500] [--batch 16] [--threads 1] [--work DIR] [--one-at-a-time]
                                 [--measure-only]

Each recipe (a preset of `gan-studio-train`, optionally with `:key=value;...` overrides) fine-tunes the bundled
fluent-emoji-64 model on Noto Color Emoji (rendered by scripts/noto_emoji.py and prepared once at 64 px,
letterboxed on white) in its own `python -m training` process for the same budget of that process's CPU time
(user + system, read from /proc: the machine is shared, so wall time is noisy; CPU time still includes the
process's start-up). The recipes train side by side (so they share the machine's load alike) unless
--one-at-a-time. At the first checkpoint past each `--eval-every` CPU-minute mark the benchmark keeps the
model file; at the budget it stops the run through its STOP file. Afterwards, in this process, every kept
G_ema is measured against the same `--n` real images: FD-EffNet (plus KID, precision, recall) and, when
training/metrics.py has it, the classifier two-sample test `c2st` (accuracy of a small CNN telling real from
generated on pixels; 0.5 means indistinguishable), and the gap between the average colours of generated and
real images (mean absolute difference of the RGB means, 0-255: a colour drift FD can miss). FD-EffNet uses
the same EfficientNet-Lite0 as the projected discriminator, which trains G in that feature space, so it
flatters that recipe; C2ST and the colour gap do not share it.
`--measure-only` measures the kept models of the last run again (e.g. once `c2st` is there).

Writes to --work: results.json, charts fd-vs-cpu.png and c2st-vs-cpu.png, and sample grids (seeds 0-31, as the
training runs draw them) of the base model and of each recipe's last checkpoint. `--threads` is each process's
thread count; one thread keeps CPU-time accounting honest on a loaded machine (OpenMP threads spin while they wait
for a core).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.checkpoints import load_checkpoint  # noqa: E402
from models.seeds import z_from_seed  # noqa: E402
from training import metrics  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.dataset import PreparedDataset  # noqa: E402
from training.prepare import prepare_dataset  # noqa: E402
from training.run_dir import RunDir, save_image_grid, to_uint8  # noqa: E402

BASE = ROOT / "resources" / "models" / "fluent-emoji-64.safetensors"
FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
GRID_SEEDS = 32
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process and of its children that have ended (Linux /proc): the C++
    compilers that torch.compile starts count too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def noto_dataset(work: Path, font: str) -> Path:
    """Noto Color Emoji rendered and prepared at 64 px (once; later runs reuse the folder)."""
    rendered, prepared = work / "noto", work / "noto-64"
    if not rendered.is_dir():
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "noto_emoji.py"), str(rendered), "--font", font], check=True
        )
    if not (prepared / "manifest.json").exists():
        prepare_dataset([rendered], prepared, 64, mode="pad", background="#ffffff")
    return prepared


def parse_recipe(spec: str) -> tuple[str, list[str]]:
    """'finetune-fast:g_lr=0.001;diffaug_policy=translation,cutout' → the preset and its `--set` overrides."""
    preset, _, overrides = spec.partition(":")
    return preset, [item for item in overrides.split(";") if item]


def train_for_cpu_budget(
    spec: str,
    base: Path,
    data: Path,
    run: Path,
    keep: Path,
    budget_s: float,
    every_s: float,
    threads: int,
    batch: int,
) -> dict:
    """Fine-tune with one recipe until its process has used `budget_s` CPU seconds; keep a model per mark."""
    preset, overrides = parse_recipe(spec)
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "training",
        "--data",
        str(data),
        "--base",
        str(base),
        "--out",
        str(run),
        "--preset",
        preset,
        "--batch",
        str(batch),
        "--kimg",
        "1000",
        "--snap-kimg",
        "0.2",
        "--sample-kimg",
        "1000",
        "--events",
        "jsonl",
    ]
    for item in overrides:
        command += ["--set", item]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TORCHINDUCTOR_COMPILE_THREADS": "1",  # compiling G in the training process (no worker pool), counted
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)

    kept, next_mark, started_cpu, stopping = [], every_s, None, False
    rates, wall_start, last_checkpoint, last_cpu = [], time.time(), None, 0.0

    def keep_checkpoint(cpu: float, event: dict) -> None:
        if kept and kept[-1]["kimg"] == event["kimg"]:  # a stop re-saves the checkpoint just kept
            return
        path = keep / f"cpu-{cpu:07.1f}s.safetensors"
        shutil.copyfile(event["path"], path)
        kept.append({"cpu_s": cpu, "kimg": event["kimg"], "path": str(path)})
        print(f"  {spec}: {cpu / 60:.2f} CPU-min, {event['kimg']:.2f} kimg", flush=True)

    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        try:
            cpu = process_cpu_seconds(proc.pid)
            last_cpu = cpu
        except (OSError, IndexError, ValueError):  # it has just exited
            cpu = None
        kind = event["event"]
        if kind == "error":
            raise RuntimeError(f"{spec}: {event['message']}")
        if kind == "started":
            started_cpu = cpu
        elif kind == "progress":
            rates.append(event["images_per_s"])
            if cpu is not None and cpu >= budget_s and not stopping:
                RunDir(run).request_stop()
                stopping = True
        elif kind == "checkpoint":
            last_checkpoint = (cpu if cpu is not None else last_cpu, event)
            if cpu is not None and (cpu >= next_mark or stopping):
                keep_checkpoint(cpu, event)
                while next_mark <= cpu:
                    next_mark += every_s
    proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{spec}: training exited with {proc.returncode}")
    if last_checkpoint is not None:  # a run given its own length (--set kimg=…) can end before the budget
        keep_checkpoint(*last_checkpoint)
    last = kept[-1]
    return {
        "recipe": spec,
        "batch": batch,
        "kept": kept,
        "startup_cpu_s": started_cpu,
        "img_per_cpu_s": last["kimg"] * 1000 / (last["cpu_s"] - started_cpu),
        "img_per_wall_s": float(np.median(rates[len(rates) // 4 :])) if rates else None,
        "wall_s": time.time() - wall_start,
    }


def render(G, z: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([to_uint8(G.render(chunk, noise_mode="const")) for chunk in z.split(50)])


class Evaluator:
    """Measures generators against one fixed set of real images, with the same latents for every model."""

    def __init__(self, data: Path, n: int, seed: int = 0):
        dataset = PreparedDataset(data, xflip=False)
        if dataset.num_images < n:
            raise SystemExit(f"{data} has {dataset.num_images} images; --n {n} needs at least that many")
        order = torch.randperm(dataset.num_images, generator=torch.Generator().manual_seed(seed))
        self.reals = np.stack([dataset[int(i)][0].permute(1, 2, 0).numpy() for i in order[:n]])
        self.real_features = metrics.extract_features(self.reals)
        self.n = n
        self.floor = None
        if dataset.num_images >= 2 * n:  # two disjoint real sets: the best FD a model could reach at this n
            others = np.stack([dataset[int(i)][0].permute(1, 2, 0).numpy() for i in order[n : 2 * n]])
            self.floor = self.scores(self.reals, others, metrics.extract_features(others))

    def scores(self, reals: np.ndarray, fakes: np.ndarray, fake_features: np.ndarray) -> dict:
        result = metrics.metrics_from_features(self.real_features, fake_features)
        # A check in pixels, outside the feature space: how far the average colour is from the data's (0-255).
        gap = fakes.reshape(-1, 3).mean(axis=0) - reals.reshape(-1, 3).mean(axis=0)
        result["rgb_mean_gap"] = float(np.abs(gap).mean())
        nchw = [torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() for x in (reals, fakes)]
        result.update(metrics.c2st(*nchw, seed=0))
        return result

    def model(self, path: str | Path) -> dict:
        G = load_checkpoint(path).G_ema
        z = torch.randn([self.n, G.z_dim], generator=torch.Generator().manual_seed(12345))
        fakes = render(G, z)
        return self.scores(self.reals, fakes, metrics.extract_features(fakes))


def save_grid(path: Path, model: Path) -> None:
    G = load_checkpoint(model).G_ema
    z = torch.cat([z_from_seed(s, G.z_dim) for s in range(GRID_SEEDS)])
    save_image_grid(render(G, z), 8, path)


def round_ticks(low: float, high: float, count: int = 8) -> list[float]:
    """About `count` tick values in [low, high] on a 1-2-5 step, so that each label is exact where it stands."""
    rough = (high - low) / count
    magnitude = 10 ** np.floor(np.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    first = np.ceil(low / step) * step
    return [round(float(value), 10) for value in np.arange(first, high + step * 1e-9, step)]


def line_chart(
    series: dict[str, list[tuple[float, float]]], path: Path, x_label: str, y_label: str, floor: float | None = None
) -> None:
    """A plain PNG line chart (no plotting library is a dependency)."""
    width, height, left, right, top, bottom = 760, 460, 70, 20, 20, 60
    points = [p for values in series.values() for p in values]
    x_max = max(x for x, _ in points) * 1.05
    ys = [y for _, y in points] + ([floor] if floor is not None else [])
    y_min, y_max = min(ys) * 0.95, max(ys) * 1.05
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    # Pillow's default font at its own 10 px drops some glyphs ("fast:freeze" lost its colon); 12 px keeps them.
    font = ImageFont.load_default(size=12)

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            left + x / x_max * (width - left - right),
            height - bottom - (y - y_min) / (y_max - y_min) * (height - top - bottom),
        )

    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    for x in round_ticks(0, x_max):
        px, _ = at(x, y_min)
        draw.line([px, height - bottom, px, height - bottom + 5], fill=(0, 0, 0))
        draw.text((px - 10, height - bottom + 8), f"{x:g}", fill=(0, 0, 0), font=font)
    for y in round_ticks(y_min, y_max):
        _, py = at(0, y)
        draw.line([left - 5, py, left, py], fill=(0, 0, 0))
        draw.text((5, py - 7), f"{y:g}", fill=(0, 0, 0), font=font)
    draw.text(((width - draw.textlength(x_label, font=font)) / 2, height - 25), x_label, fill=(0, 0, 0), font=font)
    draw.text((left + 8, top + 6), y_label, fill=(0, 0, 0), font=font)
    if floor is not None:
        _, py = at(0, floor)
        for x in range(left, width - right, 12):
            draw.line([x, py, x + 6, py], fill=(120, 120, 120))
        floor_label = "floor: two halves of the data"
        label_x = width - right - 8 - draw.textlength(floor_label, font=font)
        draw.text((label_x, py - 16), floor_label, fill=(120, 120, 120), font=font)
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        xy = [at(x, y) for x, y in values]
        draw.line(xy, fill=colour, width=2)
        for px, py in xy:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        legend_y = height - bottom - 40 - 16 * (len(series) - i)
        draw.line([left + 8, legend_y + 7, left + 28, legend_y + 7], fill=colour, width=2)
        draw.text((left + 34, legend_y), name, fill=colour, font=font)
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["finetune", "finetune-fast"],
        help="presets, each optionally with overrides: PRESET:key=value;key=value",
    )
    parser.add_argument("--cpu-minutes", type=float, default=6.0, help="training budget per recipe")
    parser.add_argument("--eval-every", type=float, default=1.0, help="CPU minutes between measured checkpoints")
    parser.add_argument("--n", type=int, default=500, help="images a side for the metrics")
    parser.add_argument(
        "--batch",
        type=int,
        default=TrainConfig.batch,
        help="images per step (default: what a run gets from the Train panel and the CLI unless told)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--base", type=Path, default=BASE, help="the model to fine-tune (default: the bundled one)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "gan-studio" / "quality-bench")
    parser.add_argument("--font", default=FONT)
    parser.add_argument("--one-at-a-time", action="store_true", help="train the recipes in turn, not side by side")
    parser.add_argument(
        "--measure-only", action="store_true", help="measure the models kept by the last run in --work again"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = noto_dataset(args.work, args.font)
    specs = args.recipes

    if args.measure_only:
        runs = json.loads((args.work / "results.json").read_text())["runs"]
    else:
        # Side by side by default: the recipes then share the machine's load alike, and CPU time is per process.
        print(f"training {', '.join(specs)} for {args.cpu_minutes} CPU-minutes each, {args.threads} thread(s)")

        def train_recipe(spec: str) -> dict:
            folder = args.work / "".join(c if c.isalnum() or c in "-." else "_" for c in spec)
            budget, every = args.cpu_minutes * 60, args.eval_every * 60
            return train_for_cpu_budget(
                spec, args.base, data, folder / "run", folder / "kept", budget, every, args.threads, args.batch
            )

        with ThreadPoolExecutor(max_workers=1 if args.one_at_a_time else len(specs)) as pool:
            runs = list(pool.map(train_recipe, specs))
        # The training record goes to disk first: an hour of training must survive a failed measurement.
        (args.work / "results.json").write_text(json.dumps({"threads": args.threads, "runs": runs}, indent=2))

    print(f"measuring {sum(len(r['kept']) for r in runs) + 1} models against {args.n} real images", flush=True)
    evaluator = Evaluator(data, args.n)
    before = evaluator.model(args.base)
    save_grid(args.work / "grid-before.png", args.base)
    for run in runs:
        for point in run["kept"]:
            point.update(evaluator.model(point["path"]))
        folder = Path(run["kept"][-1]["path"]).parents[1]
        run["grid"] = str(folder / "grid-after.png")
        save_grid(Path(run["grid"]), Path(run["kept"][-1]["path"]))

    has_c2st = "c2st" in before
    header = f"{'recipe':<44} {'CPU-min':>8} {'kimg':>6} {'FD-EffNet':>10} {'KID':>8} {'RGB gap':>8}"
    header += "  C2ST" if has_c2st else ""
    print(header)

    def row(name: str, cpu_min: float, kimg: float, m: dict) -> str:
        text = f"{name:<44} {cpu_min:>8.2f} {kimg:>6.2f} {m['fd_effnet']:>10.1f} {m['kid_effnet']:>8.4f}"
        text += f" {m['rgb_mean_gap']:>8.1f}"
        return text + (f"  {m['c2st']:.3f}" if has_c2st else "")

    print(row("base model (before)", 0, 0, before))
    for run in runs:
        for point in run["kept"]:
            print(row(run["recipe"], point["cpu_s"] / 60, point["kimg"], point))
    if evaluator.floor:
        print(row("floor: two halves of the data", 0, 0, evaluator.floor))
    for run in runs:
        startup = f" (start-up {run['startup_cpu_s']:.1f} CPU-s)" if run["startup_cpu_s"] is not None else ""
        print(
            f"{run['recipe']}: {run['img_per_cpu_s']:.2f} img per CPU-second{startup}, "
            f"median {run['img_per_wall_s']:.2f} img/s wall"
        )

    def chart(metric: str, path: Path, y_label: str) -> None:
        series = {
            run["recipe"]: [(0.0, before[metric])] + [(p["cpu_s"] / 60, p[metric]) for p in run["kept"]] for run in runs
        }
        floor = evaluator.floor[metric] if evaluator.floor else None
        line_chart(series, path, f"training process CPU minutes ({args.threads} thread(s))", y_label, floor)

    chart("fd_effnet", args.work / "fd-vs-cpu.png", f"FD-EffNet vs Noto Color Emoji (n={args.n}, lower is better)")
    if has_c2st:
        chart("c2st", args.work / "c2st-vs-cpu.png", f"C2ST accuracy vs Noto Color Emoji (n={args.n}, 0.5 is best)")
    results = {
        "n": args.n,
        "threads": args.threads,
        "cpu_minutes": args.cpu_minutes,
        "before": before,
        "floor": evaluator.floor,
        "runs": runs,
        "charts": [str(path) for path in sorted(args.work.glob("*-vs-cpu.png"))],
        "grid_before": str(args.work / "grid-before.png"),
    }
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"charts and results.json in {args.work}; grids {args.work}/grid-before.png and */grid-after.png")


if __name__ == "__main__":
    main()
