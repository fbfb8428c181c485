"""The augmentation layer: ADA's pipe and p controller, DiffAugment, and the factory the loop uses."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from training.augment import PRESETS, AdaController, AugmentPipe, build_augment
from training.diffaugment import diff_augment

TRANSFORMS = (
    "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
    "brightness", "contrast", "lumaflip", "hue", "saturation",
)  # fmt: skip


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test draws the same random transforms on every run."""
    torch.manual_seed(0)


def only(**enabled: float) -> AugmentPipe:
    """A pipe at p = 1 with just the named transforms."""
    return AugmentPipe(**{**dict.fromkeys(TRANSFORMS, 0), **enabled}, p=1)


def scenes(n: int, size: int = 16, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Procedural images in [-1, 1]: a random colour ramp, a bright disc and fine noise (unique pixels)."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    slope = torch.rand(n, channels, 2, 1, 1, generator=g) - 0.5
    img = slope[:, :, 0] * xx + slope[:, :, 1] * yy
    centre = torch.rand(n, 2, 1, 1, generator=g) - 0.5
    disc = ((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2 < 0.15)[:, None]
    img = torch.where(disc, 0.8, img) + 0.05 * torch.randn(n, channels, size, size, generator=g)
    return img.clamp(-1, 1)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("channels", [1, 3])
def test_p0_leaves_images_exactly_unchanged(preset: str, channels: int) -> None:
    x = scenes(4, channels=channels)
    assert torch.equal(AugmentPipe.from_preset(preset)(x), x)


def test_factory_p0_ada_and_none_are_identity() -> None:
    x = scenes(4)
    assert torch.equal(build_augment("ada")(x), x)
    assert torch.equal(build_augment("none")(x), x)
    assert torch.equal(build_augment("ada")(x.bfloat16()), x.bfloat16())


def test_xflip_gives_the_image_or_its_mirror() -> None:
    x = scenes(16)
    y = only(xflip=1)(x)
    mirrored = [torch.equal(b, a.flip(-1)) for a, b in zip(x, y, strict=True)]
    assert all(m or torch.equal(b, a) for m, a, b in zip(mirrored, x, y, strict=True))
    assert 0 < sum(mirrored) < len(x)


def test_rotate90_gives_one_of_the_four_rotations() -> None:
    x = scenes(16)
    y = only(rotate90=1)(x)
    turns = []
    for a, b in zip(x, y, strict=True):
        matches = [k for k in range(4) if torch.equal(b, torch.rot90(a, k, dims=(1, 2)))]
        assert len(matches) == 1
        turns += matches
    assert len(set(turns)) >= 3


def test_xint_is_an_integer_translation() -> None:
    size, most = 32, 4  # round(0.125 * 32)
    x = scenes(8, size=size)
    y = only(xint=1)(x)
    offsets = [(dy, dx) for dy in range(-most, most + 1) for dx in range(-most, most + 1)]
    shifts = []
    for a, b in zip(x, y, strict=True):
        interior = b[:, most:-most, most:-most]
        moved = {(dy, dx): a[:, most - dy :, most - dx :][:, :24, :24] for dy, dx in offsets}
        found = [shift for shift, window in moved.items() if torch.equal(interior, window)]
        assert len(found) == 1
        shifts += found
    assert any(shift != (0, 0) for shift in shifts)


def test_gradients_reach_the_input_and_r1_can_differentiate_twice() -> None:
    x = scenes(4).requires_grad_(True)
    conv = torch.nn.Conv2d(3, 1, 3)
    logits = conv(AugmentPipe(p=1)(x)).mean(dim=(1, 2, 3))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    grad.square().sum().backward()  # the R1 penalty's gradient w.r.t. D's weights
    assert conv.weight.grad.abs().sum() > 0

    z = scenes(4).requires_grad_(True)
    diff_augment(z).square().sum().backward()
    assert z.grad.abs().sum() > 0 and torch.isfinite(z.grad).all()


def test_colour_transforms_vary_the_colour_of_flat_grey_images() -> None:
    grey = torch.full((16, 3, 16, 16), 0.2)
    y = AugmentPipe.from_preset("c", p=1)(grey)
    means = y.mean(dim=(2, 3))
    assert means.std(dim=0).min() > 0.1
    assert torch.allclose(y, means[:, :, None, None], atol=1e-5)  # still flat: colour does not move pixels


def test_geometric_transforms_move_pixels_but_keep_the_mean() -> None:
    x = scenes(16, size=32)
    y = AugmentPipe.from_preset("g", p=1)(x)
    changed = (y - x).abs().gt(1e-3).float().mean(dim=(1, 2, 3))
    assert changed.min() > 0.3
    shift = y.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))  # mirrored borders move single means a little
    assert shift.abs().max() < 0.3 and shift.mean().abs() < 0.06
    assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6  # bilinear never overshoots


def test_grey_images_are_augmented_like_grey_rgb() -> None:
    grey = scenes(8, channels=1)
    pipe = AugmentPipe(p=1)
    torch.manual_seed(1)
    y1 = pipe(grey)
    torch.manual_seed(1)
    y3 = pipe(grey.expand(-1, 3, -1, -1))
    assert (y3 - y1).abs().max() < 1e-5


def test_bf16_autocast_runs_in_float32_inside() -> None:
    x = scenes(8)
    pipe = AugmentPipe(p=1)
    torch.manual_seed(3)
    reference = pipe(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(3)
        same = pipe(x)
        torch.manual_seed(3)
        low = pipe(x.bfloat16())
    assert torch.equal(same, reference)
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).abs().max() < 0.05  # bf16 keeps 8 bits: ~0.01 on values up to ~3


