"""StyleGAN3: each op against a direct, slow reference; NVIDIA-structured pickles of configs T and R load
through the restricted unpickler and give the reference's pixels; nothing in them is ever executed."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F

from models.alias_free import design_lowpass_filter, filtered_lrelu, upfirdn1d
from models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from models.stylegan3 import fit_preview_head, make_transform
from tests.models import pickle_fixtures as fx
from tests.models import sg3_reference as ref

PIXEL_TOLERANCE = 2e-3  # the bar, on outputs in about [-1, 1]


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "side-effect"


# --- ops


@pytest.mark.parametrize("numtaps, cutoff, width, fs", [(12, 2.0, 4.3, 16), (24, 11.3, 6.1, 64), (12, 64, 20, 256)])
def test_filters_are_nvidias(numtaps, cutoff, width, fs):
    expected = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    np.testing.assert_allclose(design_lowpass_filter(numtaps, cutoff, width, fs).numpy(), expected, atol=1e-7)
    # The radial (jinc) filter as NVIDIA designs it with scipy.
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f *= np.outer(w, w)
    f /= f.sum()
    radial = design_lowpass_filter(numtaps, cutoff, width, fs, radial=True).numpy()
    np.testing.assert_allclose(radial, f, atol=1e-7)
    assert design_lowpass_filter(1, cutoff, width, fs) is None


@pytest.mark.parametrize(
    "up, down, pad, taps",
    [(2, 1, (11, 10), 12), (4, 1, (23, 21), 24), (1, 2, (0, 0), 12), (2, 1, (-3, 5), 12), (1, 2, (3, 1), 7),
     (4, 1, (0, 0), 24), (1, 1, (2, -1), 5), (4, 1, (-6, -9), 24), (2, 1, (-11, -12), 12), (2, 3, (5, 4), 12),
     (2, 1, (30, -20), 12)],
)
def test_upfirdn1d_matches_zero_stuffing(up, down, pad, taps):
    gen = torch.Generator().manual_seed(up * 10 + down)
    f = torch.randn(taps, generator=gen)
    x = torch.randn(2, 3, 29, 23, generator=gen)
    pad_y = (pad[0] + 1, pad[1] - 1)  # differs from x's, so that mixing up the axes shows
    got = upfirdn1d(x, f, dim=3, up=up, down=down, pad=pad, gain=up)
    got = upfirdn1d(got, f, dim=2, up=up, down=down, pad=pad_y, gain=up)
    want = ref.upfirdn2d(x, f, up=up, down=down, padding=(*pad, *pad_y), gain=up**2)
    assert got.shape == want.shape
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize("up, clamp", [(2, None), (4, 0.5)])
def test_filtered_lrelu_matches_reference(up, clamp, radial):
    gen = torch.Generator().manual_seed(up)
    x = torch.randn(2, 4, 20, 20, generator=gen)
    b = torch.randn(4, generator=gen)
    fu = design_lowpass_filter(6 * up, 3.0, 4.0, 8 * up)
    fd = design_lowpass_filter(12, 5.0, 6.0, 8 * up, radial=radial)
    padding = (13, 10, 12, 11) if up == 2 else (25, 22, 24, 23)
    got = filtered_lrelu(x, fu, fd, b, up=up, down=2, padding=padding, gain=math.sqrt(2), slope=0.2, clamp=clamp)
    want = ref.filtered_lrelu(x, fu, fd, b, up, 2, padding, math.sqrt(2), 0.2, clamp)
    assert got.shape == want.shape
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    if clamp is not None:
        assert want.abs().max() > 0.1 and (want.abs() >= clamp * 0.99).any()  # the clamp mattered
    assert got.is_contiguous(memory_format=torch.channels_last)  # the layout the next convolution runs fastest in
    # bf16 activations (autocast) come back in bf16, their values as close as bf16 rounding allows.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = filtered_lrelu(x.bfloat16(), fu, fd, b, up=up, down=2, padding=padding, clamp=clamp)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.double(), want, atol=0.03, rtol=0.02)


@pytest.mark.parametrize("radial", [False, True])
def test_filtered_lrelu_gradients_match_reference(radial):
    """Training differentiates through the block-matrix resampling: its gradients are the reference's."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 20, 20, generator=gen)
    b = torch.randn(4, generator=gen)
    fu = design_lowpass_filter(12, 3.0, 4.0, 16)
    fd = design_lowpass_filter(12, 5.0, 6.0, 16, radial=radial)
    weights = torch.randn(2, 4, 21, 21, generator=gen)  # a loss that weighs every output differently
    grads = []
    for op in (filtered_lrelu, ref.filtered_lrelu):
        xg, bg = x.clone().requires_grad_(), b.clone().requires_grad_()
        y = op(xg, fu, fd, bg, up=2, down=2, padding=(13, 10, 12, 11), gain=math.sqrt(2), slope=0.2, clamp=None)
        (y.double() * weights).sum().backward()
        grads.append((xg.grad, bg.grad))
    (gx, gb), (want_x, want_b) = grads
    assert want_x.abs().max() > 0.1
    torch.testing.assert_close(gx, want_x, atol=1e-4, rtol=0)
    torch.testing.assert_close(gb, want_b, atol=1e-3, rtol=0)


