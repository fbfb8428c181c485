"""`gan-studio-train`: headless training with a tqdm bar, or JSON-lines events for the GUI (`--events jsonl`).

The same command runs on one device, or on several under `torchrun --nproc_per_node N` (DDP).
SIGTERM (and Ctrl+C) writes a checkpoint, then exits cleanly; `--resume RUN_DIR` continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from training.config import AUTO_PRESET, PRESET_FIELDS, PRESETS, ConfigError, TrainConfig

# CLI flag → config field, for the options artists reach for; `--set key=value` covers the rest.
_FLAGS: list[tuple[str, type, str]] = [
    ("--kimg", float, "length of the run in thousands of images shown to D"),
    ("--resolution", int, "image size (from scratch; fine-tuning uses the base model's)"),
    ("--batch", int, "images per step, all devices together"),
    ("--batch-gpu", int, "images per device per pass; smaller accumulates gradients to reach --batch"),
    ("--g-lr", float, "generator learning rate"),
    ("--d-lr", float, "discriminator learning rate"),
    ("--r1-gamma", float, "R1 weight (default: 0.0002 · res² / batch, 5x for StyleGAN3; 0 with the projected D)"),
    ("--pl-weight", float, "path-length regularisation weight (0 turns it off; default 2, 0 for StyleGAN3)"),
    ("--discriminator", str, "stylegan (default) or projected: small heads on frozen EfficientNet-Lite0 features"),
    ("--aug", str, "ada (default), diffaug or none"),
    ("--ada-target", float, "ADA's overfitting target for sign(D(real))"),
    ("--ada-kimg", float, "how fast ADA's p may move"),
    ("--freeze-d", int, "freeze the first K discriminator blocks (fine-tuning)"),
    ("--crop", str, "how to square images: crop, pad or stretch"),
    ("--device", str, "auto, cpu, cuda, cuda:N or mps"),
    ("--precision", str, "auto, fp32, bf16 or fp16"),
    ("--seed", int, "random seed"),
    ("--snap-kimg", float, "checkpoint every N kimg"),
    ("--sample-kimg", float, "sample grid every N kimg"),
    ("--metrics-kimg", float, "FD-EffNet / KID / precision / recall / C2ST every N kimg (0: off)"),
    ("--keep-checkpoints", int, "how many checkpoints to keep"),
    ("--channel-base", int, "network width (from scratch)"),
    ("--channel-max", int, "widest layer (from scratch)"),
    ("--z-dim", int, "latent size (from scratch)"),
    ("--w-dim", int, "style size (from scratch)"),
    ("--map-layers", int, "mapping network depth (from scratch)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gan-studio-train", description="Train or fine-tune a StyleGAN2 generator on a folder of images."
    )
    parser.add_argument("--data", help="a folder, zip, or prepared dataset folder")
    parser.add_argument("--base", default=None, help="a model file to fine-tune (.pkl, .pt, .safetensors) or 'scratch'")
    parser.add_argument("--out", help="the run folder (created)")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (--set may change options)",
    )
    parser.add_argument(
        "--preset",
        choices=[AUTO_PRESET, *sorted(PRESETS)],
        default=AUTO_PRESET,
        help="a bundle of defaults; auto (the default) chooses once the dataset's size is known: scratch from "
        "scratch, finetune-few under 100 images, else the fine-tune recipe measured best (finetune-fast: "
        "projected D, DiffAugment, hinge loss)",
    )
    parser.add_argument("--mirror", action="store_true", help="add left-right mirrored copies of the images")
    parser.add_argument("--events", choices=["jsonl"], help="print one JSON event per line instead of a progress bar")
    parser.add_argument(
        "--minutes",
        type=float,
        help="train for about this long instead of --kimg: the run measures its speed over its first seconds, "
        "then fixes its length in kimg",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config option")
    for flag, kind, text in _FLAGS:
        parser.add_argument(flag, type=kind, help=text)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if not args.data or not args.out:
        raise ConfigError("--data and --out are required (or --resume RUN_DIR)")
    explicit: dict[str, Any] = {}
    for flag, _, _ in _FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            explicit[flag[2:].replace("-", "_")] = value
    if args.minutes is not None:
        if args.kimg is not None:
            raise ConfigError("give the length as --kimg or as --minutes, not both")
        explicit["time_budget_s"] = args.minutes * 60
    explicit.update(parse_overrides(args.set))
    if "preset" in explicit:  # a preset brings its values: only --preset applies them
        raise ConfigError(f"choose the preset with --preset {explicit['preset']}, not --set preset=…")
    values: dict[str, Any] = {"data": args.data, "out": args.out, "base": args.base or "scratch", "mirror": args.mirror}
    if args.preset == AUTO_PRESET:  # chosen by the run once it has read its dataset (training.config.resolve_preset)
        overrides = {key: explicit[key] for key in PRESET_FIELDS if key in explicit}
        values.update(preset=AUTO_PRESET, preset_overrides=overrides)
    else:
        values.update(PRESETS[args.preset], preset=args.preset)
    config = TrainConfig.from_dict({**values, **explicit})
    config.validate()
    return config


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as config values (VALUE read as JSON where it parses, else as text)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


class _Output:
    """Prints events as JSON lines, or drives a tqdm bar and prints notable events on a terminal."""

    def __init__(self, jsonl: bool):
        self.jsonl = jsonl
        self.bar = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.jsonl:
            # One write per line: under torchrun the ranks share stdout, and print's separate write of the
            # newline (unbuffered Python) let another rank's event land in the middle of a line.
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
            return
        kind = event["event"]
        if kind == "started":
            from tqdm import tqdm

            # Without a length yet (a time budget still measuring its speed) the bar counts without a total.
            self.bar = tqdm(total=event["kimg"], initial=event["cur_kimg"], unit="kimg", dynamic_ncols=True)
            print(
                f"training on {event['device']} · {event['dataset_size']} images at {event['resolution']}px"
                + (" · measuring its speed first" if event["kimg"] is None else ""),
                file=sys.stderr,
            )
            if event.get("preset"):
                reason = f" ({event['preset_reason']})" if event.get("preset_reason") else ""
                print(f"recipe: {event['preset']}{reason}", file=sys.stderr)
        elif kind == "budget" and self.bar is not None:
            self.bar.total = event["total_kimg"]
            print(f"\n{event['message']}", file=sys.stderr)
        elif kind == "progress" and self.bar is not None:
            # The last step may pass the total by part of a batch: the bar stops at 100 % (and its ETA at 0).
            total = self.bar.total
            self.bar.n = min(event["kimg"], total) if total else event["kimg"]
            losses = " ".join(f"{k}={v:.3f}" for k, v in event["losses"].items() if k in ("G", "D"))
            p = f" p={event['augment_p']:.3f}" if event.get("augment_p") is not None else ""
            self.bar.set_postfix_str(f"{losses}{p} {event['images_per_s']:.1f} img/s")
        elif kind in ("warning", "error"):
            print(f"{kind}: {event['message']}", file=sys.stderr)
        elif kind == "import_report":
            print(event["summary"], file=sys.stderr)
        elif kind == "checkpoint":
            print(f"\ncheckpoint: {event['path']}", file=sys.stderr)
        elif kind == "finished":
            if self.bar is not None:
                self.bar.close()
            print(
                f"{event['status']} at {event['kimg']:.2f} kimg; last checkpoint {event['checkpoint']}", file=sys.stderr
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from training.loop import TrainingError, error_message, resume_config, train  # after parsing: --help stays instant
    from training.run_dir import RunDir, RunInUse

    output = _Output(args.events == "jsonl")
    stop = {"requested": False}

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if args.resume:
            RunDir(args.resume).ensure_free()  # its config.json and STOP file belong to the process training it
            config, resume = resume_config(args.resume), True
            if args.set:  # e.g. a lower learning rate for the rest of the run; recorded in config.json
                config = TrainConfig.from_dict({**config.to_dict(), **parse_overrides(args.set)})
                config.validate()
                config.dump(Path(args.resume) / "config.json")
        else:
            config, resume = config_from_args(args), False
        RunDir(config.out).ensure_free()
        stop_file = RunDir(config.out).stop_path
        stop_file.unlink(missing_ok=True)  # a request left by the previous session of this run is spent
        result = train(config, output, lambda: stop["requested"] or stop_file.exists(), resume=resume)
    except (ConfigError, TrainingError, RunInUse, ValueError, OSError) as exc:
        output({"event": "error", "message": error_message(exc), "kind": type(exc).__name__})
        return 2
    except Exception as exc:  # the GUI must hear about any failure, never a silent hang
        output({"event": "error", "message": error_message(exc), "traceback": traceback.format_exc()})
        return 1
    return 0 if result["status"] in ("completed", "stopped") else 1


def run(argv: list[str] | None = None) -> NoReturn:
    """`main`, then leave with its exit code: the entry of `gan-studio-train` and `python -m training`, the
    commands torchrun starts."""
    code = main(argv)
    from training.loop import world_size  # after main: --help stays instant

    if world_size() > 1:
        # Under torchrun, a completed run (checkpoints written, process group destroyed) was still aborted at
        # interpreter exit now and then ("terminate called without an active exception", SIGABRT in CI): a
        # torch thread torn down with the process. Nothing is left to save, so leave without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
