"""Fine-tuning StyleGAN3 models: NVIDIA's settings (no path length, no mixing, R1 per resolution, the blur of D's
images fading out), the layers' magnitude EMAs learning, checkpoints that reload as StyleGAN3 with the pixels
the run rendered, and an exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoints import load_checkpoint, save_checkpoint
from models.checkpoints.bundle import build_bundle
from models.seeds import z_from_seed
from tests.models import sg3_reference as ref
from tests.training.conftest import make_discs
from tests.training.test_loop import events_of, free_port, torchrun
from training import loop as loop_module
from training.config import PRESETS, TrainConfig
from training.loop import discriminator_for, train
from training.loss import blur_images, blur_sigma
from training.run_dir import RunDir, to_uint8


def sg3_base(path: Path, radial: bool = False, with_d: bool = False) -> Path:
    """A tiny 16 px StyleGAN3 (T, or R with `radial`) in our format: G_ema and G, and D with `with_d`."""
    G = ref.make_sg3(resolution=16, radial=radial, conv_kernel=1 if radial else 3, seed=4)
    D = discriminator_for(G) if with_d else None
    bundle = build_bundle(
        G_ema=G, G=G, D=D, augment_p=None, source_format="native", source_name=path.name, source_sha256="",
        training={}, device="cpu",
    )
    save_checkpoint(path, bundle)
    return path


@pytest.fixture(scope="module")
def discs16(tmp_path_factory) -> Path:
    return make_discs(tmp_path_factory.mktemp("discs16"), 24, size=16)


def sg3_config(data: Path, out: Path, base: Path, **overrides) -> TrainConfig:
    values = dict(
        data=str(data), out=str(out), base=str(base), kimg=0.048, batch=8, snap_kimg=0.016, sample_kimg=0.048,
        precision="fp32", sample_grid=(4, 2),
    )
    return TrainConfig(**{**values, **overrides})


def magnitudes(G) -> torch.Tensor:
    return torch.stack([getattr(G.synthesis, name).magnitude_ema for name in G.synthesis.layer_names])


def test_blur_follows_nvidias_schedule_and_kernel():
    assert blur_sigma(0, 10, 200) == 10
    assert blur_sigma(50_000, 10, 200) == pytest.approx(7.5)
    assert blur_sigma(200_000, 10, 200) == blur_sigma(300_000, 10, 200) == 0
    assert TrainConfig(data="d", out="o", batch=16).resolved_blur_fade_kimg() == 100  # batch · 200 / 32
    img = torch.zeros(1, 3, 21, 21)
    img[:, :, 10, 10] = 1
    assert torch.equal(blur_images(img, 0.2), img)  # under a third of a pixel: no taps beyond the centre
    blurred = blur_images(img, 2.0)
    assert blurred.shape == img.shape
    taps = 2.0 ** -((torch.arange(-6, 7) / 2.0) ** 2)  # NVIDIA's 2^-(x/σ)² over |x| ≤ 3σ
    kernel = taps.outer(taps) / taps.sum() ** 2
    torch.testing.assert_close(blurred[0, 0, 4:17, 4:17], kernel)
    assert blurred[0, 0].sum() == pytest.approx(1.0)


def test_d_for_a_stylegan3_is_as_wide_as_nvidias():
    G_t = ref.make_sg3(resolution=16)
    G_r = ref.make_sg3(resolution=16, radial=True, conv_kernel=1)
    D_t, D_r = discriminator_for(G_t), discriminator_for(G_r)
    assert D_t.init_kwargs["channel_base"] == 128 and D_r.init_kwargs["channel_base"] == 64  # R doubles G only
    assert D_t.img_resolution == 16 and D_t.init_kwargs["conv_clamp"] == 256


def test_fine_tuning_a_stylegan3(tmp_path, discs16, monkeypatch):
    base = sg3_base(tmp_path / "sg3.safetensors")
    sigmas: list[float] = []
    real_blur = loop_module.blur_images

    def recording_blur(img, sigma):
        sigmas.append(sigma)
        return real_blur(img, sigma)

    monkeypatch.setattr(loop_module, "blur_images", recording_blur)
    config = sg3_config(discs16, tmp_path / "run", base, blur_init_sigma=3.0, blur_fade_kimg=0.032)
    events: list[dict] = []
    result = train(config, events.append)
    assert result["status"] == "completed" and result["step"] == 6

    started = next(e for e in events if e["event"] == "started")
    assert (started["family"], started["pl_weight"], started["style_mixing"]) == ("stylegan3", 0, 0)
    assert started["r1_gamma"] == pytest.approx(0.001 * 16**2 / 8)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("no discriminator" in w for w in warnings)
    speed = next(e for e in events if e["event"] == "warning" and "cpu_images_per_s" in e)
    assert speed["cpu_images_per_s"] > 0 and "1 kimg takes about" in speed["message"]
    losses = [v for e in events if e["event"] == "progress" for v in e["losses"].values()]
    assert losses and all(math.isfinite(v) for v in losses)
    # Steps at 0, 8, 16 and 24 images blur (G's pass, D's fakes and reals, R1 at step 0), fading linearly.
    expected = {blur_sigma(n, 3.0, 0.032) for n in (0, 8, 16, 24)}
    assert set(sigmas) == expected and min(expected) > 0 and len(sigmas) >= 3 * 4

    start = load_checkpoint(base)
    trained = load_checkpoint(RunDir(config.out).latest_checkpoint().network)
    assert trained.meta.family == "stylegan3" and trained.D is not None
    assert type(trained.G_ema) is type(start.G_ema)
    moved = [not torch.equal(a, b) for a, b in zip(start.G.parameters(), trained.G.parameters(), strict=True)]
    assert sum(moved) > len(moved) // 2
    assert not torch.allclose(magnitudes(start.G), magnitudes(trained.G))  # G's forward updated them
    assert torch.equal(magnitudes(trained.G), magnitudes(trained.G_ema))  # G_ema copies G's buffers
    # The reloaded G_ema renders exactly the run's last sample grid, which its own G_ema rendered.
    grid = np.asarray(Image.open(RunDir(config.out).samples_path(48)).convert("RGB"))
    z = torch.cat([z_from_seed(s, 16) for s in range(8)])
    with torch.inference_mode():
        images = to_uint8(trained.G_ema.render(z))
        assert np.abs(images.astype(int) - to_uint8(start.G_ema.render(z))).max() > 8  # G_ema learnt too
    rows = [np.concatenate(list(images[r * 4 : (r + 1) * 4]), axis=1) for r in range(2)]
    np.testing.assert_array_equal(grid, np.concatenate(rows, axis=0))


@pytest.mark.slow
def test_a_resumed_stylegan3_run_matches_the_uninterrupted_run(tmp_path, discs16):
    """Config R with its own D, style mixing and blur on: every weight and magnitude EMA identical."""
    base = sg3_base(tmp_path / "sg3-r.safetensors", radial=True, with_d=True)
    options = dict(blur_init_sigma=2.0, blur_fade_kimg=0.04, style_mixing=0.5)
    whole = sg3_config(discs16, tmp_path / "whole", base, **options)
    train(whole)
    split = sg3_config(discs16, tmp_path / "split", base, **options)
    steps = {"n": 0, "started": False}

    def note(event: dict) -> None:
        steps["started"] |= event["event"] == "started"

    def stop_after_two_steps() -> bool:
        steps["n"] += steps["started"]
        return steps["n"] > 2

    assert train(split, note, abort_fn=stop_after_two_steps)["step"] == 2
    assert train(split, resume=True)["step"] == 6
    a = load_checkpoint(RunDir(whole.out).latest_checkpoint().network)
    b = load_checkpoint(RunDir(split.out).latest_checkpoint().network)
    assert a.meta.family == b.meta.family == "stylegan3"
    for name in ("G_ema", "G", "D"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key, x in sa.items():
            assert torch.equal(x, sb[key]), f"{name}.{key} differs after resume"


@pytest.mark.slow
def test_ddp_two_processes_fine_tune_a_stylegan3(tmp_path, discs16):
    """torchrun, two CPU processes over gloo: the magnitude EMAs update in each rank's forward (buffers are not
    broadcast) while the weights stay in step (the loop compares them at every checkpoint)."""
    base = sg3_base(tmp_path / "sg3.safetensors")
    out = tmp_path / "run"
    args = ["--data", str(discs16), "--base", str(base), "--out", str(out), "--kimg", "0.032", "--batch", "8",
            "--snap-kimg", "0.016", "--sample-kimg", "1", "--precision", "fp32", "--events", "jsonl"]
    done = torchrun(args, free_port(), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = events_of(done.stdout)
    started = next(e for e in events if e["event"] == "started")
    assert started["world_size"] == 2 and started["family"] == "stylegan3"
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "completed"
    assert load_checkpoint(RunDir(out).latest_checkpoint().network).meta.family == "stylegan3"


@pytest.mark.slow
def test_a_stylegan3_fine_tunes_with_the_projected_discriminator(tmp_path, discs16):
    """The projected D only needs G's images; the base's own D (none here) stays out of the run's model files."""
    base = sg3_base(tmp_path / "sg3.safetensors")
    config = sg3_config(discs16, tmp_path / "run", base, **{**PRESETS["finetune-fast"], "projected_size": 64},
                        kimg=0.016)
    events: list[dict] = []
    assert train(config, events.append)["status"] == "completed"
    started = next(e for e in events if e["event"] == "started")
    assert (started["family"], started["discriminator"], started["r1_gamma"]) == ("stylegan3", "projected", 0)
    trained = load_checkpoint(RunDir(config.out).latest_checkpoint().network)
    assert trained.meta.family == "stylegan3" and trained.D is None
    moved = [not torch.equal(a, b) for a, b in zip(load_checkpoint(base).G.parameters(), trained.G.parameters(),
                                                       strict=True)]
    assert sum(moved) > len(moved) // 2
