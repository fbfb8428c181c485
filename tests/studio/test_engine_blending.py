"""Layer-wise blending of two real tiny generators: hard swaps, smooth ramps, refusals, live sessions, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoints import load_checkpoint
from studio.engine.blending import (
    BlendCurve,
    Blender,
    BlendSession,
    IncompatibleModels,
    blend_files,
    blend_generators,
    check_compatible,
    tensor_resolution,
)
from studio.engine.library import ModelLibrary
from studio.engine.selftest import make_random_model
from studio.engine.state import RenderState


@pytest.fixture(scope="module")
def parents(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("parents")
    return make_random_model(folder / "a.safetensors", seed=0), make_random_model(folder / "b.safetensors", seed=1)


def generators(parents: tuple[Path, Path]):
    return tuple(load_checkpoint(p, "cpu").G_ema for p in parents)


def same(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and bool(torch.equal(x, y))


def test_a_hard_swap_takes_the_layers_below_from_a_and_from_b_above_bit_for_bit(parents):
    A, B = generators(parents)
    blended = blend_generators(A, B, BlendCurve(at=16))
    sa, sb, sc = A.state_dict(), B.state_dict(), blended.state_dict()
    below = above = 0
    for name, tensor in sc.items():
        res = tensor_resolution(name)
        if res is None or res < 16:  # the mapping network and w_avg come from A as well
            assert same(tensor, sa[name]), name
            below += res is not None
        else:
            assert same(tensor, sb[name]), name
            above += 1
        if not same(sa[name], sb[name]):  # the parents really differ there, so the check can fail
            assert not same(tensor, sb[name] if res is None or res < 16 else sa[name])
    assert below > 10 and above > 10
    with torch.no_grad():
        images = [G.render(torch.randn(2, 32, generator=torch.Generator().manual_seed(3))) for G in (A, B, blended)]
    assert (images[2] - images[0]).abs().mean() > 0.01 and (images[2] - images[1]).abs().mean() > 0.01


def test_a_smooth_blend_at_its_extremes_is_a_or_b_and_ramps_in_between(parents):
    A, B = generators(parents)
    all_a = blend_generators(A, B, BlendCurve(at=64, width=1.0))  # the ramp ends above the 32 px block
    all_b_synthesis = blend_generators(A, B, BlendCurve(at=4, width=1.0))  # the ramp is over below 4 px
    for name, tensor in all_a.state_dict().items():
        assert same(tensor, A.state_dict()[name]), name
    for name, tensor in all_b_synthesis.state_dict().items():
        parent = A if tensor_resolution(name) is None else B
        assert same(tensor, parent.state_dict()[name]), name
    curve = BlendCurve(at=16, width=2.0)
    assert curve.shares([4, 8, 16, 32]) == {4: 0.0, 8: 0.25, 16: 0.75, 32: 1.0}
    middle = blend_generators(A, B, curve).state_dict()
    name = "synthesis.b8.conv1.weight"
    assert torch.allclose(middle[name], 0.75 * A.state_dict()[name] + 0.25 * B.state_dict()[name], atol=1e-6)
    noise = "synthesis.b16.conv1.noise_const"  # buffers come from the nearer parent, not averaged
    assert same(middle[noise], B.state_dict()[noise])


def test_the_mapping_network_can_come_from_b(parents):
    A, B = generators(parents)
    blended = blend_generators(A, B, BlendCurve(at=16, mapping="b"))
    assert same(blended.mapping.w_avg, B.mapping.w_avg) and same(blended.mapping.fc0.weight, B.mapping.fc0.weight)
    assert same(blended.synthesis.b4.const, A.synthesis.b4.const)


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ({"resolution": 16}, "resolution 32 vs 16"),
        ({"w_dim": 16}, "w dim 32 vs 16"),
        ({"channel_max": 32}, "tensors of different shapes"),
    ],
)
def test_incompatible_pairs_are_refused_saying_what_differs(parents, tmp_path, other, expected):
    A = load_checkpoint(parents[0], "cpu").G_ema
    B = load_checkpoint(make_random_model(tmp_path / "other.safetensors", **other), "cpu").G_ema
    with pytest.raises(IncompatibleModels, match=expected):
        check_compatible(A, B)
    with pytest.raises(IncompatibleModels):
        blend_generators(A, B, BlendCurve(at=16))


def test_bad_curves_are_refused():
    for bad in ({"at": 12}, {"at": 2}, {"at": 16, "width": -1}, {"at": 16, "mapping": "c"}):
        with pytest.raises(ValueError):
            BlendCurve(**bad)


def test_changing_the_curve_rewrites_only_the_blocks_whose_share_changed(parents):
    A, B = generators(parents)
    target = blend_generators(A, B, BlendCurve(at=64))
    blender = Blender(A, B, target)
    assert blender.apply(BlendCurve(at=16)) == [4, 8, 16, 32]  # first call: everything
    assert blender.apply(BlendCurve(at=8)) == [8]
    assert blender.apply(BlendCurve(at=8)) == []
    expected = blend_generators(A, B, BlendCurve(at=8)).state_dict()
    for name, tensor in target.state_dict().items():
        assert same(tensor, expected[name]), name


def test_a_blend_session_renders_the_current_curve_and_describes_it(parents, tmp_path):
    library = ModelLibrary(tmp_path / "library")
    entry_a, entry_b = (library.import_model(p) for p in parents)
    session = BlendSession(entry_a, entry_b, BlendCurve(at=16), device="cpu", precision="fp32", data_dir=tmp_path)
    state = RenderState(model_id=session.model_id, seed=5)
    A, B = generators(parents)

    def reference(curve: BlendCurve) -> np.ndarray:
        fresh = BlendSession(entry_a, entry_b, curve, device="cpu", precision="fp32", data_dir=tmp_path)
        assert fresh.model_id == session.model_id  # one id per pair of parents, whatever the curve
        return fresh.render(state)

    first = session.render(state)
    session.set_curve(BlendCurve(at=8, width=1.0))
    second = session.render(state)
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1
    assert np.array_equal(second, reference(BlendCurve(at=8, width=1.0)))
    spec = session.entry.meta["blend"]
    assert spec["a"]["id"] == entry_a.id and spec["b"]["name"] == entry_b.name and spec["at"] == 8
    assert session.entry.name == f"{entry_a.name} × {entry_b.name}"
    bundle = session.export_bundle("blend.safetensors")
    assert bundle.meta.training["blend"]["b"]["model_hash"] == entry_b.model_hash


def test_blend_files_writes_a_loadable_model_naming_its_parents(parents, tmp_path):
    out = blend_files(parents[0], parents[1], BlendCurve(at=16, width=0.5), tmp_path / "c.safetensors")
    bundle = load_checkpoint(out, "cpu")
    spec = bundle.meta.training["blend"]
    assert (spec["a"]["name"], spec["b"]["name"], spec["at"], spec["width"]) == ("a", "b", 16, 0.5)
    A, B = generators(parents)
    expected = blend_generators(A, B, BlendCurve(at=16, width=0.5)).state_dict()
    for name, tensor in bundle.G_ema.state_dict().items():
        assert same(tensor, expected[name]), name
    with pytest.raises(ValueError, match="safetensors"):
        blend_files(parents[0], parents[1], BlendCurve(at=16), tmp_path / "c.pkl")
