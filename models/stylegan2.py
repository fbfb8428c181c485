"""StyleGAN2 generator and discriminator, written for GAN Studio.

Parameter and buffer names, shapes and constructor keyword arguments are exactly those of NVIDIA's
StyleGAN2-ADA networks (skip generator, resnet discriminator), so their weights load one to one. The
generator adds the controls the studio needs: z, w or per-layer w+ input, truncation with a cutoff and a
custom centre, style mixing, noise modes with a global strength, and early exit for fast previews.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from models import ops

NoiseMode = Literal["const", "random", "none"]

# Defaults of the two codebases that write StyleGAN2 network pickles; missing kwargs take their writer's.
SCHEMA_DEFAULTS: dict[str, dict[str, Any]] = {
    "stylegan2-ada": {"num_fp16_res": 0, "conv_clamp": None, "w_avg_beta": 0.995},
    "stylegan3": {"num_fp16_res": 4, "conv_clamp": 256, "w_avg_beta": 0.998},
}


class FullyConnectedLayer(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation, gain=ops.LRELU_GAIN)


class MappingNetwork(nn.Module):
    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(ops.normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            parts.append(ops.normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


def truncate(
    ws: torch.Tensor, centre: torch.Tensor, psi: float, cutoff: int | None = None
) -> torch.Tensor:
    """Pull per-layer latents `ws` [N, L, C] toward `centre` ([C] or [L, C]) by `psi`, for the first `cutoff` layers."""
    centre = centre.to(ws.dtype)
    if cutoff is None:
        return centre.lerp(ws, psi)
    ws = ws.clone()
    c = centre if centre.ndim == 1 else centre[:cutoff]
    ws[:, :cutoff] = c.lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode = "random",
        noise_scale: float = 1.0,
        fused: bool = False,
        gain: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        # Leaky ReLU commutes with a positive scale, so its gain is applied before it, where it is free: on the
        # demodulation coefficients, the noise strength and the bias.
        out_gain = ops.LRELU_GAIN * gain
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode != "none" and noise_scale != 0:
            strength = self.noise_strength * (noise_scale * out_gain)
            if noise_mode == "random":
                shape = [x.shape[0], 1, self.resolution, self.resolution]
                rnd = torch.randn(shape, device=x.device, generator=generator)
                noise = rnd * strength
            else:
                noise = self.noise_const * strength
        x = ops.modulated_conv2d(
            x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, fused=fused, gain=out_gain,
        )
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias * out_gain, act=self.activation, clamp=act_clamp, inplace=True)


class ToRGBLayer(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = False) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp, inplace=True)


class SynthesisBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_noise: bool = True,
        activation: str = "lrelu",
    ):
        if architecture != "skip":
            raise ValueError(f"only the 'skip' generator architecture is supported, not {architecture!r}")
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 1
        layer_kwargs = dict(use_noise=use_noise, activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, resample_filter=resample_filter,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        fused: bool = False,
        memory_format: torch.memory_format = torch.contiguous_format,
        **layer_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
        else:
            x = self.conv0(x, next(w_iter), fused=fused, **layer_kwargs)
        x = self.conv1(x, next(w_iter), fused=fused, **layer_kwargs)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused=fused).float()
        if img is None:
            img = y
        else:  # y is a fresh contiguous tensor; the upsampled img is a cropped view
            img = y.add_(img) if ops.grad_free(img, y) else y + img
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs: Any,
    ):
        log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
        if img_resolution < 4 or img_resolution > 4096 or 2**log2 != img_resolution:
            raise ValueError(f"resolution must be a power of two from 4 to 4096, not {img_resolution}")
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        # Kept for interoperability with files that record it; bf16/fp16 here comes from autocast instead.
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.channels = channels
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, channels[res], w_dim, res, img_channels, is_last=(res == img_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1
        # Activation layout. None picks channels-last for inference on CPU, where oneDNN's convolutions and
        # the per-phase up-convolutions run 15-40% faster on it from 256 px up (and no slower below); with
        # autograd recording (training) the contiguous layout measured faster, as it is on other devices.
        self.channels_last: bool | None = None

    def w_slices(self) -> dict[int, tuple[int, int]]:
        """For each block resolution, the (start, count) of the ws it reads (its torgb shares the next conv0's w)."""
        out, idx = {}, 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            out[res] = (idx, block.num_conv + block.num_torgb)
            idx += block.num_conv
        return out

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "random",
        noise_scale: float = 1.0,
        fused: bool = False,
        stop_at: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] → images [N, C, R, R] in about [-1, 1]; `stop_at` returns that block's RGB."""
        if stop_at is not None and stop_at not in self.block_resolutions:
            raise ValueError(f"stop_at must be one of {self.block_resolutions}, not {stop_at}")
        channels_last = self.channels_last
        if channels_last is None:
            channels_last = ws.device.type == "cpu" and not torch.is_grad_enabled()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        x = img = None
        for res, (start, count) in self.w_slices().items():
            block = getattr(self, f"b{res}")
            x, img = block(
                x, img, ws.narrow(1, start, count), fused=fused, memory_format=memory_format,
                noise_mode=noise_mode, noise_scale=noise_scale, generator=generator,
            )
            if res == stop_at:
                break
        return img


