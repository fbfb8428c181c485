"""fp16 training made safe, on the CPU with fp16 forced (the app picks it on MPS and on CUDA GPUs without bf16):
NVIDIA's safeguards keep a model whose activations overflow fp16 finite, a step with NaN/inf values is skipped
and announced with counts, and a run that keeps producing them falls back to fp32, saying so."""

from __future__ import annotations

import json
import math

import pytest
import torch

import training.loop
from models.checkpoints import load_checkpoint, save_checkpoint
from models.checkpoints.bundle import build_bundle
from models.stylegan2 import Generator
from tests.training.conftest import TINY, tiny_config
from training.loop import train
from training.numerics import FALLBACK_LIMIT, StepGuard
from training.run_dir import RunDir


@pytest.fixture
def fp16(monkeypatch):
    """fp16 autocast on the CPU, which `select_precision` refuses to artists (emulated there: slow)."""
    monkeypatch.setattr(training.loop, "select_precision", lambda device, preference: torch.float16)


def _tiny_generator() -> Generator:
    torch.manual_seed(1)
    return Generator(
        z_dim=TINY["z_dim"], c_dim=0, w_dim=TINY["w_dim"], img_resolution=TINY["resolution"], img_channels=3,
        mapping_kwargs={"num_layers": TINY["map_layers"]},
        synthesis_kwargs={"channel_base": TINY["channel_base"], "channel_max": TINY["channel_max"]},
    ).eval()


def _save(G: Generator, path):
    bundle = build_bundle(
        G_ema=G, G=None, D=None, augment_p=None, source_format="native", source_name=path.name, source_sha256="",
        training={}, device="cpu",
    )
    save_checkpoint(path, bundle)
    return path


def _render(G: Generator, dtype: torch.dtype | None) -> torch.Tensor:
    z = torch.randn([4, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float16, enabled=dtype is not None):
        return G.render(z, noise_mode="const").float()


def _events(config, **kwargs) -> list[dict]:
    events: list[dict] = []
    train(config, events.append, **kwargs)
    return events


def _warnings(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "warning" and "nonfinite_grads" in e]


def test_fp16_scratch_runs_clamp_activations_at_256_and_train_finite(tmp_path, discs_folder, fp16):
    config = tiny_config(discs_folder, tmp_path / "run", kimg=0.016)
    events = _events(config)
    assert next(e for e in events if e["event"] == "started")["device"] == "CPU · fp16"
    assert json.loads(RunDir(config.out).config_path.read_text())["conv_clamp"] == 256  # a resume builds the same
    bundle = load_checkpoint(RunDir(config.out).latest_checkpoint().network)
    assert bundle.G.synthesis.b16.conv1.conv_clamp == 256 and bundle.D.b16.conv1.conv_clamp == 256
    losses = [v for e in events if e["event"] == "progress" for v in e["losses"].values()]
    assert losses and all(math.isfinite(v) for v in losses)
    assert not any(w.get("fallback") for w in _warnings(events))


def test_fp32_scratch_runs_keep_no_clamp(tmp_path, discs_folder):
    config = tiny_config(discs_folder, tmp_path / "run", kimg=0.008, precision="fp32")
    train(config)
    assert load_checkpoint(RunDir(config.out).latest_checkpoint().network).G.synthesis.b16.conv1.conv_clamp is None


def test_fp16_fine_tunes_a_model_whose_unguarded_activations_overflow(tmp_path, discs_folder, fp16):
    """Demodulated layers' weights ×1000 and styles ×100: the same pixels in fp32 (demodulation divides the
    scale out), but the unguarded fp16 convolutions overflow to inf and the losses turn NaN."""
    G = _tiny_generator()
    reference = _render(G, None)
    with torch.no_grad():
        for name, module in G.synthesis.named_modules():
            if hasattr(module, "affine") and not name.endswith("torgb"):
                module.weight.mul_(1000)
                module.affine.weight.mul_(100)
                module.affine.bias.mul_(100)
    torch.testing.assert_close(_render(G, None), reference, rtol=1e-3, atol=1e-3)
    rendered = _render(G, torch.float16)
    assert torch.isfinite(rendered).all()
    torch.testing.assert_close(rendered, reference, rtol=0.05, atol=0.05)

    config = tiny_config(discs_folder, tmp_path / "run", base=str(_save(G, tmp_path / "scaled.safetensors")),
                         kimg=0.024, resolution=None, progress_interval_s=0)
    events = _events(config)
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) == 3 and all(math.isfinite(v) for e in progress for v in e["losses"].values())
    assert not any(w["nonfinite_losses"] or w.get("fallback") for w in _warnings(events))


