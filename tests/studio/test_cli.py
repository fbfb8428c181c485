"""`gan-studio` subcommands on real files: info, generate (PNG with its recipe + raw .npy), convert from an NVIDIA
pickle, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoints import load_checkpoint
from models.seeds import z_from_seed
from studio.cli import main
from studio.engine.library import ModelLibrary
from studio.engine.recipe import read_recipe
from studio.engine.session import Session
from studio.engine.state import RenderState
from tests.models.pickle_fixtures import (
    make_discriminator,
    make_generator,
    nvidia_snapshot,
    scores,
    tensorflow_pickle,
    write_pickle,
)

REPO = Path(__file__).resolve().parents[2]


def test_info_prints_metadata(tiny_model, capsys):
    assert main(["info", str(tiny_model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["resolution"] == 32 and info["family"] == "stylegan2" and info["num_ws"] == 8
    assert info["source_format"] == "native" and info["has_G"] is False


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_generate_writes_one_png_per_seed_and_raw_output(tiny_model, tmp_path, studio_home, precision):
    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_model), "--seeds", "0-2,7", "--trunc", "0.7", "--save-npy"]
    assert main([*args, "--device", "cpu", "--precision", precision, "--outdir", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    G = load_checkpoint(tiny_model).G_ema
    with torch.inference_mode():
        fp32 = G.render(z_from_seed(7, G.z_dim), psi=0.7, noise_mode="const").numpy()
    raw = np.load(out / "seed0007.npy")
    assert raw.shape == (1, 3, 32, 32) and raw.dtype == np.float32
    if precision == "fp32":
        # NVIDIA's output for the seed, to fp32 rounding: the display path orders the sums differently
        assert np.allclose(raw, fp32, rtol=0, atol=1e-4)
    else:
        assert 0 < np.abs(raw - fp32).max() <= 0.05 * np.abs(fp32).max()  # bf16 really ran, and stays close
    png = np.asarray(Image.open(out / "seed0007.png"))
    assert png.shape == (32, 32, 3)
    assert np.array_equal(png, (raw[0].transpose(1, 2, 0) * 127.5 + 128).clip(0, 255).astype(np.uint8))


def test_generated_png_carries_the_recipe_that_restores_it(tiny_model, tmp_path, studio_home):
    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_model), "--seeds", "5", "--trunc", "0.6", "--trunc-cutoff", "4"]
    assert main([*args, "--noise-mode", "random", "--outdir", str(out)]) == 0
    png = out / "seed0005.png"
    recipe = read_recipe(png)
    state = RenderState.from_dict(recipe["state"])
    assert (state.seed, state.psi, state.cutoff, state.noise_mode, state.w) == (5, 0.6, 4, "random", None)
    entry = ModelLibrary(studio_home / "library").import_model(tiny_model)
    assert (recipe["model_id"], recipe["model_hash"], recipe["model_name"]) == (entry.id, entry.model_hash, "tiny")
    assert np.array_equal(np.asarray(Image.open(png)), Session(entry).render(state))


def test_generated_png_dropped_on_the_window_restores_its_image(qtbot, window, tmp_path):
    from tests.studio.ui_support import canvas, drop, settle

    out = tmp_path / "out"
    model = window.controller.entry.path  # the library's copy of the tiny model
    assert main(["generate", "--model", str(model), "--seeds", "9", "--trunc", "0.5", "--outdir", str(out)]) == 0
    generated = np.asarray(Image.open(out / "seed0009.png"))
    assert not np.array_equal(canvas(window), generated)
    drop(window, out / "seed0009.png")
    settle(qtbot, window)
    state = window.controller.state
    assert (state.seed, state.psi) == (9, 0.5) and np.array_equal(canvas(window), generated)


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


def test_tensorflow_pickle_through_info_generate_and_convert(tmp_path, studio_home, capsys):
    G, Gs, D = make_generator(seed=2), make_generator(seed=0), make_discriminator()
    marker = tmp_path / "marker"
    pkl = write_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", tensorflow_pickle(G, D, Gs, marker), protocol=3)
    assert main(["info", str(pkl)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["source_format"], info["resolution"], info["has_G"], info["has_D"]) == (
        "tensorflow-pkl", 16, True, True,
    )

    out = tmp_path / "out"
    args = ["generate", "--model", str(pkl), "--seeds", "3", "--save-npy", "--device", "cpu", "--precision", "fp32"]
    assert main([*args, "--outdir", str(out)]) == 0
    with torch.inference_mode():
        expected = Gs.eval().render(z_from_seed(3, Gs.z_dim), noise_mode="const").numpy()
    assert np.allclose(np.load(out / "seed0003.npy"), expected, rtol=0, atol=1e-4)
    assert read_recipe(out / "seed0003.png")["model_name"] == "stylegan2-tiny-config-f"

    converted_path = tmp_path / "tiny.safetensors"
    assert main(["convert", str(pkl), str(converted_path)]) == 0
    converted = load_checkpoint(converted_path)
    assert converted.meta.source_format == "tensorflow-pkl" and converted.meta.source_name == pkl.name
    z = torch.randn(2, Gs.z_dim)
    with torch.inference_mode():
        assert torch.equal(converted.G_ema.render(z), Gs.render(z))
        assert torch.equal(converted.G.render(z), G.eval().render(z))
    assert torch.equal(scores(converted.D), scores(D))
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


@pytest.mark.parametrize("below", [False, True])
def test_outdir_naming_a_file_is_a_usage_error(tiny_model, tmp_path, capsys, below):
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    outdir = taken / "pngs" if below else taken
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--model", str(tiny_model), "--seeds", "1", "--outdir", str(outdir)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: gan-studio generate")
    assert f"error: argument --outdir: {taken} is a file, not a folder" in err and "Errno" not in err
    assert taken.read_text() == "keep me"


def test_the_app_exits_with_its_status_while_the_display_path_compiles():
    """A compile still running in the background when the window has closed would abort the interpreter's
    shutdown (status 134): the process ends with the app's own status instead, its output flushed, at once.
    Without one, the interpreter shuts down as usual (its exit handlers run)."""

    def exit_with(compiling: bool) -> subprocess.CompletedProcess:
        child = (
            "import atexit, sys, threading, time\n"
            "from studio.cli import exit_past_compile\n"
            "from studio.engine.session import COMPILE_THREAD\n"
            f"if {compiling}:\n"
            "    threading.Thread(target=time.sleep, args=(600,), name=COMPILE_THREAD, daemon=True).start()\n"
            "atexit.register(print, 'shut down')\n"
            "print('window closed')\n"
            "sys.exit(exit_past_compile(3))\n"
        )
        return subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=REPO, timeout=120)

    compiling = exit_with(compiling=True)
    assert (compiling.returncode, compiling.stdout) == (3, "window closed\n")
    idle = exit_with(compiling=False)
    assert (idle.returncode, idle.stdout) == (3, "window closed\nshut down\n")
