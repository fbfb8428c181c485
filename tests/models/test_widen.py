"""scripts/widen_generator.py: a generator grown wider draws what it drew before, and trains its new channels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoints import load_checkpoint
from models.seeds import z_from_seed
from studio.engine.selftest import make_random_model
from tests.models.network_scripts import SCRIPTS, load_script, render

SCRIPT = SCRIPTS / "widen_generator.py"
widen_generator = load_script("widen_generator")


def test_the_widened_file_renders_the_same_images_with_twice_the_channels(tmp_path: Path):
    narrow = make_random_model(tmp_path / "narrow.safetensors", channel_base=256, channel_max=32)
    wide = tmp_path / "wide.safetensors"
    command = [sys.executable, str(SCRIPT), str(narrow), str(wide), "--channel-base", "512", "--channel-max", "64"]
    subprocess.run(command, check=True, capture_output=True)
    before, after = load_checkpoint(narrow).G_ema, load_checkpoint(wide).G_ema
    assert [after.synthesis.channels[r] for r in (4, 8, 16, 32)] == [
        2 * before.synthesis.channels[r] for r in (4, 8, 16, 32)
    ]
    assert torch.allclose(render(before), render(after), atol=1e-5)
    assert sum(p.numel() for p in after.parameters()) > 2 * sum(p.numel() for p in before.parameters())


def test_the_added_channels_learn_and_narrowing_is_refused(tmp_path: Path):
    G = load_checkpoint(make_random_model(tmp_path / "narrow.safetensors", channel_base=256, channel_max=32)).G_ema
    wide = widen_generator.widen(G, 512, 64)
    assert torch.equal(widen_generator.widen(G, 512, 64).synthesis.b8.conv0.weight, wide.synthesis.b8.conv0.weight)
    z = torch.cat([z_from_seed(s, G.z_dim) for s in range(2)])
    wide.render(z, "z").square().mean().backward()
    grad = wide.synthesis.b8.conv1.weight.grad
    old_out, old_in = G.synthesis.b8.conv1.weight.shape[:2]
    assert grad[:old_out, old_in:].abs().sum() > 0, "trained channels' weights from the added ones get gradients"
    with pytest.raises(ValueError, match="narrower"):
        widen_generator.widen(wide, 256, 32)
