"""The resampling ops of StyleGAN3's alias-free layers, in pure PyTorch and fast on a CPU.

NVIDIA's reference path zero-stuffs the activations before filtering them (`upfirdn2d`), so at 2× and 4×
upsampling three quarters to fifteen sixteenths of its multiply-adds touch inserted zeros, on intermediates
of up to 575² × 512 values. Here each axis is resampled separately, and each as a small dense matrix applied
to blocks of samples: a block of `bo` outputs depends on a short window of inputs with the same weights for
every block (the polyphase taps of the filter, zeros never materialised), so the whole pass is a few plain
matrix multiplications over views of the input, which BLAS runs at full speed in fp32 and bf16 alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_BLOCK_OUTPUTS = 32  # outputs per block: larger blocks waste more multiplications on zero taps, smaller ones
# call more, smaller matrix products; 16-64 measured within noise of each other


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


def _block_matrix(g: torch.Tensor, up: int, down: int, pad0: int, bo: int) -> tuple[torch.Tensor, int]:
    """For y[n] = Σ_i x[i]·g[up·i − down·n + pad0] (g the flipped filter): the weights [window, bo] that a block
    of `bo` outputs gives its input window, and the window's first input index for the block starting at 0."""
    k = g.shape[0]
    first = -(pad0 // up)  # ceil(-pad0 / up)
    last = (down * (bo - 1) - pad0 + k - 1) // up
    i = torch.arange(first, last + 1)[:, None]
    n = torch.arange(bo)[None, :]
    tap = up * i - down * n + pad0
    inside = (tap >= 0) & (tap < k)
    return torch.where(inside, g[tap.clamp(0, k - 1)], torch.zeros((), dtype=g.dtype)), first


def upfirdn1d(
    x: torch.Tensor,
    f: torch.Tensor,
    dim: int,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """NVIDIA's `upfirdn2d` along one axis of `x`: insert up−1 zeros after each sample, pad (negative crops),
    convolve with the 1-D filter `f` times `gain`, keep every `down`-th sample; without ever inserting zeros.

    The axis is cut into blocks of `step` inputs; output block j is Σ_t block_(j+t) @ M_t, where the M_t are
    consecutive `step`-row slices of the block matrix, so every term is one matrix product over a view.
    """
    dim %= x.ndim
    length, k = x.shape[dim], f.shape[0]
    out_len = (length * up + pad[0] + pad[1] - k) // down + 1
    if out_len <= 0:
        raise ValueError(f"resampling {length} samples with {k} taps and padding {pad} leaves no output")
    bo = _BLOCK_OUTPUTS
    while (bo * down) % up:
        bo += 1
    step = bo * down // up
    g = (f.to(torch.float64) * gain).flip(0)
    matrix, first = _block_matrix(g, up, down, pad[0], bo)
    terms = -(-matrix.shape[0] // step)
    matrix = F.pad(matrix, [0, 0, 0, terms * step - matrix.shape[0]]).to(device=x.device, dtype=x.dtype)
    blocks = -(-out_len // bo) + terms - 1  # the last terms-1 blocks only feed outputs that are cropped
    left, right = -first, first + blocks * step - length
    if left < 0 or right < 0:  # the window starts or ends inside the input: crop instead of padding
        x = x.narrow(dim, max(-left, 0), length - max(-left, 0) - max(-right, 0))
    x = F.pad(x, [0, 0] * (x.ndim - 1 - dim) + [max(left, 0), max(right, 0)]).contiguous()
    inner = math.prod(x.shape[dim + 1 :])
    rows = x.numel() // (step * inner)
    used = rows - (terms - 1)  # block rows whose later neighbours exist; the rest are cropped below
    if torch.is_grad_enabled() and x.requires_grad:  # training: autograd records no `out=` or in-place products
        if inner == 1:
            xb = x.view(rows, step)
            out = sum(xb[t : t + used] @ matrix[t * step : (t + 1) * step] for t in range(terms))
        else:
            xb, mt = x.view(rows, step, inner), matrix.t()
            out = sum(mt[:, t * step : (t + 1) * step] @ xb[t : t + used] for t in range(terms))
        out = F.pad(out, [0, 0] * (out.ndim - 1) + [0, terms - 1])  # the rows that only cropped outputs read
    elif inner == 1:  # the last axis: blocks are rows of a matrix, weights multiply from the right
        xb = x.view(rows, step)
        out = x.new_empty([rows, bo])
        torch.mm(xb[:used], matrix[:step], out=out[:used])
        for t in range(1, terms):
            out[:used].addmm_(xb[t : t + used], matrix[t * step : (t + 1) * step])
    else:  # an inner axis: each block is a [step, inner] matrix, weights multiply from the left
        xb = x.view(rows, step, inner)
        mt = matrix.t()
        out = x.new_empty([rows, bo, inner])
        torch.matmul(mt[:, :step], xb[:used], out=out[:used])
        for t in range(1, terms):
            out[:used].baddbmm_(mt[:, t * step : (t + 1) * step].expand(used, bo, step), xb[t : t + used])
    out = out.view(*x.shape[:dim], blocks * bo, *x.shape[dim + 1 :])
    return out.narrow(dim, 0, out_len)


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

    Runs in place on tensors it made itself when autograd is not recording; differentiable when it is.
    """
    x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    px0, px1, py0, py1 = padding
    if fu is not None or up > 1 or any(padding):
        fu = torch.ones(1) if fu is None else fu
        if fu.ndim != 1:
            raise ValueError("upsampling filters of StyleGAN3 are 1-D (separable)")
        x = upfirdn1d(x, fu, dim=3, up=up, pad=(px0, px1), gain=up)
        x = upfirdn1d(x, fu, dim=2, up=up, pad=(py0, py1), gain=up)
    in_place = not torch.is_grad_enabled() or not x.requires_grad
    if slope != 1:
        x = F.leaky_relu_(x, slope) if in_place else F.leaky_relu(x, slope)
    if gain != 1:
        x = x.mul_(gain) if in_place else x * gain
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if in_place else x.clamp(-clamp, clamp)
    if fd is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    if fd.ndim == 1:
        x = upfirdn1d(x, fd, dim=3, down=down)
        return upfirdn1d(x, fd, dim=2, down=down)
    # A radial filter is not separable: one depthwise convolution, decimating through its stride.
    c = x.shape[1]
    weight = fd.flip([0, 1]).to(device=x.device, dtype=x.dtype)[None, None].expand(c, 1, *fd.shape)
    return F.conv2d(x, weight, stride=down, groups=c)
