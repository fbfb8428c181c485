"""The StyleGAN2 ops against slow, obviously-correct references written here: imported NVIDIA weights give
NVIDIA's pixels only if resampling pads, flips, scales and decimates exactly as theirs does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import ops


def upfirdn2d_reference(x: np.ndarray, f: np.ndarray, up: int, down: int, padding, gain: float) -> np.ndarray:
    """NVIDIA's upfirdn2d by its definition, one output sample at a time (float64)."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    stuffed = np.zeros([n, c, h * up, w * up])
    stuffed[:, :, ::up, ::up] = x
    padded = np.zeros([n, c, h * up + max(py0, 0) + max(py1, 0), w * up + max(px0, 0) + max(px1, 0)])
    padded[:, :, max(py0, 0) : max(py0, 0) + h * up, max(px0, 0) : max(px0, 0) + w * up] = stuffed
    padded = padded[:, :, max(-py0, 0) : padded.shape[2] - max(-py1, 0), max(-px0, 0) : padded.shape[3] - max(-px1, 0)]
    taps = f * gain ** (f.ndim / 2)
    fh, fw = taps.shape
    out_h, out_w = padded.shape[2] - fh + 1, padded.shape[3] - fw + 1
    out = np.zeros([n, c, out_h, out_w])
    for y in range(out_h):
        for x_ in range(out_w):
            for i in range(fh):
                for j in range(fw):
                    # A true convolution: the filter is flipped (NVIDIA's flip_filter=False).
                    out[:, :, y, x_] += padded[:, :, y + i, x_ + j] * taps[fh - 1 - i, fw - 1 - j]
    return out[:, :, ::down, ::down]


ASYMMETRIC = np.outer([1.0, 2.0, 4.0, 3.0], [2.0, 1.0, 3.0, 5.0]) / 100


@pytest.mark.parametrize(
    "up,down,padding,gain,f",
    [
        pytest.param(2, 1, (2, 1, 2, 1), 4.0, None, id="upsample2d"),
        pytest.param(1, 2, (1, 1, 1, 1), 1.0, None, id="downsample2d"),
        pytest.param(1, 1, (2, 2, 2, 2), 1.0, None, id="blur"),
        pytest.param(2, 1, (2, 1, 2, 1), 4.0, ASYMMETRIC, id="up-asymmetric-filter"),
        pytest.param(1, 2, (1, 2, 0, 1), 1.0, ASYMMETRIC, id="down-asymmetric-padding"),
        pytest.param(1, 1, (-1, 2, 1, -2), 1.0, ASYMMETRIC, id="crop-and-pad"),
        pytest.param(2, 1, (0, -1, 3, 0), 2.0, ASYMMETRIC, id="up-crop"),
        pytest.param(2, 2, (1, 1, 1, 1), 4.0, None, id="up-and-down"),
        pytest.param(3, 1, (3, 2, 3, 2), 9.0, None, id="up3"),
    ],
)
def test_upfirdn2d_matches_its_definition(up, down, padding, gain, f):
    f = ops.setup_filter([1, 3, 3, 1]).numpy().astype(np.float64) if f is None else f
    x = np.random.default_rng(0).standard_normal([2, 3, 5, 7])
    expected = upfirdn2d_reference(x, f, up, down, padding, gain)
    x32, f32 = torch.tensor(x, dtype=torch.float32), torch.tensor(f, dtype=torch.float32)
    got = ops.upfirdn2d(x32, f32, up, down, padding, gain)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bf16", ["tensors", "autocast"])
def test_bf16_decimation_on_the_cpu_runs_in_fp32_and_returns_bf16(bf16):
    """Strided depthwise filtering in bf16 takes an fp32 route on the CPU (its bf16 backward is slow): the
    result and the gradient are bf16 as autocast would give, and as exact as fp32 before the final rounding."""
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    expected = ops.downsample2d(x, f)
    source = (x.bfloat16() if bf16 == "tensors" else x).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 == "autocast"):
        got = ops.downsample2d(source, f)
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape
    rounded_input = ops.downsample2d(source.detach().float(), f)  # the bf16 input's own fp32 result
    torch.testing.assert_close(got, rounded_input.bfloat16(), atol=0, rtol=0)
    torch.testing.assert_close(got.float(), expected, atol=0.03, rtol=0.02)
    got.float().sum().backward()
    assert source.grad is not None and source.grad.dtype == source.dtype
    # Away from the border, the taps an input sample feeds sum to 1/2 along each axis.
    torch.testing.assert_close(source.grad[:, :, 2:-2, 2:-2].float(), torch.full((2, 4, 12, 12), 0.25))


