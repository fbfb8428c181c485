"""The generator shipped in resources/models: it loads, renders at its resolution, can be fine-tuned, and
is documented by its model card."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.checkpoints import load_checkpoint
from models.seeds import z_from_seed
from studio.cli import main
from studio.engine.paths import bundled_model_path


def test_bundled_model_loads_with_complete_metadata():
    path = bundled_model_path()
    assert path is not None, "resources/models/ should ship the default generator"
    bundle = load_checkpoint(path)
    meta = bundle.meta
    assert bundle.G is not None and bundle.D is not None, "G and D are shipped so the model can be fine-tuned"
    assert meta.family == "stylegan2" and meta.resolution == 64 and meta.c_dim == 0
    for key in ("kimg", "dataset", "licence", "fd_effnet", "hardware", "wall_time_h"):
        assert key in meta.training, f"model metadata lacks {key}"
    assert "MIT" in meta.training["dataset"]
    card = path.with_suffix(".md")
    assert card.exists() and "FD-EffNet" in card.read_text()


def test_bundled_model_renders_varied_images_at_its_resolution():
    G = load_checkpoint(bundled_model_path()).G_ema
    z = torch.cat([z_from_seed(s, G.z_dim) for s in range(4)])
    with torch.inference_mode():
        images = G.render(z, noise_mode="const")
    assert images.shape == (4, 3, 64, 64) and torch.isfinite(images).all()
    assert images.std(dim=0).mean() > 0.05, "different seeds should give different pictures"


def test_generate_uses_the_bundled_model_by_default(tmp_path):
    assert main(["generate", "--seeds", "3", "--outdir", str(tmp_path)]) == 0
    image = np.asarray(Image.open(tmp_path / "seed0003.png"))
    assert image.shape == (64, 64, 3) and image.std() > 1