def test_a_run_that_keeps_overflowing_fp16_falls_back_to_fp32_and_says_so(tmp_path, discs_folder, fp16):
    """toRGB weights ×1e6: no safeguard reaches them (toRGB is not demodulated), and fp16 cannot even hold
    them. Every fp16 step is NaN; each is announced with its counts, and the run then continues in fp32."""
    G = _tiny_generator()
    with torch.no_grad():
        for name, module in G.synthesis.named_modules():
            if name.endswith("torgb"):
                module.weight.mul_(1e6)
    config = tiny_config(discs_folder, tmp_path / "run", base=str(_save(G, tmp_path / "huge.safetensors")),
                         kimg=0.064, resolution=None, progress_interval_s=0)
    events = _events(config)
    warnings = _warnings(events)
    assert len(warnings) == FALLBACK_LIMIT and [w["step"] for w in warnings] == list(range(FALLBACK_LIMIT))
    for w in warnings:
        assert w["nonfinite_grads"]["G"] > 0 and w["nonfinite_grads"]["D"] > 0 and "G" in w["nonfinite_losses"]
        assert w["precision"] == "fp16" and "skipped" in w["message"]
    assert warnings[-1]["fallback"] == "fp32" and "continues in fp32" in warnings[-1]["message"]
    progress = [e for e in events if e["event"] == "progress" and e["step"] > FALLBACK_LIMIT]
    assert progress and all(math.isfinite(v) for e in progress for v in e["losses"].values())
    logged = [json.loads(line) for line in RunDir(config.out).stats_path.open()]
    assert sum("nonfinite_grads" in e for e in logged) == FALLBACK_LIMIT  # the run folder keeps the record
    # A resume stays in fp32, and says so.
    state = torch.load(RunDir(config.out).latest_checkpoint().state, weights_only=True)
    assert state["numerics"]["fp32_fallback"]
    longer = tiny_config(discs_folder, tmp_path / "run", base=config.base, kimg=0.072, resolution=None)
    resumed = _events(longer, resume=True)
    assert any("continues in fp32" in e.get("message", "") for e in resumed if e["event"] == "warning")
    assert not _warnings(resumed)


def _nan_grad_step(guard: StepGuard, param: torch.nn.Parameter, opt: torch.optim.Optimizer, loss_scale: float):
    opt.zero_grad()
    guard.backward(param.sum() * loss_scale)
    guard.step("G", opt)
    return guard.end_step({"G": float(param.detach().sum() * loss_scale)})


def test_a_non_finite_step_is_skipped_and_reported_never_zeroed_in_silence():
    param = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([param], lr=0.1)
    guard = StepGuard(torch.device("cpu"), None)
    report = _nan_grad_step(guard, param, opt, float("inf"))  # inf loss: inf and NaN gradients
    assert report["nonfinite_grads"] == {"G": 4} and report["nonfinite_losses"] == ["G"]
    assert torch.equal(param.detach(), torch.ones(4))  # not updated (nan_to_num used to apply ±1e5 gradients)
    assert _nan_grad_step(guard, param, opt, 1.0) is None and not torch.equal(param.detach(), torch.ones(4))
    for _ in range(FALLBACK_LIMIT):  # fp32 has nowhere to fall back to: it keeps reporting
        assert "fallback" not in _nan_grad_step(guard, param, opt, float("inf"))


def test_the_loss_scaler_settling_does_not_count_against_fp16():
    """Scaled gradients that overflow while the loss is finite are the GradScaler finding its scale: skipped,
    reported, scale halved, and no step towards the fall-back."""
    param = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([param], lr=0.1)
    guard = StepGuard(torch.device("cpu"), torch.float16)
    for i in range(FALLBACK_LIMIT + 2):
        report = _nan_grad_step(guard, param, opt, 1e36)  # finite loss; ×65536 overflows fp32
        assert report is not None and "settling" in report["message"] and "fallback" not in report
        assert report["loss_scale"] == 65536 / 2 ** (i + 1)
    assert guard.dtype is torch.float16
