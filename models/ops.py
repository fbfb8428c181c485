"""Pure-PyTorch versions of the StyleGAN2 ops (bias_act, upfirdn2d, conv2d_resample, modulated conv).

They compute what NVIDIA's reference ops compute (same padding, filters, gains and order of operations), so
imported weights give the same pixels up to float rounding, but need no compiled extension: the same code
runs on CPU, CUDA and MPS. Where an equal but cheaper formulation exists it is used instead: on CPU,
transposed convolutions run as ordinary per-phase convolutions; decimation is a convolution stride; and
results this module has just made are updated in place when autograd is not recording.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: list[float]) -> torch.Tensor:
    """The normalised 2-D resampling filter (outer product of `taps`), as stored in `resample_filter` buffers."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)
    return f / f.sum()


def grad_free(*tensors: torch.Tensor | None) -> bool:
    """True when autograd records nothing for these tensors, so a result made from them may be overwritten."""
    return not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None,
    act: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply `act` ('linear' or 'lrelu'), scale by `gain`, then clamp.

    `inplace=True` lets it overwrite `x` (pass only a tensor you own). Either way, once it has made a tensor
    of its own and autograd is not recording, the remaining steps run in place: at 1024² every fresh
    activation is a 128 MiB allocation, which costs more than the arithmetic.
    """
    if act not in ("linear", "lrelu"):
        raise ValueError(f"unsupported activation {act!r}")
    may_overwrite = grad_free(x, b)
    own = inplace and may_overwrite
    if b is not None:
        b = b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
        x = x.add_(b) if own else x + b
        own = may_overwrite
    if act == "lrelu":
        x = F.leaky_relu_(x, 0.2) if own else F.leaky_relu(x, 0.2)
        own = may_overwrite
    if gain != 1:
        x = x.mul_(gain) if own else x * gain
        own = may_overwrite
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if own else x.clamp(-clamp, clamp)
    return x


def _same_layout_as(x: torch.Tensor) -> torch.memory_format:
    if x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def transposed_conv2d(x: torch.Tensor, w: torch.Tensor, stride: int, groups: int = 1) -> torch.Tensor:
    """The unpadded transposed convolution y[o] = Σ_i x[i]·w[o - stride·i] for a weight in conv2d's layout
    [out, in/groups, kh, kw] (F.conv_transpose2d takes the first two axes swapped within each group).

    On CPU it runs as stride² ordinary convolutions, one per output phase, written interleaved into the
    output: no multiplication touches an inserted zero, and oneDNN runs ordinary convolutions 1.3-2× faster
    than transposed ones. GPUs keep their native transposed convolution.
    """
    n, _, h, w_ = x.shape
    kh, kw = w.shape[-2:]
    if x.device.type != "cpu":
        o = w.shape[0] // groups
        wt = w.reshape(groups, o, -1, kh, kw).transpose(1, 2).reshape(-1, o, kh, kw)
        return F.conv_transpose2d(x, wt, stride=stride, groups=groups)
    w = w.flip([2, 3])  # one pass over the weight; the phases below are strided views of it
    out = None
    for a in range(stride):
        for b in range(stride):
            if a >= kh or b >= kw:  # no taps land on this phase (kernel smaller than the stride)
                out[:, :, a::stride, b::stride] = 0
                continue
            # Phase (a, b) of the output takes taps a, a+stride, … of the weight, in reverse order.
            k = w[:, :, (kh - 1 - a) % stride :: stride, (kw - 1 - b) % stride :: stride]
            phase = F.conv2d(x, k, padding=(k.shape[2] - 1, k.shape[3] - 1), groups=groups)
            if out is None:
                size = [n, phase.shape[1], (h - 1) * stride + kh, (w_ - 1) * stride + kw]
                out = torch.empty(size, dtype=phase.dtype, device=phase.device, memory_format=_same_layout_as(phase))
            out[:, :, a::stride, b::stride] = phase
    return out


def _pad_or_crop(x: torch.Tensor, x0: int, x1: int, y0: int, y1: int) -> torch.Tensor:
    if max(x0, x1, y0, y1) > 0:
        x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    return x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), convolve with the 2-D filter `f`, then
    keep every `down`-th sample: NVIDIA's upfirdn2d (flip_filter=False).

    Upsampling runs as a transposed depthwise convolution (the full convolution of the zero-stuffed input),
    from which the padding picks the window; equal padding on both sides goes to the convolution itself, and
    decimation is its stride.
    """
    c = x.shape[1]
    fh, fw = f.shape
    f = (f * gain).to(dtype=x.dtype, device=x.device)  # a 2-D filter takes the whole gain
    px0, px1, py0, py1 = padding
    if up > 1:
        x = transposed_conv2d(x, f[None, None].expand(c, 1, fh, fw), stride=up, groups=c)
        x = _pad_or_crop(x, px0 - (fw - 1), px1 - fw + up, py0 - (fh - 1), py1 - fh + up)
        return x[:, :, ::down, ::down] if down > 1 else x
    weight = f.flip([0, 1])[None, None].expand(c, 1, fh, fw)
    if down > 1 and x.device.type == "cpu" and computes_in(x, torch.bfloat16):
        # oneDNN's backward of a strided depthwise convolution is 3-7x slower in bf16 than in fp32 on a CPU
        # (8×32×64² in D at the bundled width: 14 ms against 4 ms with the casts), so decimation runs in fp32.
        with torch.autocast("cpu", enabled=False):
            return _decimate(x.float(), weight.float(), down, padding).to(torch.bfloat16)
    return _decimate(x, weight, down, padding)