def test_upsample2d_and_downsample2d_sizes_and_energy():
    f = ops.setup_filter([1, 3, 3, 1])
    flat = torch.ones(1, 2, 8, 8)
    up = ops.upsample2d(flat, f)
    down = ops.downsample2d(flat, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # Away from the zero-padded border a constant image stays constant: the gains keep the energy.
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.ones(1, 2, 12, 12))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 2))


@pytest.mark.parametrize("k,stride,groups", [(3, 2, 1), (4, 2, 3), (1, 2, 1), (3, 3, 2), (2, 2, 1)])
def test_transposed_conv2d_equals_torch(k, stride, groups):
    g = torch.Generator().manual_seed(k * 10 + stride)
    x = torch.randn(2, 6, 5, 4, generator=g)
    w = torch.randn(4 * groups, 6 // groups, k, k, generator=g)  # conv2d layout [out, in/groups, k, k]
    wt = w.reshape(groups, 4, 6 // groups, k, k).transpose(1, 2).reshape(6, 4, k, k)
    torch.testing.assert_close(
        ops.transposed_conv2d(x, w, stride, groups), F.conv_transpose2d(x, wt, stride=stride, groups=groups)
    )


def blur(x: torch.Tensor, pad: int, gain: float = 1.0) -> torch.Tensor:
    c = x.shape[1]
    f = ops.setup_filter([1, 3, 3, 1]) * gain
    return F.conv2d(F.pad(x, [pad] * 4), f[None, None].repeat(c, 1, 1, 1), groups=c)


def test_conv2d_resample_up_is_transposed_conv_then_blur():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 8, 6, 6, generator=g), torch.randn(5, 8, 3, 3, generator=g)
    got = ops.conv2d_resample(x, w, f=ops.setup_filter([1, 3, 3, 1]), up=2, padding=1)
    # NVIDIA's composition: transposed convolution with the unflipped weight, then a 4×4 blur with gain 4.
    expected = blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2), pad=1, gain=4)
    assert got.shape == (2, 5, 12, 12)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_conv2d_resample_grouped_up_matches_per_group():
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(1, 8, 5, 5, generator=g), torch.randn(6, 4, 3, 3, generator=g)
    f = ops.setup_filter([1, 3, 3, 1])
    got = ops.conv2d_resample(x, w, f=f, up=2, padding=1, groups=2)
    halves = [
        ops.conv2d_resample(x[:, 4 * i : 4 * i + 4], w[3 * i : 3 * i + 3], f=f, up=2, padding=1) for i in range(2)
    ]
    torch.testing.assert_close(got, torch.cat(halves, dim=1), rtol=1e-5, atol=1e-5)