# --- the network against the reference, through NVIDIA-structured pickles


@pytest.mark.parametrize(
    "conv_kernel, radial, c_dim, protocol",
    [
        pytest.param(3, False, 0, 4, id="T"),
        pytest.param(1, True, 0, 2, id="R-proto2"),
        pytest.param(3, True, 3, 4, id="k3-radial-cdim3"),
        pytest.param(1, False, 2, 3, id="k1-cdim2-proto3"),
    ],
)
def test_pickle_gives_the_reference_pixels(tmp_path, marker, conv_kernel, radial, c_dim, protocol):
    G_ema = ref.make_sg3(c_dim, conv_kernel, radial, seed=0)
    G = ref.make_sg3(c_dim, conv_kernel, radial, seed=1)
    D = fx.randomize(
        fx.Discriminator(c_dim=c_dim, img_resolution=32, img_channels=3, **fx.CHANNELS, conv_clamp=256), 4
    )
    path = ref.sg3_pickle(tmp_path, marker, G_ema, G, D, protocol=protocol)
    globals_used = fx.pickle_globals(path)
    assert {"numpy.ndarray", "numpy.dtype"} <= globals_used  # the numpy attributes NVIDIA's modules carry
    bundle = load_checkpoint(path)
    assert bundle.meta.family == "stylegan3" and bundle.meta.num_ws == 16
    assert bundle.G_ema.config == ("R" if radial else "T")
    z, c = ref.latents(G_ema)
    sd = {k: v.detach() for k, v in G_ema.state_dict().items()}
    kwargs = dict(G_ema.init_kwargs)
    with torch.no_grad():
        got = bundle.G_ema(z, c)
        got_psi = bundle.G_ema(z, c, truncation_psi=0.6)
        got_g = bundle.G(z, c)
    want = ref.generate(sd, kwargs, z, c)
    spatial = (want - want.mean(dim=[2, 3], keepdim=True)).abs().max()
    assert 0.3 < want.abs().max() < 3 and spatial > 0.05  # an image, not flat or clamped
    assert (got.double() - want).abs().max() <= PIXEL_TOLERANCE
    assert (got_psi.double() - ref.generate(sd, kwargs, z, c, psi=0.6)).abs().max() <= PIXEL_TOLERANCE
    want_g = ref.generate({k: v.detach() for k, v in G.state_dict().items()}, kwargs, z, c)
    assert (got_g.double() - want_g).abs().max() <= PIXEL_TOLERANCE
    assert (got_g - got).abs().max() > 0.01  # G and G_ema really are different networks
    img = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    cd = F.one_hot(torch.arange(4) % c_dim, c_dim).float() if c_dim else None
    with torch.no_grad():
        torch.testing.assert_close(bundle.D(img, cd), D(img, cd))
    assert not marker.exists()
    assert not {"torch_utils", "dnnlib"} & {n.split(".")[0] for n in sys.modules}


def test_transform_moves_the_image_as_the_reference_does():
    z = torch.randn([1, 16], generator=torch.Generator().manual_seed(3))
    G = ref.make_sg3(seed=5, shown=z)
    sd = {k: v.detach() for k, v in G.state_dict().items()}
    transform = make_transform((0.125, -0.0625), 20.0)
    with torch.no_grad():
        ws = G.mapping(z, None)
        got = G.synthesis(ws, transform=transform)
        plain = G.synthesis(ws)
    want = ref.synthesis(sd, dict(G.init_kwargs), ws, transform)
    assert (got.double() - want).abs().max() <= PIXEL_TOLERANCE
    assert (got - plain).abs().max() > 0.05
    # The buffer itself is untouched, so the next plain render is the untransformed image again.
    torch.testing.assert_close(G.synthesis.input.transform, torch.eye(3))


