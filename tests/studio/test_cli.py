"""`gan-studio` subcommands on real files: info, generate (PNG + raw .npy), convert from an NVIDIA pickle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.checkpoints import load_checkpoint
from models.seeds import z_from_seed
from studio.cli import main
from tests.models.pickle_fixtures import make_discriminator, make_generator, nvidia_snapshot, write_pickle

REPO = Path(__file__).resolve().parents[2]


def test_info_prints_metadata(tiny_model, capsys):
    assert main(["info", str(tiny_model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["resolution"] == 32 and info["family"] == "stylegan2" and info["num_ws"] == 8
    assert info["source_format"] == "native" and info["has_G"] is False


def test_generate_writes_one_png_per_seed_and_raw_output(tiny_model, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_model),
                "--seeds",
                "0-2,7",
                "--trunc",
                "0.7",
                "--save-npy",
                "--outdir",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.glob("*.png")) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    G = load_checkpoint(tiny_model).G_ema
    with torch.inference_mode():
        expected = G.render(z_from_seed(7, G.z_dim), psi=0.7, noise_mode="const").numpy()
    raw = np.load(out / "seed0007.npy")
    assert raw.shape == (1, 3, 32, 32) and np.array_equal(raw, expected)
    png = np.asarray(Image.open(out / "seed0007.png"))
    assert png.shape == (32, 32, 3)
    assert np.array_equal(png, (raw[0].transpose(1, 2, 0) * 127.5 + 128).clip(0, 255).astype(np.uint8))


def test_convert_nvidia_pickle_to_our_format(tmp_path):
    G = make_generator()
    D = make_discriminator()
    marker = tmp_path / "marker"
    pkl = write_pickle(
        tmp_path / "net.pkl", nvidia_snapshot(G, G, D, schema="stylegan2-ada", conv_clamp=None, marker=marker)
    )
    out = tmp_path / "net.safetensors"
    assert main(["convert", str(pkl), str(out)]) == 0
    converted = load_checkpoint(out)
    z = torch.randn(2, G.z_dim)
    with torch.inference_mode():
        assert torch.equal(converted.G_ema.render(z), G.eval().render(z))
    assert converted.D is not None and converted.meta.source_name == "net.pkl"
    assert not marker.exists()


def test_refused_file_gives_a_clear_error_and_exit_code(tmp_path):
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"\x80\x04not really a pickle")
    done = subprocess.run(
        [sys.executable, "-m", "studio", "info", str(bad)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 2
    assert "broken.pkl" in done.stderr and "Traceback" not in done.stderr


def test_metrics_prints_fd_effnet_kid_precision_recall_c2st(tiny_model, tmp_path, capsys):
    from tests.training.conftest import make_discs

    data = make_discs(tmp_path / "discs", 12, size=32)
    assert main(["metrics", "--model", str(tiny_model), "--data", str(data), "--n", "12", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_real"] == result["n_fake"] == 12
    assert result["fd_effnet"] > 0 and 0 <= result["precision"] <= 1 and 0 <= result["recall"] <= 1
    assert 0 <= result["c2st"] <= 1 and result["c2st_n"] == 12
    assert "not Inception FID" in result["metric_features"]