def test_conv2d_resample_down_is_blur_then_strided_conv():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 8, 8, generator=g)
    w3, w1 = torch.randn(6, 4, 3, 3, generator=g), torch.randn(6, 4, 1, 1, generator=g)
    f = ops.setup_filter([1, 3, 3, 1])
    got3 = ops.conv2d_resample(x, w3, f=f, down=2, padding=1)
    got1 = ops.conv2d_resample(x, w1, f=f, down=2)
    assert got3.shape == got1.shape == (2, 6, 4, 4)
    torch.testing.assert_close(got3, F.conv2d(blur(x, pad=2), w3, stride=2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got1, F.conv2d(blur(x, pad=1)[:, :, ::2, ::2], w1), rtol=1e-5, atol=1e-5)


def test_resampling_has_exact_first_and_second_derivatives():
    """R1 and path-length regularisation differentiate through these ops twice."""
    g = torch.Generator().manual_seed(4)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    for kwargs in (dict(up=2, padding=1), dict(down=2, padding=1)):

        def fn(x, w, kwargs=kwargs):
            return ops.conv2d_resample(x, w, f=f, **kwargs)

        assert torch.autograd.gradcheck(fn, (x, w))
        assert torch.autograd.gradgradcheck(fn, (x, w))


def test_bias_act():
    x = torch.tensor([[-2.0, 3.0], [1.0, -4.0]]).reshape(1, 2, 2, 1)
    b = torch.tensor([1.0, -1.0])
    got = ops.bias_act(x, b, act="lrelu", gain=2.0, clamp=3.0)
    expected = torch.tensor([[-0.4, 3.0], [0.0, -2.0]]).reshape(1, 2, 2, 1)
    torch.testing.assert_close(got, expected)
    assert torch.equal(x, torch.tensor([[-2.0, 3.0], [1.0, -4.0]]).reshape(1, 2, 2, 1)), "input changed"
    with pytest.raises(ValueError, match="unsupported activation 'tanh'"):
        ops.bias_act(x, b, act="tanh")


def test_bias_act_in_place_only_without_autograd():
    b = torch.tensor([1.0, -1.0], requires_grad=True)
    x = torch.randn(1, 2, 3, 3)
    with torch.no_grad():
        y = ops.bias_act(x, b, act="lrelu", gain=2.0, inplace=True)
    assert y.data_ptr() == x.data_ptr()  # overwrote the tensor it was given
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    before = x.detach().clone()
    ops.bias_act(x, b, act="lrelu", gain=2.0, clamp=1.0, inplace=True).sum().backward()
    assert torch.equal(x.detach(), before)  # autograd is recording: nothing is overwritten
    x_ref, b_ref = before.clone().requires_grad_(), b.detach().clone().requires_grad_()
    (F.leaky_relu(x_ref + b_ref.reshape(1, -1, 1, 1), 0.2) * 2).clamp(-1, 1).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(b.grad, b_ref.grad)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("up", [1, 2])
def test_fused_and_plain_modulated_conv_agree(n, up):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 6, 5, 5, generator=g)
    weight = torch.randn(4, 6, 3, 3, generator=g)
    styles = torch.randn(n, 6, generator=g)
    noise = torch.randn(n, 1, 5 * up, 5 * up, generator=g)
    kw = dict(noise=noise, up=up, padding=1, resample_filter=ops.setup_filter([1, 3, 3, 1]))
    plain = ops.modulated_conv2d(x, weight, styles, fused=False, **kw)
    fused = ops.modulated_conv2d(x, weight, styles, fused=True, **kw)
    assert plain.shape == (n, 4, 5 * up, 5 * up)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    # Per-sample weights, written out: sample i's weights are modulated by its styles and demodulated.
    for i in range(n):
        wi = weight * styles[i].reshape(1, -1, 1, 1)
        wi = wi / wi.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        yi = ops.conv2d_resample(x[i : i + 1], wi, f=kw["resample_filter"], up=up, padding=1) + noise[i]
        torch.testing.assert_close(plain[i : i + 1], yi, rtol=1e-4, atol=1e-5)


def test_torgb_modulated_conv_is_a_per_sample_matmul():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 5, 4, 4, generator=g)
    weight, styles = torch.randn(3, 5, 1, 1, generator=g), torch.randn(2, 5, generator=g)
    expected = torch.cat(
        [F.conv2d(x[i : i + 1], weight * styles[i].reshape(1, -1, 1, 1)) for i in range(2)]
    )
    for layout in (torch.contiguous_format, torch.channels_last):
        got = ops.modulated_conv2d(x.contiguous(memory_format=layout), weight, styles, demodulate=False)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# (Fused under autocast is left out: it multiplies the per-sample weights out in fp32, safe without the guard.)
@pytest.mark.parametrize(("fp16", "fused"), [("autocast", False), ("tensors", False), ("tensors", True)])
def test_modulated_conv_in_fp16_stays_finite_where_raw_weights_overflow(fused, fp16):
    """Weights and styles at a trained network's scale: their products overflow fp16 (max 65504) unless they are
    normalised before modulating, as NVIDIA's fp16 path does. Demodulation makes the result scale-free, so the
    fp16 result must match the fp64 one."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 64, 8, 8, generator=g)
    weight = torch.randn(16, 64, 3, 3, generator=g) * 1000
    styles = torch.randn(2, 64, generator=g) * 100
    noise = torch.randn(2, 1, 8, 8, generator=g)
    expected = ops.modulated_conv2d(x.double(), weight.double(), styles.double(), noise=noise.double(), padding=1)
    raw = F.conv2d((x * styles[:, :, None, None]).half(), weight.half(), padding=1)
    assert not torch.isfinite(raw).all()  # what the unguarded convolution meets
    if fp16 == "autocast":
        with torch.autocast("cpu", dtype=torch.float16):
            got = ops.modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused=fused)
    else:
        got = ops.modulated_conv2d(x.half(), weight, styles.half(), noise=noise.half(), padding=1, fused=fused)
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=2e-2)
