"""The display render path: the eager network's pixels (fp32 to rounding, bf16 within its tolerance) by every
form it may pick, its w+ prefix cache reusing only what a frame shares, and cancelling between blocks."""

from __future__ import annotations

import pytest
import torch

from models import fast_synthesis
from models.fast_synthesis import FastSynthesis, RenderCancelled
from models.stylegan2 import Generator
from tests.models.test_stylegan2 import W, Z, close, make_G


def ws_of(G: Generator, n: int = 1, seed: int = 0) -> torch.Tensor:
    z = torch.randn(n, Z, generator=torch.Generator().manual_seed(seed))
    ws = G.to_ws(G.z_to_w(z))
    return ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(seed + 1))  # a real w+


def eager(G: Generator, ws: torch.Tensor, noise_mode: str = "const", seed: int = 0, **kwargs) -> torch.Tensor:
    with torch.inference_mode():
        return G.synthesis(ws, noise_mode=noise_mode, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.fixture(scope="module")
def G() -> Generator:
    return make_G(32)


@pytest.mark.parametrize("per_sample_cost", [0, 10**9], ids=["per-sample weights", "scaled activations"])
@pytest.mark.parametrize("packed", [True, False], ids=["prepacked", "plain conv"])
@pytest.mark.parametrize("n", [1, 2])
def test_every_form_renders_the_eager_fp32_pixels(G, monkeypatch, per_sample_cost, packed, n):
    monkeypatch.setattr(fast_synthesis, "PER_SAMPLE_WEIGHT_COST", per_sample_cost)
    monkeypatch.setattr(fast_synthesis, "PACKED_CONV", packed and fast_synthesis.PACKED_CONV)
    ws = ws_of(G, n)
    fast = FastSynthesis(G.synthesis)
    for mode in ("const", "random", "none"):
        close(fast(ws, noise_mode=mode, noise_seed=7), eager(G, ws, mode, seed=7), tol=1e-4)
    close(fast(ws, noise_scale=2.5), eager(G, ws, noise_scale=2.5), tol=1e-4)
    close(fast(ws, stop_at=8), eager(G, ws, stop_at=8), tol=1e-4)


def test_conv_clamp_and_the_default_layer_choice_match_eager():
    G = make_G(64, conv_clamp=0.5)
    ws = ws_of(G)
    out = FastSynthesis(G.synthesis)(ws)
    close(out, eager(G, ws), tol=1e-4)
    assert out.abs().max() <= 0.5 * 5 + 1e-4  # five toRGB layers each add at most the clamp


@pytest.mark.parametrize("packed_bf16", [True, False], ids=["packed", "unpacked"])
def test_bf16_stays_within_bf16_tolerance_of_fp32(G, packed_bf16, monkeypatch):
    """Also where oneDNN cannot pack bf16 weights (an AVX2-only CPU): its convolutions take torch's own path."""
    if packed_bf16 and not fast_synthesis.PACKED_BF16:
        pytest.skip("this CPU's oneDNN packs no bf16 weights (it needs AVX-512 or AVX-NE-CONVERT)")
    monkeypatch.setattr(fast_synthesis, "PACKED_BF16", packed_bf16)
    ws = ws_of(G)
    reference = eager(G, ws)
    half = FastSynthesis(G.synthesis, torch.bfloat16)(ws)
    assert half.dtype == torch.float32 and half.is_contiguous()
    error = (half - reference).abs().max()
    assert 0 < error <= 0.03 * reference.abs().max()  # bf16 really ran, and stayed close


def test_only_float32_and_bfloat16_are_taken():
    with pytest.raises(ValueError, match="fp32 or bf16"):
        FastSynthesis(make_G(8).synthesis, torch.float16)


def test_bad_latents_and_cuts_are_refused(G):
    fast = FastSynthesis(G.synthesis)
    with pytest.raises(ValueError, match="expected w\\+"):
        fast(torch.zeros(1, W))
    with pytest.raises(ValueError, match="stop_at"):
        fast(ws_of(G), stop_at=12)


def test_the_prefix_cache_reuses_exactly_the_blocks_a_frame_shares(G):
    fast = FastSynthesis(G.synthesis)
    ws = ws_of(G)
    fast(ws)
    spans = G.synthesis.w_slices()  # {4: (0, 2), 8: (1, 3), 16: (3, 3), 32: (5, 3)}
    fine = ws.clone()
    fine[:, 6:] += 0.7  # blocks 4 and 8 read only layers 0-3, block 16 reads up to layer 5
    close(fast(fine), eager(G, fine), tol=1e-4)
    assert fast.last_reused_blocks == sum(1 for start, count in spans.values() if start + count <= 6) == 3
    coarse = fine.clone()
    coarse[:, 0] -= 0.5
    close(fast(coarse), eager(G, coarse), tol=1e-4)
    assert fast.last_reused_blocks == 0
    # Going back renders the first frame's pixels: nothing cached was overwritten in place.
    close(fast(fine), eager(G, fine), tol=1e-4)
    assert fast.last_reused_blocks == 0


def test_a_preview_then_its_full_frame_share_blocks_and_noise_settings_are_part_of_the_key(G):
    fast = FastSynthesis(G.synthesis)
    ws = ws_of(G, seed=3)
    close(fast(ws, stop_at=16), eager(G, ws, stop_at=16), tol=1e-4)
    close(fast(ws), eager(G, ws), tol=1e-4)
    assert fast.last_reused_blocks == 3  # only block 32 was new
    close(fast(ws, stop_at=8), eager(G, ws, stop_at=8), tol=1e-4)
    assert fast.last_reused_blocks == 2  # a preview of the frame already drawn in full
    close(fast(ws), eager(G, ws), tol=1e-4)
    assert fast.last_reused_blocks == 4  # and the full frame is still cached
    fast(ws, noise_scale=0.5)
    assert fast.last_reused_blocks == 0
    close(fast(ws, noise_mode="random", noise_seed=1), eager(G, ws, "random", seed=1), tol=1e-4)
    close(fast(ws, noise_mode="random", noise_seed=2), eager(G, ws, "random", seed=2), tol=1e-4)
    assert fast.last_reused_blocks == 0


def test_weights_changed_in_place_are_picked_up():
    G = make_G(16)
    fast = FastSynthesis(G.synthesis)
    ws = ws_of(G)
    before = fast(ws)
    with torch.no_grad():
        G.synthesis.b8.conv0.weight.mul_(1.5).add_(0.1)
        G.synthesis.b16.torgb.bias.add_(0.2)
    after = fast(ws)
    assert not torch.allclose(before, after)
    close(after, eager(G, ws), tol=1e-4)


def test_cancel_stops_between_blocks_and_the_next_frame_is_whole(G):
    fast = FastSynthesis(G.synthesis)
    ws = ws_of(G, seed=5)
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) == 3  # stop before the third block

    with pytest.raises(RenderCancelled):
        fast(ws, cancel=cancel)
    assert len(polls) == 3
    close(fast(ws, cancel=lambda: False), eager(G, ws), tol=1e-4)


def test_frames_not_remembered_leave_the_cache_to_the_frame_being_edited(G):
    fast = FastSynthesis(G.synthesis)
    ws = ws_of(G, seed=8)
    fast(ws)
    for seed in (20, 21):  # thumbnails of other seeds
        other = ws_of(G, seed=seed)
        close(fast(other, stop_at=8, remember=False), eager(G, other, stop_at=8), tol=1e-4)
    edited = ws.clone()
    edited[:, 6:] -= 0.4
    close(fast(edited), eager(G, edited), tol=1e-4)
    assert fast.last_reused_blocks == 3
