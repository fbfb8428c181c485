"""The projected discriminator: its frozen features, fixed projections and trainable heads, in real training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import training.loop as loop_module
from models.checkpoints import load_checkpoint
from tests.training.conftest import tiny_config
from training.cli import build_parser, config_from_args
from training.config import PRESETS, ConfigError, TrainConfig
from training.loop import TrainingError, resume_config, train
from training.loss import discriminator_loss, generator_loss
from training.metrics import feature_extractor
from training.projected import Fp32InputGradient, ProjectedDiscriminator, frozen_backbone, stage_features
from training.run_dir import RunDir

CPU = torch.device("cpu")


def projected_config(data, out, **overrides) -> TrainConfig:
    values = dict(kimg=0.032, snap_kimg=0.016, sample_kimg=1.0, precision="fp32", resolution=32, projected_size=64)
    return tiny_config(data, out, **{**values, **PRESETS["finetune-fast"], **overrides})


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand([n, 3, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_logit_maps_of_the_four_scales():
    """128 px input: scales 32, 16, 8, 4, each head ends in a 4x4 logit map; 64 px: the coarsest is 2x2."""
    assert ProjectedDiscriminator(128)(images(3, 64)).shape == (3, 4 * 16)
    assert ProjectedDiscriminator(64)(images(2, 32)).shape == (2, 3 * 16 + 4)
    assert ProjectedDiscriminator(64)(images(2, 256)).shape == (2, 3 * 16 + 4)  # larger images are shrunk


def test_folded_backbone_matches_the_metrics_network():
    """Batch norms folded into the convolutions, and "same" paddings done by them (the strided ones' one-sided
    paddings by a kernel with a zero first row and column), compute the same stage features as FD-EffNet's
    network."""
    assert not any(isinstance(module, torch.nn.ZeroPad2d) for module in frozen_backbone(CPU).modules())
    x = images(2, 64, seed=1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = stage_features(feature_extractor(CPU), x)
        folded = stage_features(frozen_backbone(CPU), x)
    assert [f.shape[1] for f in folded] == [24, 40, 112, 320]
    assert [f.shape[-1] for f in folded] == [16, 8, 4, 2]
    for ref, got in zip(reference, folded, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-3 * float(ref.abs().max()), rtol=1e-3)


def test_bf16_backbone_takes_its_strided_depthwise_input_gradients_in_fp32():
    """On a CPU in bf16 the four strided depthwise convolutions run forward in bf16 and compute their input
    gradient in fp32 (oneDNN's bf16 backward of them is slow): the same gradient as autograd through the fp32
    convolution, handed back in bf16; the features stay bf16 and close to fp32's, and gradients reach the image."""
    net = frozen_backbone(CPU, torch.bfloat16)
    strided = [b._depthwise_conv for b in net._blocks if isinstance(b._depthwise_conv, Fp32InputGradient)]
    assert [conv.stride[0] for conv in strided] == [2, 2, 2, 2]
    for conv in strided:
        channels, size = conv.weight.shape[0], 17
        x = images(2, size, seed=2).repeat(1, channels // 3 + 1, 1, 1)[:, :channels].bfloat16()
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        out = conv(x)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).bfloat16()
        out.backward(upstream)
        x32 = x.detach().float().requires_grad_(True)
        ref = F.conv2d(x32, conv.weight32, conv.bias.float(), conv.stride, conv.padding, 1, conv.groups)
        ref.backward(upstream.float())
        assert out.dtype == x.grad.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref, atol=0.02 * float(ref.detach().abs().max()), rtol=0.02)
        torch.testing.assert_close(x.grad.float(), x32.grad, atol=1e-6 * float(x32.grad.abs().max()), rtol=2**-8)
    x = images(2, 64, seed=1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = stage_features(frozen_backbone(CPU), x)
    img = x.bfloat16().requires_grad_(True)
    got = stage_features(net, img)
    for ref, feature in zip(reference, got, strict=True):
        assert feature.dtype == torch.bfloat16
        torch.testing.assert_close(feature.float(), ref, atol=0.05 * float(ref.abs().max()), rtol=0.05)
    sum(f.float().sum() for f in got).backward()
    assert img.grad is not None and img.grad.dtype == torch.bfloat16 and img.grad.abs().sum() > 0


def test_only_the_heads_train_and_gradients_reach_the_image():
    D = ProjectedDiscriminator(64, seed=3)
    names = {name for name, _ in D.named_parameters()}
    assert names and all(name.startswith("heads.") for name in names)
    assert not any("_blocks" in key or "_conv_stem" in key for key in D.state_dict())  # backbone never saved
    assert {b for b in D.state_dict() if b.startswith("projection.")} == {
        *(f"projection.channel_mix{i}" for i in range(4)),
        *(f"projection.scale_mix{i}" for i in range(3)),
    }
    img = images(2, 32).requires_grad_(True)
    D(img).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is not None for p in D.parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen_backbone(CPU).parameters())


