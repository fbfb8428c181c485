"""Projecting images into real models: recovery of a generated image, cancelling, progress, the state it gives,
the targets it accepts, and the `project` and `blend` commands."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoints import load_checkpoint
from studio.cli import main
from studio.engine.imaging import to_uint8
from studio.engine.paths import bundled_model_path
from studio.engine.projection import (
    PerceptualDistance,
    ProjectionOptions,
    default_starts,
    distances,
    load_target,
    project,
    psnr,
    seed_ws,
    starting_points,
    w_statistics,
)
from studio.engine.recipe import read_recipe
from studio.engine.session import Session
from studio.engine.state import RenderState
from tests.studio.engine_support import model_file  # noqa: F401


def image_of(G, ws: torch.Tensor) -> np.ndarray:
    """The image `G` makes from one w+ [1, num_ws, w_dim] with its constant noise, as the studio renders."""
    with torch.no_grad():
        return to_uint8(G.synthesis(ws, noise_mode="const"))[0]


def made(G, seed: int) -> np.ndarray:
    """The image `G` makes from `seed`, as the studio renders seeds."""
    return image_of(G, seed_ws(G, [seed]))


@pytest.fixture(scope="module")
def G(model_file: Path):
    return load_checkpoint(model_file, "cpu").G_ema


def test_projection_recovers_an_image_the_bundled_model_made_from_a_known_seed():
    G = load_checkpoint(bundled_model_path(), "cpu").G_ema
    target = made(G, 1)
    result = project(G, target, ProjectionOptions(steps=100))
    assert result.psnr >= 25, f"PSNR {result.psnr:.1f} dB"
    assert psnr(result.image, target) == result.psnr and not result.cancelled


def test_every_start_is_optimised_on_its_own_and_the_nearest_wins(G):
    options = ProjectionOptions(steps=1, starts=4, seed=7, initial_noise_factor=0)
    w_avg, _ = w_statistics(G)
    starts = starting_points(G, w_avg, options)
    assert starts.shape == (4, G.w_dim) and torch.equal(starts[0], w_avg[0])
    assert all(not torch.allclose(starts[i], starts[j]) for i in range(4) for j in range(i))
    target = image_of(G, G.to_ws(starts[2:3]))  # the third start's image: only that start matches it at once
    result = project(G, target, options)
    # One step without latent noise measures the starts themselves (a loss belongs to the latent before the
    # step's update).
    assert np.array_equal(result.image, target) and result.psnr == float("inf")
    assert np.allclose(result.ws, G.to_ws(starts[2:3])[0].numpy())
    alone = project(G, target, ProjectionOptions(steps=1, starts=1, seed=7, initial_noise_factor=0))
    assert alone.psnr < 40 and np.allclose(alone.ws, G.to_ws(w_avg)[0].numpy())
    with pytest.raises(ValueError, match="at least one starting point"):
        ProjectionOptions(starts=0)


def test_several_starts_where_a_batch_of_them_is_cheap_one_on_a_cpu_at_large_sizes():
    cpu, gpu, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    assert default_starts(cpu, 32) == default_starts(cpu, 64) == ProjectionOptions.starts == 4
    assert default_starts(cpu, 128) == default_starts(cpu, 1024) == 1
    assert default_starts(gpu, 1024) == default_starts(mps, 256) == 4


def test_projection_gets_nearer_than_the_mean_image_and_reports_each_step(G):
    target = made(G, 3)
    reports = []
    result = project(G, target, ProjectionOptions(steps=12, w_plus_share=0.5), progress=reports.append)
    assert [r.step for r in reports] == list(range(1, 13))
    assert [r.phase for r in reports] == ["w"] * 6 + ["w+"] * 6
    assert all(r.steps_per_s > 0 for r in reports) and reports[-1].eta_s == 0 < reports[0].eta_s
    assert reports[0].image is not None and reports[-1].image is not None  # previews at the first and last
    perceptual = PerceptualDistance(torch.device("cpu"), G.img_resolution)
    w_avg, _ = w_statistics(G)
    mean_p, mean_x = distances(G, G.to_ws(w_avg), target, perceptual)
    assert result.perceptual < mean_p[0] and result.pixel < mean_x[0]
    assert result.ws.shape == (G.num_ws, G.w_dim) and result.ws.dtype == np.float32
    assert not np.allclose(result.ws[0], result.ws[-1])  # the w+ phase gave the layers their own w


def test_cancel_stops_at_once_and_keeps_the_best_latent(G):
    steps = []

    def cancel() -> bool:
        return len(steps) >= 3

    result = project(G, made(G, 4), ProjectionOptions(steps=500), progress=steps.append, cancel=cancel)
    assert result.cancelled and result.steps_done == 3
    assert np.array_equal(image_of(G, torch.as_tensor(result.ws)[None]), result.image)
    assert project(G, made(G, 4), cancel=lambda: True).steps_done == 0  # w_avg, the starting point


def test_the_result_is_a_state_every_session_renders_as_projected(G, model_file: Path, tmp_path: Path):
    result = project(G, made(G, 5), ProjectionOptions(steps=4))
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    state = result.state(session.model_id, RenderState(model_id=session.model_id, seed=9, psi=0.5))
    assert state.seed == 9 and state.psi == 1 and state.noise_mode == "const"
    # The session draws with the display path, the projection with the autograd one: on some CPUs (AVX2 only)
    # their convolution kernels round differently, so a channel may land one level apart.
    off = np.abs(session.render(state).astype(int) - result.image.astype(int))
    assert off.max() <= 1 and np.count_nonzero(off) <= off.size // 100
    assert RenderState.from_json(state.to_json()) == state  # it travels in recipes


def test_targets_of_any_mode_and_shape_are_fitted(tmp_path: Path):
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :20, 3] = 255  # left half opaque red, right half transparent (white once composited)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "wide.png")
    cropped = load_target(tmp_path / "wide.png", 16, "crop")
    padded = load_target(tmp_path / "wide.png", 16, "pad")
    stretched = load_target(tmp_path / "wide.png", 16, "stretch")
    assert cropped.shape == padded.shape == stretched.shape == (16, 16, 3) and cropped.dtype == np.uint8
    assert tuple(stretched[8, 1]) == (200, 0, 0) and tuple(stretched[8, 14]) == (255, 255, 255)
    assert not np.array_equal(cropped, padded)
    Image.fromarray(np.full((30, 30), 77, np.uint8), "L").save(tmp_path / "grey.jpg")
    assert load_target(tmp_path / "grey.jpg", 16).shape == (16, 16, 3)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png cannot be projected"):
        load_target(tmp_path / "notes.png", 16)
    with pytest.raises(ValueError, match="fit must be one of"):
        load_target(tmp_path / "grey.jpg", 16, "zoom")


def test_the_project_command_writes_the_reconstruction_its_recipe_and_the_latent(
    G, model_file: Path, tmp_path: Path, capsys
):
    Image.fromarray(made(G, 6)).save(tmp_path / "mine.png")
    out = tmp_path / "out"
    args = ["project", "--model", str(model_file), "--image", str(tmp_path / "mine.png"), "--steps", "6"]
    assert main([*args, "--w-plus", "--starts", "2", "--device", "cpu", "--out", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["steps"] == 6 and line["perceptual"] > 0 and line["pixel"] > 0
    ws = np.load(out / "projected_w.npy")
    assert ws.shape == (G.num_ws, G.w_dim)
    recipe = read_recipe(out / "projected.png")
    assert recipe["projection"]["file"] == "mine.png" and recipe["projection"]["w_plus"] is True
    assert recipe["projection"]["starts"] == 2
    assert recipe["state"]["w"] == pytest.approx(ws.reshape(-1).tolist())
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    rendered = session.render(RenderState.from_json(recipe["state"])).astype(int)
    off = np.abs(rendered - np.asarray(Image.open(out / "projected.png")).astype(int))
    assert off.max() <= 1 and np.count_nonzero(off) <= off.size // 100, (off.max(), np.count_nonzero(off))
    assert main(["project", "--model", str(model_file), "--image", str(tmp_path), "--out", str(out)]) == 2


def test_the_blend_command_writes_a_blended_model(model_file: Path, tmp_path: Path, capsys):
    from studio.engine.selftest import make_random_model

    other = make_random_model(tmp_path / "other.safetensors", seed=1)
    out = tmp_path / "c.safetensors"
    assert main(["blend", str(model_file), str(other), "--at", "16", "--width", "1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    spec = load_checkpoint(out, "cpu").meta.training["blend"]
    assert (spec["at"], spec["width"], spec["b"]["name"]) == (16, 1.0, "other")
    small = make_random_model(tmp_path / "small.safetensors", resolution=16)
    assert main(["blend", str(model_file), str(small), "--at", "8", "--out", str(tmp_path / "d.safetensors")]) == 2
    assert "resolution 32 vs 16" in capsys.readouterr().err
