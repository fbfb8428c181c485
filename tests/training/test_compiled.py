"""G's synthesis and a projected D's feature network compiled by torch.compile for training: the same step, and
eager wherever it cannot or does not pay."""

from __future__ import annotations

import shutil

import pytest
import torch

import training.compiled as compiled_module
import training.loop as loop_module
from models.checkpoints import load_checkpoint
from models.device import COMPILE_ENV, CXX_COMPILERS
from models.stylegan2 import Generator
from tests.training.conftest import TINY, tiny_config
from training.compiled import (
    COMPILE_MIN_SECONDS,
    COMPILE_MIN_STEPS,
    compile_features,
    compile_synthesis,
    compile_unavailable,
    synthesis_compile_unavailable,
)
from training.config import PRESETS
from training.loop import train
from training.numerics import StepGuard
from training.projected import ProjectedDiscriminator, frozen_backbone, stage_features
from training.run_dir import RunDir

CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(not any(map(shutil.which, CXX_COMPILERS)), reason="no C++ compiler")


def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=TINY["z_dim"], c_dim=0, w_dim=TINY["w_dim"], img_resolution=16, img_channels=3,
        mapping_kwargs={"num_layers": TINY["map_layers"]},
        synthesis_kwargs={"channel_base": TINY["channel_base"], "channel_max": TINY["channel_max"]},
    )


def projected_config(data, out, **overrides):
    values = dict(kimg=0.032, precision="fp32", resolution=32, projected_size=64)
    return tiny_config(data, out, **{**values, **PRESETS["finetune-fast"], **overrides})


def final_weights(out) -> dict[str, torch.Tensor]:
    bundle = load_checkpoint(RunDir(out).latest_checkpoint().network)
    return {f"{name}.{k}": v for name in ("G_ema", "G") for k, v in getattr(bundle, name).state_dict().items()}


@needs_compiler
def test_compiled_synthesis_computes_the_same_images_and_gradients():
    """Compiled for the training step (then probed), G's synthesis gives eager's images and parameter gradients
    (fp32, noise held constant so that both draw none), and leaves no gradients or requires_grad behind."""
    G = tiny_generator()
    trainable = list(G.parameters())
    rng_before = torch.get_rng_state()
    compiled = compile_synthesis(G, 8, trainable, CPU, None, without_grad=True)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(p.grad is None and not p.requires_grad for p in G.parameters())
    ws = torch.randn([8, G.num_ws, G.w_dim], generator=torch.Generator().manual_seed(1))
    results = []
    for synthesis in (G.synthesis, compiled):
        G.requires_grad_(True)
        img = synthesis(ws, noise_mode="const")
        img.square().mean().backward()
        results.append((img.detach(), {n: p.grad.clone() for n, p in G.synthesis.named_parameters()}))
        G.zero_grad(set_to_none=True)
    (eager_img, eager_grads), (compiled_img, compiled_grads) = results
    torch.testing.assert_close(compiled_img, eager_img, atol=1e-5, rtol=1e-4)
    assert eager_grads.keys() == compiled_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, atol=1e-5 * float(grad.abs().max()) + 1e-8, rtol=1e-3)


@needs_compiler
@pytest.mark.parametrize("mapping_frozen", [False, True])
def test_the_probe_compiles_the_graph_of_g_step(mapping_frozen, monkeypatch):
    """The probe's pass is G's step: with the mapping network frozen (finetune-few) the latents need no
    gradient, and the step must reuse the probe's graph, not pay for a second compile."""
    G = tiny_generator()
    frozen = {id(p) for p in G.mapping.parameters()} if mapping_frozen else set()
    trainable = [p for p in G.parameters() if id(p) not in frozen]
    compiled = compile_synthesis(G, 8, trainable, CPU, None, without_grad=False)
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    for p in trainable:
        p.requires_grad_(True)
    z = torch.randn([8, G.z_dim])
    compiled(G.mapping(z, None), noise_mode="random").square().mean().backward()
    assert all(p.grad is not None for p in trainable)
    assert all(p.grad is None for p in G.mapping.parameters()) == mapping_frozen


