"""Projection figures for issue 16: PSNR on images the model made from known seeds, distances to real images
against the mean image and the best of N random seeds, and steps/s at 64 and 256 px, for each number of
starting points given (the mean latent alone against several side by side, in one run).

    python benchmarks/projection.py --images /path/to/fluent/assets --out figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import torch

from models.checkpoints import load_checkpoint
from studio.engine.imaging import to_uint8
from studio.engine.paths import bundled_model_path
from studio.engine.projection import (
    PerceptualDistance,
    ProjectionOptions,
    distances,
    load_target,
    project,
    seed_ws,
    w_statistics,
)
from studio.engine.selftest import make_random_model


def random_distances(target, features, small, perceptual) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection's two distances from `target` to images given by their features and shrunk pixels."""
    target_t = torch.as_tensor(target).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        target_features = perceptual.features(target_t)
        p = torch.cat([perceptual.distance(f, [t.expand(len(f[0]), -1, -1, -1) for t in target_features])
                       for f in features])
        x = (small - torch.nn.functional.adaptive_avg_pool2d(target_t, small.shape[-1])).square().mean(dim=(1, 2, 3))
    return p, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(bundled_model_path()))
    parser.add_argument("--images", required=True, help="a folder of real images of the model's domain")
    parser.add_argument("--real", type=int, default=4, help="how many real images to project")
    parser.add_argument("--seeds", default="1,2,3", help="seeds whose images are projected back")
    parser.add_argument("--random", type=int, default=1000, help="random seeds to compare with")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--speed-steps", type=int, default=15)
    parser.add_argument("--speed", default="64 px,256 px", help="which speed figures to take")
    parser.add_argument("--starts", default="1,4", help="numbers of starting points to compare")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    figures: dict = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    figures |= {"threads": torch.get_num_threads(), "load_before": os.getloadavg(), "steps": args.steps}

    def save() -> None:
        Path(args.out).write_text(json.dumps(figures, indent=1))

    G = load_checkpoint(args.model, "cpu").G_ema.requires_grad_(False)
    perceptual = PerceptualDistance(torch.device("cpu"), G.img_resolution)
    starts = [int(n) for n in args.starts.split(",")]
    options = {n: ProjectionOptions(steps=args.steps, w_plus=True, starts=n) for n in starts}

    files = sorted(Path(args.images).glob("*.webp"))
    random.Random(0).shuffle(files)
    w_avg, _ = w_statistics(G)
    mean_ws = G.to_ws(w_avg)
    random_ws = seed_ws(G, range(args.random))
    with torch.no_grad():  # the random seeds' images are rendered and their features taken once
        random_images = torch.cat([G.synthesis(c, noise_mode="const") for c in random_ws.split(16)])
        random_features = [perceptual.features(c) for c in random_images.split(16)]
        random_small = torch.nn.functional.adaptive_avg_pool2d(random_images, min(G.img_resolution, 64))
    real = []
    for path in files[: args.real]:
        target = load_target(path, G.img_resolution, "crop")
        mean_p, mean_x = distances(G, mean_ws, target, perceptual)
        seeds_p, seeds_x = random_distances(target, random_features, random_small, perceptual)
        results = {n: project(G, target, options[n], perceptual=perceptual) for n in starts}
        real.append({
            "file": path.name,
            **{f"projection_{n}_starts": {"perceptual": r.perceptual, "pixel": r.pixel, "psnr": r.psnr,
                                          "seconds": r.seconds} for n, r in results.items()},
            "mean_image": {"perceptual": float(mean_p[0]), "pixel": float(mean_x[0])},
            f"best_of_{args.random}_seeds": {"perceptual": float(seeds_p.min()), "pixel": float(seeds_x.min())},
        })
        figures["real"] = real
        save()
        print(real[-1], flush=True)

    speed = {}
    with tempfile.TemporaryDirectory() as scratch:
        stand_in = make_random_model(Path(scratch) / "256.safetensors", resolution=256, w_dim=128,
                                     channel_base=8192, channel_max=128)
        models = {"64 px (bundled)": G, "256 px (random stand-in)": load_checkpoint(stand_in).G_ema}
        for label, model in models.items():
            if not any(label.startswith(wanted) for wanted in args.speed.split(",")):
                continue
            with torch.no_grad():
                target = to_uint8(model.synthesis(seed_ws(model, [5]), noise_mode="const"))[0]
            for n in starts:
                start = time.perf_counter()
                result = project(model, target, ProjectionOptions(steps=args.speed_steps, starts=n))
                speed[f"{label}, {n} starts"] = {"steps_per_s": result.steps_done / result.seconds,
                                                 "seconds": time.perf_counter() - start}
                print(label, n, speed[f"{label}, {n} starts"], flush=True)
    figures["speed"] = figures.get("speed", {}) | speed
    generated = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with torch.no_grad():
            target = to_uint8(G.synthesis(seed_ws(G, [seed]), noise_mode="const"))[0]
        for n in starts:
            result = project(G, target, options[n], perceptual=perceptual)
            generated.append({"seed": seed, "starts": n, "psnr": result.psnr, "perceptual": result.perceptual,
                              "pixel": result.pixel, "steps_per_s": result.steps_done / result.seconds})
            figures["generated"] = generated
            save()
            print(generated[-1], flush=True)

    figures["load_after"] = os.getloadavg()
    save()


if __name__ == "__main__":
    main()
