"""rosinality `stylegan2-pytorch` checkpoints (`.pt`): converted files and training snapshots.

Loaded with `torch.load(weights_only=True)`; the weights map one to one onto NVIDIA's names (no transposes
or flips). The architecture is read from the tensor shapes, since these files record no settings of their
own (training snapshots carry an `argparse.Namespace` whose `channel_multiplier` only breaks ties).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import torch

from models import ops
from models.checkpoints.bundle import CheckpointBundle, build_bundle, dataset_name, materialize
from models.checkpoints.errors import CheckpointError
from models.checkpoints.limits import check_extent, check_network_settings
from models.checkpoints.safe_pickle import BoundedReader, UnsafeContent, weights_only_load
from models.stylegan2 import Discriminator, Generator, discriminator_from_kwargs, generator_from_kwargs

W_AVG_SAMPLES = 4096  # latents averaged for w_avg when a file has no latent_avg, as rosinality's mean_latent


def load_rosinality(path: Path, sha256: str, device: str | torch.device) -> CheckpointBundle:
    try:
        with BoundedReader(path) as file:  # a file object: torch.load must not judge the format by the name
            ckpt = weights_only_load(file, extra_globals=(argparse.Namespace,))
    except UnsafeContent as exc:
        raise CheckpointError(path, str(exc), refused=True) from None
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(path, f"the torch file is truncated or corrupt ({exc})") from None
    _check_tensor_extents(path, ckpt)
    if isinstance(ckpt, dict) and "style.1.weight" in ckpt:
        ckpt = {"g_ema": ckpt}  # a bare generator state_dict
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        found = ", ".join(sorted(map(str, ckpt))[:8]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(path, f"it holds no rosinality generator (g_ema); it has {found or 'nothing'}")
    args = ckpt.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else {}
    if args.get("arch", "stylegan2") != "stylegan2":
        raise CheckpointError(
            path, f"it holds a rosinality {args['arch']!r} network; only stylegan2 is supported"
        )
    multiplier = args.get("channel_multiplier")
    base_hint = 16384 * multiplier if isinstance(multiplier, int) else None

    training: dict[str, Any] = {"writer": "rosinality stylegan2-pytorch"}
    if isinstance(args.get("path"), str):
        training["dataset"] = dataset_name(args["path"])
    if args:
        training["args"] = {k: v for k, v in args.items() if isinstance(v, (bool, int, float, str))}
    latent_avg = ckpt.get("latent_avg")
    G_ema = _generator(path, "g_ema", ckpt["g_ema"], base_hint, latent_avg)
    if latent_avg is None:
        training["w_avg"] = f"estimated from {W_AVG_SAMPLES} random latents (the file has no latent_avg)"
    G = _generator(path, "g", ckpt["g"], base_hint, latent_avg) if isinstance(ckpt.get("g"), dict) else None
    D = _discriminator(path, ckpt["d"], base_hint) if isinstance(ckpt.get("d"), dict) else None
    augment_p = ckpt.get("ada_aug_p")
    augment_p = float(augment_p) if isinstance(augment_p, (int, float, torch.Tensor)) else None
    return build_bundle(
        G_ema=G_ema,
        G=G,
        D=D,
        augment_p=augment_p,
        source_format="rosinality",
        source_name=path.name,
        source_sha256=sha256,
        training=training,
        device=device,
    )


def _check_tensor_extents(path: Path, ckpt: Any) -> None:
    """Every tensor in the file lies inside its storage (torch.load checks reads past the end, but not a
    stride-0 view that would become terabytes once copied)."""
    pending, seen = [("", ckpt)], set()
    while pending:
        where, value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            numel = value.untyped_storage().nbytes() // value.element_size()
            shape, stride = tuple(value.shape), value.stride()
            try:
                check_extent(f"its tensor {where}", numel, value.storage_offset(), shape, stride)
            except ValueError as exc:
                raise CheckpointError(path, f"{exc}: the file is damaged") from None
        elif isinstance(value, dict | argparse.Namespace):
            items = vars(value) if isinstance(value, argparse.Namespace) else value
            pending.extend((f"{where}.{key}".lstrip("."), item) for key, item in items.items())
        elif isinstance(value, list | tuple):
            pending.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


class _Weights:
    """A rosinality state_dict read key by key, so that a missing or left-over key is reported by name."""

    def __init__(self, path: Path, what: str, state: dict):
        self.path, self.what, self.state, self.used = path, what, state, set()

    def __call__(self, key: str, shape: list[int] | None = None) -> torch.Tensor:
        tensor = self.state.get(key)
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(self.path, f"its {self.what} lacks the tensor {key}")
        if shape is not None and list(tensor.shape) != shape:
            found = list(tensor.shape)
            raise CheckpointError(self.path, f"its {self.what} tensor {key} is {found}, expected {shape}")
        self.used.add(key)
        return tensor.float()

    def count(self, pattern: str, start: int = 0) -> int:
        """How many consecutive indices from `start` have a `pattern` key."""
        n = start
        while pattern.format(n) in self.state:
            n += 1
        return n - start

    def kernel(self, key: str, gain: float) -> torch.Tensor:
        """A blur kernel as NVIDIA's `resample_filter`: only [1,3,3,1], the filter rosinality always uses."""
        expected = ops.setup_filter([1, 3, 3, 1])
        if not torch.allclose(self(key) / gain, expected, atol=1e-6):
            raise CheckpointError(
                self.path, f"its {self.what} blurs with a kernel other than [1,3,3,1] ({key})"
            )
        return expected

    def check_all_used(self) -> None:
        if left := sorted(k for k in self.state if k not in self.used):
            raise CheckpointError(
                self.path, f"its {self.what} has tensors a StyleGAN2 network does not: {', '.join(left[:4])}"
            )


