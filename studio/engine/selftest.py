"""`gan-studio --self-test`: prove on this machine that a model loads, renders, exports and restores exactly.

Uses the bundled model, or (when the app ships none) a tiny random generator, in a temporary library so the
user's own data is never touched.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

from models.checkpoints import save_checkpoint
from models.checkpoints.bundle import build_bundle
from models.stylegan2 import Generator
from studio.engine.export import export_image
from studio.engine.library import ModelLibrary
from studio.engine.recipe import read_recipe
from studio.engine.renderer import Renderer, RenderResult
from studio.engine.session import Session
from studio.engine.state import RenderState

TINY = {"channel_base": 512, "channel_max": 64}


def make_random_model(
    path: str | os.PathLike[str],
    resolution: int = 32,
    seed: int = 0,
    w_dim: int = 32,
    mapping_layers: int = 2,
    **synthesis: object,
) -> Path:
    """Write a small randomly initialised generator as a GAN Studio checkpoint (for the self-test and tests).

    Its noise strengths are non-zero and w_avg is the mean of 1000 w, as in a trained model, so noise modes
    and truncation have a visible effect.
    """
    torch.manual_seed(seed)
    G = Generator(
        z_dim=w_dim,
        c_dim=0,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": mapping_layers},
        synthesis_kwargs={**TINY, **synthesis},
    ).eval()
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith("noise_strength"):
                param.fill_(0.3)
        G.mapping.w_avg.copy_(G.z_to_w(torch.randn(1000, w_dim)).mean(dim=0))
    bundle = build_bundle(
        G_ema=G,
        G=None,
        D=None,
        augment_p=None,
        source_format="native",
        source_name=Path(path).name,
        source_sha256="",
        training={},
        device="cpu",
    )
    save_checkpoint(path, bundle, torch.float32)
    return Path(path)


def run_self_test(out_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Run the round trip; returns the problems found (none when all is well); files go to `out_dir`."""
    with tempfile.TemporaryDirectory(prefix="gan-studio-selftest-") as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return _round_trip(Path(scratch), folder)
        except Exception:
            return [f"self-test crashed:\n{traceback.format_exc()}"]


def _round_trip(scratch: Path, folder: Path) -> list[str]:
    problems = []
    library = ModelLibrary(scratch / "library")
    entry = library.ensure_bundled() or library.import_model(
        make_random_model(scratch / "random.safetensors")
    )
    session = Session(entry, data_dir=scratch)
    state = RenderState(model_id=entry.id, seed=7, psi=0.7, noise_mode="random", noise_seed=3)
    image = session.render(state)
    size = (session.resolution, session.resolution, 3)
    if image.shape != size or image.dtype != np.uint8:
        problems.append(f"render gave {image.shape} {image.dtype}, expected {size} uint8")
    if image.std() == 0:
        problems.append("render is a single flat colour")
    written = export_image(image, folder / "self-test.png", "png", 1, state, entry)
    recipe = read_recipe(written)
    if recipe is None:
        return [*problems, f"{written} carries no recipe"]
    if recipe.get("model_id") != entry.id:
        problems.append(f"recipe names model {recipe.get('model_id')}, expected {entry.id}")
    restored = RenderState.from_json(recipe["state"])
    if restored != state:
        problems.append(f"recipe restored {restored}, expected {state}")
    if not np.array_equal(session.render(restored), image):
        problems.append("re-rendering the restored recipe gave different pixels")
    results: list[RenderResult] = []
    renderer = Renderer()
    try:
        renderer.set_session(session)
        renderer.request(restored, False, results.append)
        if not renderer.wait_idle(timeout=120):
            problems.append("the render thread did not finish within 2 minutes")
    finally:
        renderer.shutdown()
    if not results:
        problems.append("the render thread returned nothing")
    elif results[-1].error:
        problems.append(f"the render thread failed: {results[-1].error}")
    elif not np.array_equal(results[-1].image, image):
        problems.append("the render thread gave different pixels than a direct render")
    return problems
