"""The resampling ops of StyleGAN3's alias-free layers, in pure PyTorch and fast on a CPU.

NVIDIA's reference path zero-stuffs the activations before filtering them (`upfirdn2d`), so at 2× and 4×
upsampling three quarters to fifteen sixteenths of its multiply-adds touch inserted zeros, on intermediates
of up to 575² × 512 values. Here each axis is resampled separately as a depthwise convolution: upsampling as a
transposed convolution with the stride of the factor (zeros never materialised), downsampling as a strided
one (skipped samples never computed), on channels-last activations, where oneDNN's depthwise kernels run
vectorised over the channels (3-4× faster than contiguous ones here). Upsampling runs in float32 on a CPU:
oneDNN's bf16 depthwise transposed convolution is an order of magnitude slower than its fp32 one (its strided
convolution is faster, so bf16 activations are downsampled in bf16).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """NVIDIA's StyleGAN3 filters: a Kaiser-windowed sinc (scipy's `firwin` with `width`), or with `radial` a
    Kaiser-windowed jinc in 2-D; None for a single tap (identity). Written with numpy and torch's Bessel J1 so
    that building a network from scratch needs no scipy; loaded networks carry their filters as buffers.
    """
    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, not {numtaps}")
    if numtaps == 1:
        return None
    nyquist = fs / 2
    attenuation = 2.285 * (numtaps - 1) * math.pi * (width / nyquist) + 7.95
    if attenuation > 50:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation > 21:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    else:
        beta = 0.0
    window = np.kaiser(numtaps, beta)
    if not radial:
        c = cutoff / nyquist
        m = np.arange(numtaps) - (numtaps - 1) / 2
        taps = c * np.sinc(c * m) * window
        return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64)  # never 0: numtaps is even here
    taps = (torch.special.bessel_j1(2 * cutoff * math.pi * r) / (math.pi * r)).numpy()
    taps = taps * np.outer(window, window)
    return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)


def _axis_kernel(f: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """The 1-D filter `f` as a depthwise kernel [C, 1, kh, kw] along `dim` (2: rows, 3: columns) of NCHW `x`."""
    shape = (1, f.shape[0]) if dim == 3 else (f.shape[0], 1)
    return f.to(device=x.device, dtype=x.dtype).reshape(1, 1, *shape).expand(x.shape[1], 1, *shape)


def upfirdn1d(
    x: torch.Tensor,
    f: torch.Tensor,
    dim: int,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """NVIDIA's `upfirdn2d` along one spatial axis `dim` (2 or 3) of NCHW `x`: insert up−1 zeros after each
    sample, pad (negative crops), convolve with the 1-D filter `f` times `gain`, keep every `down`-th sample;
    without ever inserting zeros or computing the samples that are dropped."""
    dim %= x.ndim
    if x.ndim != 4 or dim not in (2, 3):
        raise ValueError(f"upfirdn1d resamples rows or columns (dim 2 or 3) of NCHW tensors, not dim {dim} of {x.ndim}")
    length, k = x.shape[dim], f.shape[0]
    p0, p1 = pad
    out_len = (length * up + p0 + p1 - k) // down + 1
    if out_len <= 0:
        raise ValueError(f"resampling {length} samples with {k} taps and padding {pad} leaves no output")
    c = x.shape[1]
    kernel = _axis_kernel(f * gain, x, dim)

    def along(value: int, rest: int = 1) -> tuple[int, int]:  # a (rows, columns) pair acting along `dim`
        return (value, rest) if dim == 2 else (rest, value)

    if up == 1:  # a correlation with the flipped filter over the padded input, `down` samples apart
        if any(pad):
            x = F.pad(x, [p0, p1, 0, 0] if dim == 3 else [0, 0, p0, p1])
        return F.conv2d(x, kernel.flip(dim), stride=along(down), groups=c)
    # The transposed convolution is the full convolution of the zero-stuffed input, (length−1)·up + k samples:
    # sample n of the padded, filtered signal is its sample n + k−1−p0. It crops `trim` from both ends itself.
    start = k - 1 - p0
    end = (length - 1) * up + k - (start + length * up + p0 + p1 - k + 1)  # samples past the last one kept
    trim = max(min(start, end), 0)
    x = F.conv_transpose2d(x, kernel, stride=along(up), padding=along(trim, 0), groups=c)
    if (trim - start, trim - end) != (0, 0):
        x = F.pad(x, [trim - start, trim - end, 0, 0] if dim == 3 else [0, 0, trim - start, trim - end])
    if down > 1:
        x = x[:, :, ::down] if dim == 2 else x[..., ::down]
    return x


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN3's filtered leaky ReLU on NCHW `x`: add the bias `b`, upsample by `up` with the 1-D filter `fu`
    and `padding` (x0, x1, y0, y1), leaky ReLU with `slope`, scale by `gain`, clamp, and downsample by `down`
    with `fd` (1-D, or 2-D for radial filters). The same values as NVIDIA's reference `_filtered_lrelu_ref`.

    Returns channels-last activations in the dtype of `x`; runs in place on tensors it made itself when autograd
    is not recording.
    """
    out_dtype = x.dtype
    dtype = torch.float32 if x.device.type == "cpu" else x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(dtype, memory_format=torch.channels_last) + b.to(dtype).reshape(1, -1, 1, 1)
        px0, px1, py0, py1 = padding
        # A leaky ReLU commutes with a positive gain: the gain rides on the upsampling filter when there is one.
        if fu is not None or up > 1 or any(padding):
            fu = torch.ones(1) if fu is None else fu
            if fu.ndim != 1:
                raise ValueError("upsampling filters of StyleGAN3 are 1-D (separable)")
            x = upfirdn1d(x, fu, dim=3, up=up, pad=(px0, px1), gain=up * gain)
            x = upfirdn1d(x, fu, dim=2, up=up, pad=(py0, py1), gain=up)
            gain = 1
        in_place = not torch.is_grad_enabled() or not x.requires_grad
        if gain != 1:
            x = x.mul_(gain) if in_place else x * gain
        if slope != 1:
            x = F.leaky_relu_(x, slope) if in_place else F.leaky_relu(x, slope)
        x = x.to(out_dtype)  # bf16's depthwise strided convolutions are fast (only the transposed ones are slow)
        if clamp is not None:
            x = x.clamp_(-clamp, clamp) if in_place else x.clamp(-clamp, clamp)
        if fd is None:
            return x[:, :, ::down, ::down] if down > 1 else x
        if fd.ndim == 1:
            x = upfirdn1d(x, fd, dim=3, down=down)
            return upfirdn1d(x, fd, dim=2, down=down)
        # A radial filter is not separable: one depthwise convolution, decimating through its stride.
        weight = fd.flip([0, 1]).to(device=x.device, dtype=x.dtype)[None, None].expand(x.shape[1], 1, *fd.shape)
        return F.conv2d(x, weight, stride=down, groups=x.shape[1])
