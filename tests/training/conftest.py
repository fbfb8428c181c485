"""Fixtures for training tests: procedural datasets (red discs on white) and tiny network settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.config import TrainConfig

# A network small enough that a training step takes milliseconds on two CPU cores.
TINY = dict(resolution=16, channel_base=256, channel_max=32, z_dim=32, w_dim=32, map_layers=2)


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(
        data=str(data),
        out=str(out),
        kimg=0.064,
        batch=8,
        snap_kimg=0.032,
        sample_kimg=0.032,
        pl_weight=0.0,
        **TINY,
    )
    values.update(overrides)
    return TrainConfig(**values)


def make_discs(folder: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """`count` images of a red disc of random size and place on white."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = Image.new("RGB", (size, size), "white")
        r = int(rng.integers(size // 6, size // 3))
        cx, cy = rng.integers(r, size - r, size=2)
        ImageDraw.Draw(image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=(220, 30, 30))
        image.save(folder / f"disc-{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def discs_folder(tmp_path_factory) -> Path:
    return make_discs(tmp_path_factory.mktemp("discs"), 48)



@pytest.fixture
def tiny_generator_file(tmp_path) -> Path:
    """A generator-only model file (as converted NVIDIA or rosinality files often are), 16 px."""
    from models.checkpoints import save_checkpoint
    from models.checkpoints.bundle import build_bundle
    from models.stylegan2 import Generator

    G = Generator(
        z_dim=TINY["z_dim"], c_dim=0, w_dim=TINY["w_dim"], img_resolution=TINY["resolution"], img_channels=3,
        mapping_kwargs={"num_layers": TINY["map_layers"]},
        synthesis_kwargs={"channel_base": TINY["channel_base"], "channel_max": TINY["channel_max"]},
    )
    bundle = build_bundle(
        G_ema=G, G=None, D=None, augment_p=None, source_format="native", source_name="g-only.safetensors",
        source_sha256="", training={}, device="cpu",
    )
    path = tmp_path / "g-only.safetensors"
    save_checkpoint(path, bundle)
    return path