@pytest.mark.parametrize("make", [lambda: AugmentPipe(p=0.7), lambda: build_augment("diffaug")])
def test_same_seed_same_output(make) -> None:
    x = scenes(8)
    augment = make()
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outputs.append(augment(x))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def run_intervals(ctrl: AdaController, pipe: AugmentPipe, sign: float, count: int) -> list[float]:
    """`count` intervals of D seeing reals with logits of `sign`; the p after each."""
    ps = []
    for _ in range(count):
        for _ in range(ctrl.interval):
            ctrl.accumulate(sign * torch.rand(8, 1).add(0.1))
        ctrl.update(pipe, 8)
        ps.append(float(pipe.p))
    return ps


def test_controller_raises_p_while_d_overfits_and_lowers_it_to_zero_otherwise() -> None:
    pipe = AugmentPipe.from_preset("bgc")
    ctrl = AdaController(target=0.6, adjust_kimg=0.1, interval=4)  # 32 images per interval: +0.32
    assert ctrl.rt is None
    rising = run_intervals(ctrl, pipe, +1, 4)
    assert ctrl.rt == 1.0
    assert rising[:3] == pytest.approx([0.32, 0.64, 0.96]) and rising[3] == 1.0
    falling = run_intervals(ctrl, pipe, -1, 5)
    assert ctrl.rt == -1.0
    assert falling == sorted(falling, reverse=True) and falling[-2:] == [0.0, 0.0]


def test_controller_sums_the_statistics_of_all_ranks() -> None:
    seen = []

    def other_rank_underfits(stats: torch.Tensor) -> torch.Tensor:
        seen.append(stats.clone())
        return stats + torch.tensor([-1.0, 1.0]) * stats[1]  # another rank with as many logits, all < 0

    pipe = AugmentPipe(p=0.5)
    ctrl = AdaController(adjust_kimg=1, reduce=other_rank_underfits)
    run_intervals(ctrl, pipe, +1, 1)
    assert seen[0].tolist() == [32.0, 32.0]
    assert ctrl.rt == 0.0 and float(pipe.p) == pytest.approx(0.5 - 0.032)


def test_controller_state_round_trip_resumes_exactly() -> None:
    pipe = AugmentPipe(p=0.25)
    ctrl = AdaController(adjust_kimg=2)
    run_intervals(ctrl, pipe, +1, 2)
    ctrl.accumulate(torch.tensor([1.0, -2.0, 3.0]))  # half an interval in flight at the checkpoint

    saved = json.loads(json.dumps(ctrl.state_dict()))  # plain numbers only
    resumed_pipe = AugmentPipe()
    resumed_pipe.load_state_dict(pipe.state_dict())
    resumed = AdaController(adjust_kimg=2)
    resumed.load_state_dict(saved)
    assert resumed.state_dict() == ctrl.state_dict()

    logits = torch.randn(6, 1)
    for c, p in ((ctrl, pipe), (resumed, resumed_pipe)):
        c.accumulate(logits)
        c.update(p, 8)
    assert resumed.rt == ctrl.rt and torch.equal(resumed_pipe.p, pipe.p)

    with pytest.raises(ValueError, match="missing"):
        AdaController().load_state_dict({"rt": None})


def test_factory_exposes_the_ada_pipe_and_its_p() -> None:
    augment = build_augment("ada", preset="bg", p=0.3)
    assert isinstance(augment.pipe, AugmentPipe) and augment.p == pytest.approx(0.3)
    assert list(augment.state_dict()) == ["pipe.p"]
    assert augment.pipe.hue == 0 and augment.pipe.xfrac == 1
    assert build_augment("diffaug").pipe is None and build_augment("none").p is None


def test_diffaug_translation_is_a_zero_filled_integer_shift() -> None:
    x = scenes(8) + 2  # no zeros in the image, so the fill is recognisable
    y = diff_augment(x, "translation")
    most = 2  # 16 / 8
    padded = F.pad(x, [most] * 4)
    offsets = [(dy, dx) for dy in range(-most, most + 1) for dx in range(-most, most + 1)]
    for a, b in zip(padded, y, strict=True):
        windows = [a[:, most + dy :, most + dx :][:, :16, :16] for dy, dx in offsets]
        assert sum(torch.equal(b, w) for w in windows) == 1


def test_diffaug_cutout_zeroes_one_rectangle_of_at_most_half_size() -> None:
    x = scenes(16) + 2
    y = diff_augment(x, "cutout")
    for a, b in zip(x, y, strict=True):
        hole = (b == 0).all(dim=0)
        rows, cols = hole.any(dim=1).nonzero(), hole.any(dim=0).nonzero()
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
        assert hole.sum() == len(rows) * len(cols)  # a filled rectangle
        assert torch.equal(b[:, ~hole], a[:, ~hole])


def test_diffaug_colour_changes_every_image_and_empty_policy_is_identity() -> None:
    x = scenes(8)
    y = diff_augment(x, "color")
    assert ((y - x).abs().amax(dim=(1, 2, 3)) > 1e-3).all()
    assert diff_augment(x, "") is x


def test_bad_settings_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="unknown augmentation preset 'bgcx'"):
        AugmentPipe.from_preset("bgcx")
    with pytest.raises(ValueError, match="unknown augmentation kind 'ADA'"):
        build_augment("ADA")
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'colour'"):
        build_augment("diffaug", policy="colour,cutout")
    with pytest.raises(ValueError, match="got 4"):
        AugmentPipe()(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="p is a probability"):
        AugmentPipe(p=1.5)
    with pytest.raises(ValueError, match="scale_std"):
        AugmentPipe(scale_std=-1)
