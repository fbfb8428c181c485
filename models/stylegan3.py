"""StyleGAN3 (alias-free) generator, written for GAN Studio.

Parameter and buffer names, shapes and constructor keyword arguments are exactly those of NVIDIA's
`networks_stylegan3.Generator` (configs T and R), so their pickles load one to one and give the same pixels.
The mapping network is StyleGAN2's (identical names and maths). The filtered leaky ReLU runs through
`models.alias_free`, which never materialises zero-stuffed intermediates.

For the studio it adds what StyleGAN2's generator offers (z, w or w+ input, truncation with a cutoff and
centre, style mixing) plus StyleGAN3's own control: `transform`, a 3×3 matrix replacing the input layer's
`transform` buffer for one render, which translates and rotates the image continuously (`make_transform`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import stylegan2
from models.alias_free import design_lowpass_filter, filtered_lrelu
from models.stylegan2 import FullyConnectedLayer, MappingNetwork


def make_transform(translate: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> torch.Tensor:
    """The input `transform` that shows the image moved by `translate` (x right, y down, in image widths) and
    rotated by `angle` degrees: the inverse of that motion, as NVIDIA's gen_images.py builds it."""
    s, c = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    m = torch.tensor(
        [[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    return torch.linalg.inv(m).float()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN3's modulated convolution: per-sample weights in one grouped convolution.

    With demodulation the weight and styles are first normalised by their RMS (the styles' over the whole
    batch, as in NVIDIA's code), which keeps fp16 in range and changes the result only through the 1e-8.
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    styles = styles.float()
    weight = weight.float()
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if input_gain is not None:
        w = w * input_gain
    if n == 1:  # as it is: reshaping would lose the channels-last layout that oneDNN's convolution keeps
        return F.conv2d(x, w[0].to(x.dtype), padding=padding)
    x = x.reshape(1, -1, *x.shape[2:])
    x = F.conv2d(x, w.reshape(-1, in_c, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


class SynthesisInput(nn.Module):
    """Fourier features of random frequencies within the first layer's band, rotated and translated by w."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        # Frequencies drawn uniformly from a disc of radius `bandwidth`; phases uniform.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=0)
        with torch.no_grad():  # starts as the identity: no rotation, no translation
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))  # user-specified inverse transform of the output
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        n = w.shape[0]
        user = (self.transform if transform is None else transform.to(self.transform)).reshape(-1, 3, 3)
        t = self.affine(w.float())  # (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).repeat([n, 1, 1])  # inverse rotation of the image
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=w.device).repeat([n, 1, 1])  # inverse translation of the image
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ user  # rotate the image, then translate it, then the user's transform

        freqs, phases = self.freqs.unsqueeze(0), self.phases.unsqueeze(0)
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # Damp frequencies that the user's transform pushed out of band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(
            0, 1
        )
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        height, width = int(self.size[1]), int(self.size[0])
        grids = F.affine_grid(theta.unsqueeze(0), [1, 1, height, width], align_corners=False)  # [1, H, W, 2]
        x = grids.reshape(1, -1, 2) @ freqs.transpose(1, 2)  # [N, H·W, C]
        x = torch.sin((x + phases.unsqueeze(1)) * (2 * math.pi)) * amplitudes.unsqueeze(1)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        # [N, H, W, C] memory viewed as NCHW: the channels-last layout the first convolution prefers.
        return x.reshape(n, height, width, self.channels).permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated convolution followed by the filtered leaky ReLU (upsample, activate, downsample)."""

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size: int,
        out_size: int,
        in_sampling_rate: float,
        out_sampling_rate: float,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.use_fp16 = use_fp16  # recorded for interoperability; reduced precision here comes from autocast
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate or (
            out_sampling_rate * self.down_factor != self.tmp_sampling_rate
        ):
            raise ValueError("sampling rates must divide the layer's internal sampling rate")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer(
            "up_filter",
            design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate),
        )
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial
            ),
        )
        # Padding: the output samples sit where the symmetric interpretation puts them (paper, appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        if update_emas:
            magnitude = x.detach().float().square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(
            x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        return filtered_lrelu(
            x, self.up_filter, self.down_filter, self.bias, up=self.up_factor, down=self.down_factor,
            padding=self.padding, gain=1 if self.is_torgb else math.sqrt(2), slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        **layer_kwargs: Any,
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res

        # Cutoffs and minimum stopbands grow geometrically up to the last critically sampled layers.
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(
            w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]), sampling_rate=sampling_rates[0],
            bandwidth=cutoffs[0],
        )
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(sampling_rates[idx] * 2**num_fp16_res > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx],
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)
        # Early exits for previews: sampling rate -> (index of the last layer at that rate, its RGB head). Heads
        # are fitted to full renders (`fit_previews`), are no part of the network's state, and start unfitted.
        self.preview_heads: dict[int, torch.Tensor] = {}
        self._exits = {int(rate): idx for idx, rate in enumerate(sampling_rates) if rate < img_resolution}

    @property
    def preview_resolutions(self) -> list[int]:
        """The sampling rates below the image's, where `forward(stop_at=...)` can stop for a preview."""
        return sorted(self._exits)

    def forward(
        self,
        ws: torch.Tensor,
        transform: torch.Tensor | None = None,
        update_emas: bool = False,
        stop_at: int | None = None,
        fit_previews: bool = False,
        **_unused: Any,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] → images [N, C, R, R] in about [-1, 1].

        `stop_at` (one of `preview_resolutions`; the image's own resolution means the full image) stops early
        for a preview [N, C, stop_at, stop_at]: the features of the last layer at that sampling rate, less their
        margin, through a linear RGB head. StyleGAN3 has no RGB output below full resolution, so each head is
        fitted by least squares to the last full render made with `fit_previews` (a slider's previews stay close
        to the image it started from); ValueError while none is. Noise options of StyleGAN2 (`noise_mode`, …) are
        accepted and have no effect (no noise inputs).
        """
        stop_at = None if stop_at == self.img_resolution else stop_at  # the full image is no early exit
        if stop_at is not None and stop_at not in self.preview_heads:
            fitted = sorted(self.preview_heads) or "none yet"
            raise ValueError(f"no preview head at {stop_at} px: fitted at {fitted}, of {self.preview_resolutions}")
        if stop_at is not None:
            exits = {self._exits[stop_at]: stop_at}
        else:
            exits = {idx: rate for rate, idx in self._exits.items()} if fit_previews else {}
        ws = ws.float().unbind(dim=1)
        x = self.input(ws[0], transform)
        features = {}
        for idx, (name, w) in enumerate(zip(self.layer_names, ws[1:], strict=False)):
            x = getattr(self, name)(x, w, update_emas=update_emas)
            if idx in exits:
                features[exits[idx]] = self._inner(x, exits[idx])
                if stop_at is not None:
                    return self._preview(features[stop_at], self.preview_heads[stop_at])
        if self.output_scale != 1:
            x = x * self.output_scale
        x = x.float()
        for rate, inner in features.items():
            self.preview_heads[rate] = fit_preview_head(inner, F.avg_pool2d(x.detach(), self.img_resolution // rate))
        return x

    @staticmethod
    def _inner(x: torch.Tensor, rate: int) -> torch.Tensor:
        """The samples of a layer's output that lie on the image (its margin cropped), fp32."""
        margin = (x.shape[-1] - rate) // 2
        return x.detach().float()[:, :, margin : margin + rate, margin : margin + rate]

    @staticmethod
    def _preview(features: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        rows = features.permute(0, 2, 3, 1) @ head[:-1].to(features.device)  # [N, r, r, C]
        return (rows + head[-1].to(features.device)).permute(0, 3, 1, 2).contiguous()


PREVIEW_FIT_SAMPLES = 4096  # pixels a preview head is fitted on: many more than its unknowns, and fast to solve


def fit_preview_head(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The [C + 1, channels] linear map (bias last) from features [N, C, r, r] to the image [N, channels, r, r]
    at the same sampling positions, by ridge-regularised least squares over an even spread of its pixels."""
    x = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).double()
    y = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1]).double()
    step = max(1, len(x) // PREVIEW_FIT_SAMPLES)
    x = torch.cat([x[::step], torch.ones_like(x[::step, :1])], dim=1)
    gram = x.t() @ x
    ridge = 1e-4 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge, x.t() @ y[::step]).float()


class Generator(nn.Module):
    """StyleGAN3 generator with NVIDIA's flat kwargs: synthesis options sit beside `mapping_kwargs`."""

    family = "stylegan3"

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs: Any,
    ):
        super().__init__()
        # Options of NVIDIA's training code with no effect on this network's pixels.
        synthesis_kwargs.pop("fp16_channels_last", None)
        self.init_kwargs = dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            mapping_kwargs=dict(mapping_kwargs or {}), **synthesis_kwargs,
        )
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        mapping = {"num_layers": 2, "w_avg_beta": 0.998, **(mapping_kwargs or {})}
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping)

    @property
    def config(self) -> str:
        """'T' (translation equivariant) or 'R' (also rotation: 1×1 convolutions and radial filters)."""
        return "R" if self.init_kwargs.get("use_radial_filters") else "T"

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

    # The studio's latent controls are StyleGAN2's: the same mapping network and w+ layout.
    z_to_w = stylegan2.Generator.z_to_w
    to_ws = stylegan2.Generator.to_ws
    render = stylegan2.Generator.render


def generator_from_kwargs(kwargs: dict[str, Any]) -> Generator:
    """Build from recorded init kwargs; what the file leaves out takes the StyleGAN3 code's defaults, which
    are this class's."""
    return Generator(**kwargs)