def _decimate(x: torch.Tensor, weight: torch.Tensor, down: int, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Depthwise `weight` over `x`, padded (x0, x1, y0, y1), keeping every `down`-th sample."""
    px0, px1, py0, py1 = padding
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        return F.conv2d(x, weight, stride=down, padding=(py0, px0), groups=x.shape[1])
    return F.conv2d(_pad_or_crop(x, px0, px1, py0, py1), weight, stride=down, groups=x.shape[1])


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2× upsampling with filter `f` (4 taps), keeping the image's energy."""
    fw = f.shape[-1]
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2
    return upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2× downsampling with filter `f` (4 taps)."""
    fw = f.shape[-1]
    p0, p1 = (fw - 1) // 2, (fw - 2) // 2
    return upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1))


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convolution with optional up- or downsampling, padded and filtered as NVIDIA's conv2d_resample, plus
    an optional per-output-channel `bias` (added by the convolution itself where it comes last).

    Without upsampling the weight is correlated with the input (NVIDIA's flip_weight=True); with upsampling
    it goes unflipped into the transposed convolution, which is what NVIDIA's modulated up-convolution does
    (it passes flip_weight=False).
    """
    kh, kw = w.shape[-2:]
    if up > 1:
        fh, fw = f.shape
        # Transposed convolution, then the blur that removes its checkerboard.
        px0, px1 = padding + (fw + up - 1) // 2 - (kw - 1), padding + (fw - up) // 2 - (kw - up)
        py0, py1 = padding + (fh + up - 1) // 2 - (kh - 1), padding + (fh - up) // 2 - (kh - up)
        x = transposed_conv2d(x, w, stride=up, groups=groups)
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1), gain=up**2)
        return x if bias is None else x + bias.reshape(1, -1, 1, 1)
    if down > 1:
        fh, fw = f.shape
        px0, px1 = padding + (fw - down + 1) // 2, padding + (fw - down) // 2
        py0, py1 = padding + (fh - down + 1) // 2, padding + (fh - down) // 2
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
            return F.conv2d(x, w, bias, groups=groups)
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return F.conv2d(x, w, bias, stride=down, groups=groups)
    return F.conv2d(x, w, bias, padding=padding, groups=groups)


def computes_in(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """True when ops on `x` compute in `dtype`: a tensor of it, or autocast to it on its device."""
    kind = x.device.type
    return x.dtype == dtype or (torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == dtype)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution, times `gain`, plus `noise`.

    The default (non-fused) form scales the activations by the styles, runs one ordinary convolution shared
    by the whole batch, and demodulates the outputs: mathematically equal to per-sample weights, and it hits
    the fast dense-convolution path on every device. `fused=True` builds per-sample weights and runs a grouped
    convolution (NVIDIA's inference path); at batch 1 it saves two passes over the activations. A 1×1
    convolution (toRGB) always takes per-sample weights, as a batched matmul: that is cheaper in every case.
    `gain` rides on the demodulation coefficients (or the styles): no pass over the activations.
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if demodulate and computes_in(x, torch.float16):
        # NVIDIA's fp16 safeguard: bring weight (per output channel) and styles (per sample) to unit scale
        # before modulating, so x·styles and the convolution stay inside fp16's range (±65504). Demodulation
        # divides both factors out again, so the result is unchanged.
        weight = weight * (1 / math.sqrt(in_c * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    dcoefs = None
    if demodulate:
        # Per-sample demodulation coefficients, computed in fp32 (also under autocast) without materialising
        # per-sample weights.
        with torch.autocast(x.device.type, enabled=False):
            wsq = weight.float().square().sum(dim=[2, 3])  # [O, I]
            dcoefs = (styles.float().square() @ wsq.t() + 1e-8).rsqrt() * gain  # [N, O]
    elif gain != 1:
        styles = styles * gain

    if kh == 1 and kw == 1 and up == 1 and padding == 0:
        w = weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)  # [N, O, I]
        if dcoefs is not None:
            w = w * dcoefs.to(w.dtype).unsqueeze(2)
        # Pixels as rows, [N, HW, I] @ [N, I, O]: a plain GEMM for channels-last activations (3× faster than
        # [O, I] @ [I, HW] there) and a transposed one for contiguous activations; flatten(2) is a view in both.
        rows = torch.matmul(x.flatten(2).transpose(1, 2), w.transpose(1, 2))  # [N, HW, O]
        x = rows.transpose(1, 2).reshape(n, out_c, *x.shape[2:]).contiguous()
    elif fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
        if dcoefs is not None:
            w = w * dcoefs.to(w.dtype).reshape(n, -1, 1, 1, 1)
        w = w.reshape(-1, in_c, kh, kw)
        if n > 1:
            x = x.reshape(1, -1, *x.shape[2:])
        x = conv2d_resample(x, w, f=resample_filter, up=up, padding=padding, groups=n)
        if n > 1:
            x = x.reshape(n, -1, *x.shape[2:])
    else:
        x = x * styles.reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            d = dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
            if noise is not None:  # one pass, not two
                noise = noise.to(x.dtype)
                return torch.addcmul(noise, x, d, out=x) if grad_free(x, d, noise) else torch.addcmul(noise, x, d)
            x = x.mul_(d) if grad_free(x, d) else x * d
    if noise is not None:
        noise = noise.to(x.dtype)
        x = x.add_(noise) if grad_free(x, noise) else x + noise
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
