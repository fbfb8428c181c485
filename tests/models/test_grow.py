"""scripts/grow_generator.py: a generator grown to twice its resolution draws its old images upsampled, and
its new block learns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from models import ops
from models.checkpoints import load_checkpoint
from models.seeds import z_from_seed
from studio.engine.selftest import make_random_model
from tests.models.network_scripts import SCRIPTS, load_script, render

SCRIPT = SCRIPTS / "grow_generator.py"
grow_generator = load_script("grow_generator")


def test_the_grown_file_draws_the_old_images_upsampled(tmp_path: Path):
    small = make_random_model(tmp_path / "small.safetensors", channel_base=256, channel_max=32)
    grown = tmp_path / "grown.safetensors"
    subprocess.run([sys.executable, str(SCRIPT), str(small), str(grown)], check=True, capture_output=True)
    before, after = load_checkpoint(small), load_checkpoint(grown)
    assert after.meta.resolution == 2 * before.meta.resolution
    assert after.D is None
    old, new = render(before.G_ema), render(after.G_ema)
    assert new.shape[-1] == 2 * old.shape[-1]
    upsampled = ops.upsample2d(old, before.G_ema.synthesis.b8.resample_filter)
    assert torch.allclose(new, upsampled, atol=1e-5)
    assert new.std() > 0.05, "the test would pass on blank images"


def test_the_new_block_learns(tmp_path: Path):
    G = load_checkpoint(make_random_model(tmp_path / "small.safetensors", channel_base=256, channel_max=32)).G_ema
    grown = grow_generator.grow(G)
    top = grown.synthesis.b64
    assert torch.equal(grow_generator.grow(G).synthesis.b64.conv0.weight, top.conv0.weight), "seeded"
    z = torch.cat([z_from_seed(s, G.z_dim) for s in range(2)])
    optimiser = torch.optim.SGD(grown.parameters(), lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        grown.render(z, "z").square().mean().backward()
        optimiser.step()
    assert top.torgb.weight.abs().sum() > 0, "toRGB moves off zero at the first step"
    assert top.conv1.weight.grad.abs().sum() > 0, "the new convolutions train once toRGB reads them"