@needs_compiler
def test_a_run_compiles_g_before_its_first_step_and_trains(tmp_path, discs_folder, monkeypatch):
    monkeypatch.setenv(COMPILE_ENV, "1")  # a tiny run is too short to compile by default
    events: list[dict] = []
    result = train(tiny_config(discs_folder, tmp_path / "run", kimg=0.032, precision="fp32"), events.append)
    kinds = [e["event"] for e in events]
    compile_events = [e for e in events if e["event"] == "compile"]
    assert [e["status"] for e in compile_events] == ["compiling", "compiled"], compile_events
    assert compile_events[-1]["seconds"] > 0
    assert kinds.index("compile") < kinds.index("progress")
    assert result["status"] == "completed"
    assert all(torch.isfinite(v).all() for v in final_weights(tmp_path / "run").values())


@needs_compiler
def test_compiled_feature_network_computes_the_same_features():
    """The projected D's frozen network compiled for its passes without gradients (its weights folded in as
    constants) gives eager's features, and D's logits through it are eager's."""
    D = ProjectedDiscriminator(64, seed=1, norm="batch").eval()  # eval: spectral norm's vectors stay put
    compiled = compile_features(D, 4, CPU, None)
    img = torch.rand([4, 3, 32, 32], generator=torch.Generator().manual_seed(2)) * 2 - 1
    x = torch.nn.functional.interpolate(img, size=(64, 64), mode="bilinear")
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        eager_features, compiled_features = stage_features(frozen_backbone(CPU), x), compiled(x)
        eager_logits = D(img)
        D.compiled_features[None] = compiled  # fp32: no autocast
        compiled_logits = D(img)
    for want, got in zip(eager_features, compiled_features, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4 * float(want.abs().max()), rtol=1e-4)
    torch.testing.assert_close(compiled_logits, eager_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("discriminator", ["stylegan", "projected"])
def test_the_probe_leaves_the_run_as_an_eager_run_would_be(tmp_path, discs_folder, monkeypatch, discriminator):
    """With torch.compile standing in as the identity, the probes run G's step and the projected D's feature
    network on throwaway batches, and the run trains through the probed functions: to the bit the weights of a
    run that never compiled (the probes leave the random stream, gradients and requires_grad as they were)."""
    config = tiny_config if discriminator == "stylegan" else projected_config
    train(config(discs_folder, tmp_path / "eager", style_mixing=0.9))
    monkeypatch.setenv(COMPILE_ENV, "1")
    monkeypatch.setattr(compiled_module.torch, "compile", lambda fn, **kwargs: fn)
    events: list[dict] = []
    train(config(discs_folder, tmp_path / "probed", style_mixing=0.9), events.append)
    compile_events = [e for e in events if e["event"] == "compile"]
    assert [e["status"] for e in compile_events] == ["compiling", "compiled"]
    compiled = "G and D's feature network" if discriminator == "projected" else "G"
    assert compile_events[-1]["message"].startswith(f"{compiled} compiled in ")
    eager, probed = final_weights(tmp_path / "eager"), final_weights(tmp_path / "probed")
    assert eager.keys() == probed.keys()
    for key, value in eager.items():
        assert torch.equal(value, probed[key]), f"{key} differs"


def test_a_failed_compile_says_why_and_the_run_trains_eagerly(tmp_path, discs_folder, monkeypatch):
    def unusable(fn, **kwargs):
        def raising(*args, **kw):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\nmore detail")
        return raising

    monkeypatch.setenv(COMPILE_ENV, "1")
    monkeypatch.setattr(compiled_module.torch, "compile", unusable)
    events: list[dict] = []
    result = train(tiny_config(discs_folder, tmp_path / "run", kimg=0.016), events.append)
    compile_events = [e for e in events if e["event"] == "compile"]
    assert [e["status"] for e in compile_events] == ["compiling", "eager"]
    assert "compiling failed (RuntimeError: InvalidCxxCompiler: no working C++ compiler found)" in (
        compile_events[-1]["message"]
    )
    assert result["status"] == "completed"


def test_a_failed_feature_network_compile_leaves_g_compiled(tmp_path, discs_folder, monkeypatch):
    def failing(*args):
        raise RuntimeError("CppCompileError: C++ compile error\nmore detail")

    monkeypatch.setenv(COMPILE_ENV, "1")
    monkeypatch.setattr(compiled_module.torch, "compile", lambda fn, **kwargs: fn)
    monkeypatch.setattr(loop_module, "compile_features", failing)
    events: list[dict] = []
    result = train(projected_config(discs_folder, tmp_path / "run", kimg=0.016), events.append)
    compile_events = [e for e in events if e["event"] == "compile"]
    assert [e["status"] for e in compile_events] == ["compiling", "compiled"]
    message = compile_events[-1]["message"]
    assert message.startswith("G compiled in ")
    assert message.endswith(
        "D's feature network trains without torch.compile: compiling failed (RuntimeError: CppCompileError: C++ "
        "compile error)"
    )
    assert result["status"] == "completed"


def test_a_fall_back_to_fp32_leaves_the_16_bit_compiled_feature_network(tmp_path, discs_folder, monkeypatch):
    """The feature network is compiled around its bf16 weights: once a run falls back to fp32, D's step runs
    the fp32 network eagerly instead."""
    end_step = StepGuard.end_step

    def falling_back(self, losses):
        report = end_step(self, losses)
        if self.dtype is None:
            return report
        self._fall_back()
        return {"fallback": "fp32", "message": "test: the run continues in fp32"}

    monkeypatch.setenv(COMPILE_ENV, "1")
    monkeypatch.setattr(compiled_module.torch, "compile", lambda fn, **kwargs: fn)
    monkeypatch.setattr(StepGuard, "end_step", falling_back)
    events: list[dict] = []
    result = train(projected_config(discs_folder, tmp_path / "run", precision="bf16"), events.append)
    assert any(e.get("fallback") == "fp32" for e in events if e["event"] == "warning")
    assert result["status"] == "completed"


def test_where_g_trains_eagerly(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    long_run = dict(world=1, family="stylegan2", steps_left=COMPILE_MIN_STEPS, seconds=None)
    assert synthesis_compile_unavailable(CPU, **long_run) is None
    budget_run = {**long_run, "steps_left": None, "seconds": COMPILE_MIN_SECONDS}
    assert synthesis_compile_unavailable(CPU, **budget_run) is None
    cases = {
        "too short": dict(steps_left=COMPILE_MIN_STEPS - 1),
        "too short ": dict(steps_left=None, seconds=COMPILE_MIN_SECONDS - 1),
        "StyleGAN2 generators, not stylegan3": dict(family="stylegan3"),
        "one process": dict(world=2),
    }
    for expected, change in cases.items():
        assert expected.strip() in synthesis_compile_unavailable(CPU, **{**long_run, **change})
    assert "not cuda" in synthesis_compile_unavailable(torch.device("cuda"), **long_run)
    monkeypatch.setenv(COMPILE_ENV, "1")  # asked for: any length, any device
    assert synthesis_compile_unavailable(torch.device("cuda"), **{**long_run, "steps_left": 1}) is None
    monkeypatch.setenv(COMPILE_ENV, "0")
    assert "turned off" in synthesis_compile_unavailable(CPU, **long_run)
    monkeypatch.delenv(COMPILE_ENV)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "no C++ compiler" in synthesis_compile_unavailable(CPU, **long_run)


def test_a_projected_d_compiles_its_feature_network_whatever_the_generator(monkeypatch):
    """The feature network's compile asks what G's does, save G's family: a StyleGAN3's run compiles it."""
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    long_run = dict(world=1, steps_left=COMPILE_MIN_STEPS, seconds=None)
    assert "not stylegan3" in synthesis_compile_unavailable(CPU, family="stylegan3", **long_run)
    assert compile_unavailable(CPU, **long_run) is None
    assert "one process" in compile_unavailable(CPU, **{**long_run, "world": 2})
    assert "too short" in compile_unavailable(CPU, **{**long_run, "steps_left": 1})