def _channel_layout(
    path: Path, what: str, channels: dict[int, int], base_hint: int | None
) -> tuple[int, int]:
    """(channel_base, channel_max) reproducing `channels` by StyleGAN2's rule min(base // res, max)."""
    cmax = max(channels.values())
    candidates = [base_hint] if base_hint else []
    if below := [r for r in sorted(channels) if channels[r] < cmax]:
        candidates.append(channels[below[0]] * below[0])
    candidates.append(cmax * max(channels))
    for base in candidates:
        if all(min(base // r, cmax) == c for r, c in channels.items()):
            return base, cmax
    raise CheckpointError(path, f"its {what} channel counts {channels} do not follow StyleGAN2's layout")


def _generator(path: Path, what: str, state: dict, base_hint: int | None, latent_avg: Any) -> Generator:
    take = _Weights(path, what, state)
    n_mlp = take.count("style.{}.weight", start=1)  # style.0 is the PixelNorm
    if n_mlp == 0 or "input.input" not in state:
        raise CheckpointError(path, f"its {what} is not a rosinality StyleGAN2 generator (no style.1, input)")
    w_dim, z_dim = take("style.1.weight").shape
    num_blocks = take.count("to_rgbs.{}.conv.weight")
    resolutions = [4 * 2**i for i in range(num_blocks + 1)]
    channels = {4: take("input.input").shape[1]}
    for i, res in enumerate(resolutions[1:]):
        channels[res] = take(f"convs.{2 * i}.conv.weight").shape[1]
    channel_base, channel_max = _channel_layout(path, what, channels, base_hint)
    img_channels = take("to_rgb1.conv.weight").shape[1]
    kwargs = dict(
        z_dim=z_dim,
        c_dim=0,
        w_dim=w_dim,
        img_resolution=resolutions[-1],
        img_channels=img_channels,
        mapping_kwargs=dict(num_layers=n_mlp),
        synthesis_kwargs=dict(
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=0, conv_clamp=None
        ),
    )

    f = ops.setup_filter([1, 3, 3, 1])
    w: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        w[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        w[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != w_dim:
            raise CheckpointError(path, f"its latent_avg is not a vector of {w_dim} numbers")
        w["mapping.w_avg"] = latent_avg.float().reshape(w_dim)
    else:
        w["mapping.w_avg"] = torch.zeros(w_dim)  # estimated below, once the mapping network exists
    w["synthesis.b4.const"] = take("input.input")[0]

    def layer(dst: str, src: str, noise: int, res: int, up: bool) -> None:
        c_in, c_out = channels[res // 2 if up else res], channels[res]
        w[f"{dst}.weight"] = take(f"{src}.conv.weight", [1, c_out, c_in, 3, 3])[0]
        w[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        w[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        w[f"{dst}.noise_strength"] = take(f"{src}.noise.weight", [1]).reshape([])
        w[f"{dst}.noise_const"] = take(f"noises.noise_{noise}", [1, 1, res, res])[0, 0]
        w[f"{dst}.bias"] = take(f"{src}.activate.bias")
        w[f"{dst}.resample_filter"] = take.kernel(f"{src}.conv.blur.kernel", 4) if up else f

    def torgb(dst: str, src: str) -> None:
        w[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        w[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        w[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        w[f"{dst}.bias"] = take(f"{src}.bias", [1, img_channels, 1, 1]).reshape(img_channels)

    layer("synthesis.b4.conv1", "conv1", 0, 4, up=False)
    torgb("synthesis.b4.torgb", "to_rgb1")
    w["synthesis.b4.resample_filter"] = f
    for i, res in enumerate(resolutions[1:], start=1):
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * i - 2}", 2 * i - 1, res, up=True)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * i - 1}", 2 * i, res, up=False)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i - 1}")
        w[f"synthesis.b{res}.resample_filter"] = take.kernel(f"to_rgbs.{i - 1}.upsample.kernel", 4)
    take.check_all_used()

    check_network_settings(path, what, kwargs)
    G = materialize(path, what, lambda: generator_from_kwargs(kwargs), w)
    if latent_avg is None:
        z = torch.randn([W_AVG_SAMPLES, z_dim], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            G.mapping.w_avg.copy_(G.z_to_w(z).mean(dim=0))
    return G


def _discriminator(path: Path, state: dict, base_hint: int | None) -> Discriminator:
    what = "d"
    take = _Weights(path, what, state)
    from_rgb = take("convs.0.0.weight")
    num_blocks = take.count("convs.{}.conv1.0.weight", start=1)
    size = 4 * 2**num_blocks
    channels = {size: from_rgb.shape[0]}
    for k in range(1, num_blocks + 1):
        res = size // 2 ** (k - 1)
        channels[res // 2] = take(f"convs.{k}.conv2.1.weight").shape[0]
    channel_base, channel_max = _channel_layout(path, what, channels, base_hint)
    kwargs = dict(
        c_dim=0,
        img_resolution=size,
        img_channels=from_rgb.shape[1],
        architecture="resnet",
        channel_base=channel_base,
        channel_max=channel_max,
        num_fp16_res=0,
        conv_clamp=None,
        epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=1),
    )

    f = ops.setup_filter([1, 3, 3, 1])
    w: dict[str, torch.Tensor] = {
        f"b{size}.fromrgb.weight": from_rgb,
        f"b{size}.fromrgb.bias": take("convs.0.1.bias"),
        f"b{size}.fromrgb.resample_filter": f,
    }
    for k in range(1, num_blocks + 1):
        res, src = size // 2 ** (k - 1), f"convs.{k}"
        w.update(
            {
                f"b{res}.resample_filter": f,
                f"b{res}.conv0.weight": take(f"{src}.conv1.0.weight"),
                f"b{res}.conv0.bias": take(f"{src}.conv1.1.bias"),
                f"b{res}.conv0.resample_filter": f,
                f"b{res}.conv1.weight": take(f"{src}.conv2.1.weight"),
                f"b{res}.conv1.bias": take(f"{src}.conv2.2.bias"),
                f"b{res}.conv1.resample_filter": take.kernel(f"{src}.conv2.0.kernel", 1),
                f"b{res}.skip.weight": take(f"{src}.skip.1.weight"),
                f"b{res}.skip.resample_filter": take.kernel(f"{src}.skip.0.kernel", 1),
            }
        )
    w.update(
        {
            "b4.conv.weight": take("final_conv.0.weight"),
            "b4.conv.bias": take("final_conv.1.bias"),
            "b4.conv.resample_filter": f,
            "b4.fc.weight": take("final_linear.0.weight"),
            "b4.fc.bias": take("final_linear.0.bias"),
            "b4.out.weight": take("final_linear.1.weight"),
            "b4.out.bias": take("final_linear.1.bias"),
        }
    )
    take.check_all_used()
    check_network_settings(path, what, kwargs, discriminator=True)
    return materialize(path, what, lambda: discriminator_from_kwargs(kwargs), w)
