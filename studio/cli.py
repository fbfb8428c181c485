"""`gan-studio`: the desktop app, and its command-line tools (info, generate, convert, metrics, animate, train,
project, blend).

With no subcommand it opens the window (optionally on the files named); `--screenshots DIR` and
`--self-test` run the window or the engine offscreen for docs and checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path

SUBCOMMANDS = ("info", "generate", "convert", "metrics", "animate", "train", "project", "blend")


def _model_argument(value: str | None) -> Path:
    from studio.engine.paths import bundled_model_path

    if value:
        return Path(value)
    bundled = bundled_model_path()
    if bundled is None:
        raise SystemExit("no --model given and no bundled model is installed")
    return bundled


def _output_folder(value: str) -> Path:
    """A folder to write into, made if missing; a file in its place is a usage error, reported as argparse does."""
    path = Path(value)
    existing = next(p for p in (path, *path.parents) if p.exists())  # the parents end at "." or the root
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, not a folder: name a folder (made if missing)")
    return path


def _translation(value: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (e.g. 0.1,-0.05), not {value!r}") from None
    return x, y


def cmd_info(args: argparse.Namespace) -> int:
    from models.checkpoints import load_checkpoint

    bundle = load_checkpoint(args.file)
    info = {
        **bundle.meta.to_dict(),
        "has_G": bundle.G is not None,
        "has_D": bundle.D is not None,
        "augment_p": bundle.augment_p,
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from models.seeds import parse_seeds
    from studio.engine.imaging import to_uint8
    from studio.engine.recipe import write_png_with_recipe
    from studio.engine.session import Session
    from studio.engine.state import RenderState

    seeds = parse_seeds(args.seeds)
    # The window's engine renders, so each PNG carries the recipe of a window export: dropped on the
    # window (with the model in its library), it restores this very image.
    session = Session(_model_argument(args.model), device=args.device, precision=args.precision)
    c_dim = session.G.c_dim
    if c_dim:
        if args.class_index is None or not 0 <= args.class_index < c_dim:
            raise SystemExit(f"this model is conditional: pass --class K with K from 0 to {c_dim - 1}")
    elif args.class_index is not None:
        raise SystemExit("--class applies only to conditional models; this one has no classes")
    outdir = args.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    base = RenderState(
        model_id=session.model_id,
        psi=args.trunc,
        cutoff=args.trunc_cutoff,
        noise_mode=args.noise_mode,
        class_index=args.class_index or 0,
        translate_x=args.translate[0],
        translate_y=args.translate[1],
        rotate=args.rotate,
    )
    for seed in seeds:
        state = base.replace(seed=seed)
        raw = session.render_raw(state)
        png = write_png_with_recipe(outdir / f"seed{seed:04d}.png", to_uint8(raw)[0], state, session.entry)
        if args.save_npy:
            np.save(png.with_suffix(".npy"), raw.cpu().numpy())
        print(png)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from models.checkpoints import load_checkpoint, save_checkpoint

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise SystemExit(f"the output must be a .safetensors file, not {out.name}")
    bundle = load_checkpoint(args.input)
    save_checkpoint(out, bundle)
    print(out)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np
    import torch

    from models.checkpoints import load_checkpoint
    from models.device import autocast, select_device, select_precision
    from training.dataset import PreparedDataset, prepare_dataset
    from training.metrics import compute_metrics
    from training.run_dir import to_uint8

    device = select_device(args.device)
    dtype = select_precision(device, args.precision)
    G = load_checkpoint(_model_argument(args.model), device=device).G_ema
    with tempfile.TemporaryDirectory(prefix="gan-studio-metrics-") as scratch:
        data = Path(args.data)
        if not (data / "manifest.json").exists():
            prepare_dataset([data], Path(scratch) / "data", G.img_resolution)
            data = Path(scratch) / "data"
        dataset = PreparedDataset(data, xflip=False)
        if dataset.resolution != G.img_resolution:
            raise SystemExit(f"{args.data} is prepared at {dataset.resolution}px; the model is {G.img_resolution}px")
        n = min(args.n, dataset.num_images)
        order = torch.randperm(dataset.num_images, generator=torch.Generator().manual_seed(args.seed))[:n]
        reals = np.stack([dataset[int(i)][0].permute(1, 2, 0).numpy() for i in order])
    gen = torch.Generator().manual_seed(args.seed)
    fakes = []
    for start in range(0, n, 16):
        z = torch.randn([min(16, n - start), G.z_dim], generator=gen).to(device)
        with torch.inference_mode(), autocast(device, dtype):
            fakes.append(to_uint8(G.render(z, psi=args.trunc, noise_mode="const")))
    result = compute_metrics(reals, np.concatenate(fakes), device=device)
    print(json.dumps({"metric_features": "EfficientNet-Lite0 (FD-EffNet; not Inception FID)", **result}, indent=2))
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from studio.engine.library import ModelLibrary
    from studio.engine.paths import user_data_dir
    from studio.engine.session import Session
    from studio.engine.timeline_export import export_timeline, read_timeline

    timeline, recipe = read_timeline(args.timeline)
    if args.fps is not None:
        timeline = timeline.replace(fps=args.fps)
    model_id = recipe.get("model_id")
    if args.model:
        model = Path(args.model)
    else:  # the model the keyframes were made with, from the window's library
        library = ModelLibrary(user_data_dir() / "library")
        entry = next((e for e in library.entries() if e.id == model_id), None)
        if entry is None:
            name = recipe.get("model_name") or model_id
            raise SystemExit(f"the timeline's model “{name}” is not in your library: pass its file with --model")
        model = entry
    session = Session(model, device=args.device, precision=args.precision)
    if model_id and session.model_id != model_id:
        raise SystemExit(f"{args.model} is not the model this timeline was made with ({recipe.get('model_name')})")
    if timeline.has_camera and not session.has_camera:
        print("note: this StyleGAN2 model has no camera: the timeline's camera moves are ignored", file=sys.stderr)

    def progress(done: int, total: int, _message: str) -> None:
        print(f"\rframe {done}/{total}", end="", file=sys.stderr, flush=True)

    written = export_timeline(session, timeline, args.out, size=args.size, progress=progress)
    print(file=sys.stderr)
    print(written)
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from studio.engine.projection import ProjectionOptions, default_starts, file_origin, load_target, project
    from studio.engine.recipe import make_recipe, save_image
    from studio.engine.session import Session

    session = Session(_model_argument(args.model), device=args.device, precision="fp32")
    target = load_target(args.image, session.resolution, args.fit)
    starts = default_starts(session.device, session.resolution) if args.starts is None else args.starts
    options = ProjectionOptions(steps=args.steps, w_plus=args.w_plus, starts=starts)
    result = project(session.G, target, options)
    state = result.state(session.model_id)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    recipe = {**make_recipe(state, session.entry), "projection": file_origin(args.image, args.fit, options, result)}
    save_image(Image.fromarray(result.image), out / "projected.png", "png", recipe)
    Image.fromarray(target).save(out / "target.png")
    np.save(out / "projected_w.npy", result.ws)
    summary = {
        "image": str(out / "projected.png"),
        "perceptual": result.perceptual,
        "pixel": result.pixel,
        "psnr": result.psnr,
        "steps": result.steps_done,
        "seconds": round(result.seconds, 2),
    }
    print(json.dumps(summary))
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from studio.engine.blending import BlendCurve, blend_files

    print(blend_files(args.a, args.b, BlendCurve(args.at, args.width, args.mapping), args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gan-studio", description="GAN Studio: train and play with your own GANs.")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("info", help="print a model file's metadata as JSON")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="write one PNG per seed")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--seeds", default="0-3", help="e.g. 0-3,7 (NVIDIA's seed convention)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi")
    p.add_argument("--trunc-cutoff", type=int, default=None, help="truncate only the first N layers")
    p.add_argument("--class", dest="class_index", type=int, default=None, help="class index (conditional models)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const")
    p.add_argument("--translate", type=_translation, default=(0.0, 0.0), help="StyleGAN3: move by X,Y image widths")
    p.add_argument("--rotate", type=float, default=0.0, help="StyleGAN3: rotate by this many degrees")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--save-npy", action="store_true", help="also write the raw float output (NCHW) as .npy")
    p.add_argument("--outdir", type=_output_folder, required=True, help="folder for the PNGs (made if missing)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("convert", help="convert a .pkl/.pt/.safetensors model to our .safetensors format")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("metrics", help="FD-EffNet, KID, precision, recall and C2ST of a model against images")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--data", required=True, help="a folder, zip or prepared dataset")
    p.add_argument("--n", type=int, default=2000, help="images per side")
    p.add_argument("--trunc", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("animate", help="render a timeline (.json, or an MP4 the studio exported) to a video")
    p.add_argument("timeline", help="the timeline project file saved by the Timeline panel, or its MP4")
    p.add_argument("--out", required=True, help="video.mp4, video.gif, or a folder name for a PNG sequence")
    p.add_argument("--fps", type=int, default=None, help="frames per second (default: the timeline's)")
    p.add_argument("--size", type=int, default=None, help="frame size in px (default: the model's resolution)")
    p.add_argument("--model", help="model file (default: the timeline's model from the library)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.set_defaults(func=cmd_animate)
    p = sub.add_parser("project", help="find the latent whose image is nearest to an image of your own")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--image", required=True, type=Path, help="any image the dataset importer reads")
    p.add_argument("--fit", choices=["crop", "pad", "stretch"], default="crop", help="how a non-square image fits")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--w-plus", action="store_true", help="finish by optimising each layer's w on its own")
    p.add_argument(
        "--starts",
        type=int,
        help="starting points optimised side by side, the nearest kept (default: 4 on a GPU or a model of up to "
        "64 px, else 1, the mean latent alone)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=_output_folder, required=True, help="folder for projected.png, projected_w.npy")
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("blend", help="blend two models layer by layer: A's coarse layers, B's fine ones")
    p.add_argument("a", help="model giving the layers below the swap resolution")
    p.add_argument("b", help="model giving the layers from the swap resolution on")
    p.add_argument("--at", type=int, required=True, help="swap resolution in px (a power of two)")
    p.add_argument("--width", type=float, default=0.0, help="octaves of a smooth transition (0: hard swap)")
    p.add_argument("--mapping", choices=["a", "b"], default="a", help="the parent giving the mapping network")
    p.add_argument("--out", required=True, help="the blended model, .safetensors")
    p.set_defaults(func=cmd_blend)
    return parser


def build_app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gan-studio",
        description="Open GAN Studio. Subcommands: " + ", ".join(SUBCOMMANDS) + " (gan-studio SUBCOMMAND -h).",
    )
    parser.add_argument("files", nargs="*", help="models or exported PNGs to open")
    parser.add_argument("--screenshots", metavar="DIR", help="save a PNG of each panel offscreen, then exit")
    parser.add_argument(
        "--self-test", action="store_true", help="render, export and reload offscreen; exit 0 if all works"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        # `gan-studio-train` under one roof, so a frozen app (no Python beside it) can start its own runs.
        from training.cli import main as train_main

        return train_main(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        args = build_parser().parse_args(argv)
        from models.checkpoints import CheckpointError
        from studio.engine.files import ExportError

        try:
            return args.func(args)
        except (CheckpointError, ExportError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args = build_app_parser().parse_args(argv)
    if args.self_test:
        from studio.engine.selftest import run_self_test

        problems = run_self_test()
        for problem in problems:
            print(f"self-test: {problem}", file=sys.stderr)
        print("self-test passed" if not problems else "self-test FAILED")
        return 1 if problems else 0
    if args.screenshots:
        from studio.ui.app import ScreenshotError, take_screenshots

        try:
            for path in take_screenshots(Path(args.screenshots)):
                print(path)
        except ScreenshotError as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return exit_past_compile(1)
        return exit_past_compile(0)
    from studio.ui.app import run_app

    return exit_past_compile(run_app(args.files))


def exit_past_compile(code: int) -> int:
    """`code`, or the end of the process with it when the display path is still compiling in the background.

    Inductor's compile cannot be interrupted, and the interpreter's shutdown under it aborts the process
    ("terminate called without an active exception", status 134) after the window has closed cleanly. By then
    everything the app keeps is saved, and a compile cut short leaves only inductor's own cache, which it
    writes file by file, so the process ends here without that shutdown."""
    from studio.engine.session import COMPILE_THREAD

    if any(thread.name == COMPILE_THREAD and thread.is_alive() for thread in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