class Generator(nn.Module):
    """StyleGAN2 generator; accepts both NVIDIA kwarg schemas (nested `synthesis_kwargs` or flat)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
        **flat_synthesis_kwargs: Any,
    ):
        super().__init__()
        synthesis_kwargs = {**(synthesis_kwargs or {}), **flat_synthesis_kwargs}
        # Options of the StyleGAN3 repo's training code with no effect on a StyleGAN2 network's pixels.
        for key in ("magnitude_ema_beta", "fused_modconv_default", "fp16_channels_last"):
            synthesis_kwargs.pop(key, None)
        self.init_kwargs = dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
            img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs or {}),
            synthesis_kwargs=dict(synthesis_kwargs),
        )
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

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
        return self.synthesis(ws, **synthesis_kwargs)

    # --- inference controls used by the studio -------------------------------------------------------

    def z_to_w(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Untruncated w [N, w_dim] for latents z."""
        return self.mapping(z, c)[:, 0]

    def to_ws(self, latent: torch.Tensor) -> torch.Tensor:
        """Broadcast w [N, w_dim] to w+ [N, num_ws, w_dim]; w+ passes through unchanged."""
        if latent.ndim == 2:
            return latent.unsqueeze(1).repeat([1, self.num_ws, 1])
        if latent.ndim == 3 and latent.shape[1] == self.num_ws:
            return latent
        raise ValueError(
            f"expected w [N, {self.w_dim}] or w+ [N, {self.num_ws}, {self.w_dim}], got {tuple(latent.shape)}"
        )

    def render(
        self,
        latent: torch.Tensor,
        kind: Literal["z", "w", "ws"] = "z",
        c: torch.Tensor | None = None,
        psi: float = 1.0,
        cutoff: int | None = None,
        centre: torch.Tensor | None = None,
        mix: Sequence[tuple[torch.Tensor, Sequence[int]]] = (),
        noise_mode: NoiseMode = "const",
        noise_scale: float = 1.0,
        stop_at: int | None = None,
        fused: bool = False,
        generator: torch.Generator | None = None,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """Render images from z, w or w+; truncation toward `centre` (default w_avg), then style mixing.

        `mix` is a list of (w or w+ source, layer indices): those layers take the source's latents.
        `synthesis_kwargs` go to the synthesis network (StyleGAN3's `transform`, which shares this method).
        """
        ws = self.to_ws(self.z_to_w(latent, c)) if kind == "z" else self.to_ws(latent)
        if psi != 1:
            ws = truncate(ws, self.mapping.w_avg if centre is None else centre, psi, cutoff)
        if mix:
            ws = ws.clone()
            for source, layers in mix:
                src = self.to_ws(source.to(ws.dtype)).expand(ws.shape[0], -1, -1)
                idx = torch.as_tensor(list(layers), dtype=torch.long, device=ws.device)
                ws[:, idx] = src[:, idx]
        return self.synthesis(
            ws, noise_mode=noise_mode, noise_scale=noise_scale, stop_at=stop_at, fused=fused,
            generator=generator, **synthesis_kwargs,
        )


class Conv2dLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = ops.LRELU_GAIN if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # Linear and leaky ReLU commute with a positive scale, so the output gain rides on the weight and bias
        # (no pass over the activations), and the convolution adds the bias itself.
        out_gain = self.act_gain * gain
        w = self.weight.to(x.dtype) * (self.weight_gain * out_gain)
        b = self.bias.to(x.dtype) * out_gain if self.bias is not None else None
        x = ops.conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding, bias=b)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, None, act=self.activation, clamp=act_clamp, inplace=True)


class DiscriminatorBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        if architecture != "resnet":
            raise ValueError(f"only the 'resnet' discriminator architecture is supported, not {architecture!r}")
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        kw = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, **kw)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, **kw)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter, **kw
        )
        self.skip = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
        )

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y.add_(x) if ops.grad_free(y, x) else y + x


class MinibatchStdLayer(nn.Module):
    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        while n % g:  # NVIDIA's layer needs N divisible by the group; take the largest group that divides it.
            g -= 1
        f = self.num_channels
        y = x.float().reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap.to(x.dtype)).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 resnet discriminator with minibatch standard deviation; NVIDIA's names and kwargs."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ):
        super().__init__()
        self.init_kwargs = dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp, cmap_dim=cmap_dim, block_kwargs=dict(block_kwargs or {}),
            mapping_kwargs=dict(mapping_kwargs or {}), epilogue_kwargs=dict(epilogue_kwargs or {}),
        )
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(
                in_channels, channels[res], channels[res // 2], res, **(block_kwargs or {}), **common
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def blocks(self) -> list[nn.Module]:
        """Blocks from the image end, so `freeze_d=k` can freeze the first k."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = None
        for block in self.blocks():
            x = block(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)


def generator_from_kwargs(kwargs: dict[str, Any], schema: str = "stylegan2-ada") -> Generator:
    """Build a generator from recorded init kwargs, filling what the file leaves out with its writer's defaults."""
    kwargs = {**kwargs}
    defaults = SCHEMA_DEFAULTS[schema]
    mapping = {"w_avg_beta": defaults["w_avg_beta"], **(kwargs.pop("mapping_kwargs", None) or {})}
    synthesis = {**(kwargs.pop("synthesis_kwargs", None) or {})}
    for key in list(kwargs):
        if key not in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
            synthesis[key] = kwargs.pop(key)
    synthesis.setdefault("num_fp16_res", defaults["num_fp16_res"])
    synthesis.setdefault("conv_clamp", defaults["conv_clamp"])
    return Generator(**kwargs, mapping_kwargs=mapping, synthesis_kwargs=synthesis)


def discriminator_from_kwargs(kwargs: dict[str, Any], schema: str = "stylegan2-ada") -> Discriminator:
    kwargs = {**kwargs}
    defaults = SCHEMA_DEFAULTS[schema]
    kwargs.setdefault("num_fp16_res", defaults["num_fp16_res"])
    kwargs.setdefault("conv_clamp", defaults["conv_clamp"])
    return Discriminator(**kwargs)