def test_batch_norm_heads_judge_each_image_with_its_batch():
    """Without norm a logit depends on its own image only; with the paper's batch norms it also depends on the
    images passed with it (the batch statistics), and the heads keep no running averages to save. (In eval
    mode, so that spectral norm's power iteration leaves the weights alike between calls.)"""
    x, others = images(2, 32, seed=1), images(4, 32, seed=2)
    plain, normed = ProjectedDiscriminator(64, seed=3).eval(), ProjectedDiscriminator(64, seed=3, norm="batch").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(torch.cat([x, others]))[:2], plain(x))
        alone, together = normed(x), normed(torch.cat([x, others]))[:2]
    assert (alone - together).abs().mean() > 0.01 * alone.abs().mean()
    norms = [m for m in normed.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2 + 1  # after each strided convolution down to 4 px: 16 -> 8 -> 4, 8 -> 4
    assert not any("running" in key or "num_batches" in key for key in normed.state_dict())


def test_same_seed_same_network_and_the_global_rng_is_untouched():
    """Resumed runs replay the global RNG, so neither the heads nor the frozen network (built at the first
    forward, which a resumed run reaches at another point of the stream) may draw from it."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    a, b, c = ProjectedDiscriminator(64, seed=5), ProjectedDiscriminator(64, seed=5), ProjectedDiscriminator(64, seed=6)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert not torch.equal(a.projection.channel_mix0, c.projection.channel_mix0)
    frozen_backbone.cache_clear()
    feature_extractor.cache_clear()
    a(images(1, 32))
    assert torch.equal(torch.rand(3), expected)


def test_hinge_losses():
    """relu(1 + D(fake)) + relu(1 - D(real)) for D, -D(fake) for G, on a D whose logits we choose."""

    def D(img, c):  # noqa: ARG001 - the loss's discriminator signature
        return img.mean(dim=(1, 2, 3))[:, None]

    real = torch.tensor([2.0, 0.5]).reshape(2, 1, 1, 1).expand(2, 3, 4, 4)
    fake = torch.tensor([-3.0, 0.25]).reshape(2, 1, 1, 1).expand(2, 3, 4, 4)
    loss, stats, _ = discriminator_loss(D, fake, real, None, lambda x: x, 0.0, 0.0, "hinge")
    assert loss.item() == pytest.approx((0 + 1.25) / 2 + (0 + 0.5) / 2)
    assert stats == {"D_fake": pytest.approx(-1.375), "D_real": pytest.approx(1.25)}
    assert generator_loss(D, fake, None, lambda x: x, "hinge").item() == pytest.approx(1.375)


def test_d_step_computes_the_spectral_norms_once_for_fakes_and_reals(monkeypatch):
    """One power iteration per spectral norm per D step, so the fakes and the reals are judged by the same
    weights: the same images passed as both get the same logits, and the loss reaches every head's weights."""
    D = ProjectedDiscriminator(64, seed=3, norm="batch")  # training mode: each computation iterates
    spectral_norms = [m for m in D.modules() if isinstance(m, torch.nn.utils.parametrizations._SpectralNorm)]
    power_iterations = []
    power_method = torch.nn.utils.parametrizations._SpectralNorm._power_method
    monkeypatch.setattr(
        torch.nn.utils.parametrizations._SpectralNorm,
        "_power_method",
        lambda self, *args: (power_iterations.append(self), power_method(self, *args))[1],
    )
    x = images(4, 32)
    loss, stats, _ = discriminator_loss(D, x, x, None, lambda img: img, 0.0, 0.0, "hinge")
    assert sorted(map(id, power_iterations)) == sorted(map(id, spectral_norms))
    assert torch.equal(stats["D_fake"], stats["D_real"])
    loss.backward()  # the same logits for fakes and reals: their hinge gradients cancel, but every one is there
    assert all(p.grad is not None for p in D.heads.parameters())


def test_d_step_judges_fakes_and_reals_in_one_pass_as_each_set_alone():
    """discriminator_loss passes a projected D's fakes and reals through its heads at once, as two sets whose
    batch norms each see their own statistics: the logits and every head's gradients are those of judging each
    set by itself. (In eval mode, so that spectral norm's power iteration leaves the weights alike between the
    passes; the batch norms keep no running averages and use each pass's statistics in either mode.)"""
    D = ProjectedDiscriminator(64, seed=3, norm="batch").eval()
    passes = []
    hooks = [head.register_forward_hook(lambda head, *_: passes.append(head)) for head in D.heads]
    fake, real = images(4, 32, seed=1), images(4, 32, seed=2)
    loss, stats, real_logits = discriminator_loss(D, fake, real, None, lambda img: img, 0.0, 0.0, "hinge")
    loss.backward()
    assert passes == list(D.heads)  # each head once
    for hook in hooks:
        hook.remove()
    together = {name: p.grad for name, p in D.named_parameters()}
    D.zero_grad(set_to_none=True)
    fake_alone, real_alone = D(fake), D(real)
    (F.relu(1 + fake_alone).mean() + F.relu(1 - real_alone).mean()).backward()
    torch.testing.assert_close(real_logits, real_alone)
    torch.testing.assert_close(stats["D_fake"], fake_alone.mean())
    assert (fake_alone - D(torch.cat([fake, real]))[:4]).abs().mean() > 0.01 * fake_alone.abs().mean()  # 1 set
    for name, p in D.named_parameters():
        torch.testing.assert_close(together[name], p.grad, msg=name)



@pytest.mark.parametrize("reuse", [True, False])
def test_d_can_judge_the_features_g_was_judged_on(tmp_path, discs_folder, monkeypatch, reuse):
    """With reuse_fake_features, D's step judges the features of the fakes that G's pass computed (two
    micro-batches a step, each matched), so the frozen network runs twice per micro-batch instead of three times."""
    projected: list[list[torch.Tensor]] = []
    judged: list[list[torch.Tensor] | None] = []
    project = ProjectedDiscriminator.project

    def recording_project(self, img):
        features = project(self, img)
        projected.append([f.detach().clone() for f in features])
        return features

    def recording_discriminator_loss(D, fake, *args, fake_features=None, **kwargs):
        judged.append(fake_features)
        return discriminator_loss(D, fake, *args, fake_features=fake_features, **kwargs)

    monkeypatch.setattr(ProjectedDiscriminator, "project", recording_project)
    monkeypatch.setattr(loop_module, "discriminator_loss", recording_discriminator_loss)
    config = projected_config(
        discs_folder, tmp_path / "run", kimg=0.024, batch=8, batch_gpu=4, reuse_fake_features=reuse
    )
    assert train(config)["status"] == "completed"

    steps, micro = 3, 2
    assert len(judged) == steps * micro
    if not reuse:
        assert judged == [None] * len(judged) and len(projected) == steps * micro * 3
        return
    assert len(projected) == steps * micro * 2  # G's pass, then D's step on the reals
    for step in range(steps):
        for r in range(micro):
            g_pass = projected[step * micro * 2 + r]
            d_fakes = judged[step * micro + r]
            assert all(not f.requires_grad for f in d_fakes)
            for want, got in zip(g_pass, d_fakes, strict=True):
                assert torch.equal(got, want)


@pytest.mark.slow
def test_fine_tuning_trains_g_and_heads_only(tmp_path, discs_folder):
    """A fine-tune of a base with a StyleGAN D: the projected D starts fresh and its heads learn; the frozen
    network and the projections never change; the model file keeps the base's D untouched; G moves."""
    base = train(
        projected_config(
            discs_folder, tmp_path / "base", discriminator="stylegan", gan_loss="logistic", aug="ada", kimg=0.016
        )
    )
    backbone_before = {k: v.clone() for k, v in frozen_backbone(CPU).state_dict().items()}
    metrics_before = {k: v.clone() for k, v in feature_extractor(CPU).state_dict().items()}
    config = projected_config(discs_folder, tmp_path / "tuned", base=base["checkpoint"], resolution=None)
    events: list[dict] = []
    result = train(config, events.append)

    assert next(e for e in events if e["event"] == "started")["discriminator"] == "projected"
    assert next(e for e in events if e["event"] == "started")["r1_gamma"] == 0  # the paper trains without R1
    losses = [e["losses"] for e in events if e["event"] == "progress"]
    assert losses and all(np.isfinite(v) for step in losses for v in step.values())
    assert {"G", "D", "D_real", "D_fake"} <= losses[-1].keys() and "pl_length" not in losses[-1]
    for key, value in frozen_backbone(CPU).state_dict().items():
        assert torch.equal(value, backbone_before[key]), f"the frozen network changed: {key}"
    for key, value in feature_extractor(CPU).state_dict().items():
        assert torch.equal(value, metrics_before[key]), f"FD-EffNet's network changed: {key}"

    state = torch.load(RunDir(config.out).latest_checkpoint().state, weights_only=True)
    assert state["discriminator"] == "projected"
    fresh = ProjectedDiscriminator(64, seed=config.seed, norm=config.projected_norm).state_dict()
    for key, value in state["projected_D"].items():
        if key.startswith("projection."):
            assert torch.equal(value, fresh[key]), f"a fixed projection changed: {key}"
    heads = [k for k in fresh if k.endswith("parametrizations.weight.original")]
    assert heads and all(not torch.equal(state["projected_D"][k], fresh[k]) for k in heads)

    before, after = load_checkpoint(base["checkpoint"]), load_checkpoint(result["checkpoint"])
    for (key, x), y in zip(before.D.state_dict().items(), after.D.state_dict().values(), strict=True):
        assert torch.equal(x, y), f"the base's StyleGAN D changed: {key}"
    moved = [not torch.equal(x, y) for x, y in zip(before.G.parameters(), after.G.parameters(), strict=True)]
    assert sum(moved) > len(moved) // 2


def test_projected_from_scratch_saves_g_only_model_files(tmp_path, discs_folder):
    config = projected_config(discs_folder, tmp_path / "run", kimg=0.008, snap_kimg=0.008)
    result = train(config)
    bundle = load_checkpoint(result["checkpoint"])
    assert bundle.D is None and bundle.G is not None and bundle.meta.d_kwargs is None


def test_batch_norm_heads_train_and_resume(tmp_path, discs_folder):
    """A run with the batch-norm heads saves them with its state and resumes from them; a run folder whose
    config.json predates the option resumes with the heads it was started with (no norm)."""
    config = projected_config(discs_folder, tmp_path / "run", projected_norm="batch", kimg=0.016, snap_kimg=0.008)
    train(config)
    run = RunDir(config.out)
    state = torch.load(run.latest_checkpoint().state, weights_only=True)
    norm_keys = [k for k in state["projected_D"] if k.endswith(".bias") and ".net.1." in k]
    assert norm_keys and all(torch.isfinite(state["projected_D"][k]).all() for k in norm_keys)
    config.kimg = 0.024
    result = train(config, resume=True)
    assert result["kimg"] == pytest.approx(0.024)

    old = projected_config(discs_folder, tmp_path / "old", projected_norm="none", kimg=0.008, snap_kimg=0.008)
    train(old)
    saved = json.loads(RunDir(old.out).config_path.read_text())
    del saved["projected_norm"]
    RunDir(old.out).config_path.write_text(json.dumps(saved))
    resumed = resume_config(old.out)
    assert resumed.projected_norm == "none"
    resumed.kimg = 0.016
    train(resumed, resume=True)


def test_resuming_with_the_other_discriminator_is_refused(tmp_path, discs_folder):
    config = projected_config(discs_folder, tmp_path / "run", kimg=0.008, snap_kimg=0.008)
    train(config)
    config.discriminator, config.gan_loss, config.kimg = "stylegan", "logistic", 0.016
    with pytest.raises(TrainingError, match="trained with the projected discriminator"):
        train(config, resume=True)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("discriminator", "patch", "--discriminator must be stylegan or projected"),
        ("projected_size", 224, "projected_size must be one of 64, 128, 256, 512"),
        ("projected_norm", "layer", "projected_norm must be none or batch"),
        ("gan_loss", "wasserstein", "gan_loss must be logistic or hinge"),
        ("freeze_d", 2, "--freeze-d"),
    ],
)
def test_bad_projected_options_are_named(tmp_path, option, value, message):
    with pytest.raises(ConfigError, match=message):
        projected_config(tmp_path, tmp_path / "run", **{option: value}).validate()


def test_the_cli_preset_and_flag(tmp_path):
    args = build_parser().parse_args(
        ["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--base", "m.pkl", "--preset", "finetune-fast"]
    )
    config = config_from_args(args)
    assert (config.discriminator, config.aug, config.gan_loss, config.pl_weight) == ("projected", "diffaug", "hinge", 0)
    assert config.projected_norm == "batch"
    assert config.resolved_r1_gamma(64) == 0
    args = build_parser().parse_args(
        ["--data", str(tmp_path), "--out", str(tmp_path / "r"), "--resolution", "64", "--discriminator", "projected"]
    )
    config = config_from_args(args)
    assert config.discriminator == "projected" and config.gan_loss == "logistic"
    assert TrainConfig(data="d", out="o").resolved_r1_gamma(64) > 0  # the StyleGAN D keeps ADA's heuristic