def test_translation_by_whole_pixels_shifts_the_image():
    """Translation equivariance, the point of StyleGAN3: 4 px of the 32 px image moves the picture 4 px."""
    G = ref.make_sg3(seed=7)
    z, _ = ref.latents(G, n=1)
    with torch.no_grad():
        ws = G.mapping(z, None)
        plain = G.synthesis(ws)
        moved = G.synthesis(ws, transform=make_transform((4 / 32, 0.0), 0.0))
    inner = slice(8, 24)
    shifted = moved[..., inner, 12:28]
    original = plain[..., inner, 8:24]
    unrelated = moved[..., inner, 8:24]
    err, baseline = (shifted - original).abs().mean(), (unrelated - original).abs().mean()
    assert err < 0.3 * baseline, (err, baseline)


def test_native_round_trip_keeps_stylegan3(tmp_path, marker):
    G_ema = ref.make_sg3(2, conv_kernel=1, radial=True, seed=0)
    bundle = load_checkpoint(ref.sg3_pickle(tmp_path, marker, G_ema))
    save_checkpoint(tmp_path / "sg3.safetensors", bundle)
    again = load_checkpoint(tmp_path / "sg3.safetensors")
    assert again.meta.family == "stylegan3" and again.G_ema.config == "R"
    z, c = ref.latents(G_ema)
    with torch.no_grad():
        assert torch.equal(again.G_ema(z, c), bundle.G_ema(z, c))


def test_malicious_stylegan3_pickles_are_refused(tmp_path, marker):
    G_ema = ref.make_sg3(seed=0)
    src = fx.module_src(marker)
    rec = ref.record(G_ema, src, ref.sg3_kwargs(G_ema))
    layer = rec.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["L3_36_8"]
    layer.meta["state"]["in_size"] = Payload(os.system, f"touch {marker}")
    with pytest.raises(CheckpointError, match="system") as info:
        load_checkpoint(fx.write_pickle(tmp_path / "evil.pkl", {"G_ema": rec}))
    assert info.value.refused
    object_array = ref.record(G_ema, src, ref.sg3_kwargs(G_ema))
    object_array.meta["state"]["_modules"]["synthesis"].meta["state"]["margin"] = np.array([None, "x"], object)
    with pytest.raises(CheckpointError, match="numpy array of objects"):
        load_checkpoint(fx.write_pickle(tmp_path / "objects.pkl", {"G_ema": object_array}))
    assert not marker.exists()


class Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --- previews: an early exit at a lower layer


def test_preview_head_recovers_a_linear_map():
    gen = torch.Generator().manual_seed(8)
    features = torch.randn(2, 5, 16, 16, generator=gen)
    a, b = torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)
    target = (features.permute(0, 2, 3, 1) @ a + b).permute(0, 3, 1, 2)
    head = fit_preview_head(features, target)
    torch.testing.assert_close(head, torch.cat([a, b[None]]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("radial", [False, True])
def test_previews_stop_at_a_lower_layer_with_a_head_fitted_to_the_last_full_render(radial):
    G = ref.make_sg3(radial=radial, conv_kernel=1 if radial else 3, seed=4, resolution=64)
    S = G.synthesis
    assert S.preview_resolutions == [16, 32]
    z, _ = ref.latents(G, n=2)
    ran = []
    for name in S.layer_names:
        getattr(S, name).register_forward_hook(lambda module, args, out: ran.append(module))
    with torch.inference_mode():
        ws = G.mapping(z, None)
        with pytest.raises(ValueError, match="no preview head at 32 px"):
            S(ws[:1], stop_at=32)
        assert torch.equal(S(ws[:1], stop_at=64), S(ws[:1]))  # the full resolution: the full image
        full = S(ws[:1], fit_previews=True)
        assert torch.equal(full, S(ws[:1]))  # fitting changes nothing in the image
        for rate in S.preview_resolutions:
            ran.clear()
            preview = S(ws[:1], stop_at=rate)
            assert preview.shape == (1, 3, rate, rate)
            last = max(i for i, name in enumerate(S.layer_names) if getattr(S, name).out_sampling_rate == rate)
            assert len(ran) == last + 1  # the layers after the exit never ran
            want = F.avg_pool2d(full, 64 // rate)
            assert (preview - want).abs().mean() < 0.05 * want.std()  # the image it was fitted to, downsampled
            assert not torch.equal(S(ws[1:], stop_at=rate), preview)  # another latent's features, another preview
