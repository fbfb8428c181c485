"""Writers of checkpoint files in the exact published layouts, made from our own networks without NVIDIA's or
rosinality's code, plus a reference forward pass written from rosinality's published semantics.

NVIDIA pickles: the networks are pickled as `torch_utils.persistence._reconstruct_persistent_obj(meta)` calls
whose meta carries `module_src` and the module's `__dict__`; `dnnlib.util.EasyDict` holds the kwargs. Both
names are served by throwaway modules placed in `sys.modules` only while pickling.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import pickle
import pickletools
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import ops
from models.stylegan2 import Discriminator, Generator

TINY = dict(z_dim=32, w_dim=32, img_resolution=16, img_channels=3)
CHANNELS = dict(channel_base=256, channel_max=32)
MAPPING_LAYERS = 2


# --- our networks with random weights


def randomize(net: nn.Module, seed: int) -> nn.Module:
    """Perturb every parameter and buffer (filters excepted): a mis-mapped tensor then shows in the pixels."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*net.named_parameters(), *net.named_buffers()]:
            if not name.endswith("resample_filter"):
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return net.eval()


def make_generator(
    c_dim: int = 0, conv_clamp: float | None = None, seed: int = 0, loud: bool = False
) -> Generator:
    """A tiny generator; `loud` gives the first toRGB a bias far beyond 256 so that conv_clamp shows."""
    G = Generator(
        **TINY,
        c_dim=c_dim,
        mapping_kwargs=dict(num_layers=MAPPING_LAYERS),
        synthesis_kwargs=dict(**CHANNELS, conv_clamp=conv_clamp),
    )
    randomize(G, seed)
    if loud:
        with torch.no_grad():
            G.synthesis.b4.torgb.bias.add_(400)
    return G


def make_discriminator(c_dim: int = 0, conv_clamp: float | None = None, seed: int = 1, loud: bool = False):
    D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, **CHANNELS, conv_clamp=conv_clamp)
    randomize(D, seed)
    if loud:
        with torch.no_grad():
            D.b16.fromrgb.bias.add_(400)
    return D


def copy_weights(src: nn.Module, dst: nn.Module) -> nn.Module:
    dst.load_state_dict(src.state_dict())
    return dst.eval()


def pixels(G: Generator, c_dim: int = 0, seed: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([2, G.z_dim], generator=gen)
    c = F.one_hot(torch.tensor([0, c_dim - 1]), c_dim).float() if c_dim else None
    with torch.no_grad():
        return G(z, c, noise_mode="const")


def scores(D: Discriminator, c_dim: int = 0, seed: int = 6) -> torch.Tensor:
    img = torch.randn([4, 3, 16, 16], generator=torch.Generator().manual_seed(seed))
    c = F.one_hot(torch.arange(4) % c_dim, c_dim).float() if c_dim else None
    with torch.no_grad():
        return D(img, c)


# --- NVIDIA network pickles


def _reconstruct_persistent_obj(meta: dict) -> Any:
    raise AssertionError("only pickled by the fixtures, never called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Pickles as `dnnlib.util.EasyDict`, like NVIDIA's."""

    __module__ = "dnnlib.util"


class Network:
    """Pickles as `dnnlib.tflib.network.Network` with the state layout of TensorFlow StyleGAN2 pickles."""

    __module__ = "dnnlib.tflib.network"

    def __init__(self, state: dict):
        self._state = state

    def __getstate__(self) -> dict:
        return self._state


class Persistent:
    """Pickles exactly as an instance of a `@persistence.persistent_class` does."""

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,), None


@contextlib.contextmanager
def nvidia_names() -> Iterator[None]:
    """Make `torch_utils.persistence`, `dnnlib.util` and `dnnlib.tflib.network` resolvable while pickling."""
    modules = {
        "torch_utils": {},
        "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib": {},
        "dnnlib.util": {"EasyDict": EasyDict},
        "dnnlib.tflib": {},
        "dnnlib.tflib.network": {"Network": Network},
    }
    assert not any(name in sys.modules for name in modules)
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name in modules:
            del sys.modules[name]


def module_src(marker: Path) -> str:
    """Stand-in for the networks source NVIDIA embeds: running it would create `marker`."""
    return f"import os\nopen({str(marker)!r}, 'w').write('module_src was executed')\nclass Generator: pass\n"


def _as_view(t: torch.Tensor) -> torch.Tensor:
    """The same values stored at an offset inside a larger storage and, for matrices, in transposed order."""
    if t.ndim == 2:
        return t.t().contiguous().t()
    big = torch.zeros(t.numel() + 7)
    big[7:] = t.detach().flatten()
    return big[7:].view(t.shape)


def record(
    module: nn.Module,
    src: str,
    init_kwargs: dict | None = None,
    views: bool = False,
    extra: dict | None = None,
    class_name: str | None = None,
) -> Persistent:
    """A module as NVIDIA pickles it: its `__dict__` with nested records for submodules."""

    def tensor(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or not views:
            return t
        return nn.Parameter(_as_view(t.data)) if isinstance(t, nn.Parameter) else _as_view(t)

    state: dict[str, Any] = {
        "training": False,
        "_parameters": OrderedDict((k, tensor(v)) for k, v in module._parameters.items()),
        "_buffers": OrderedDict((k, tensor(v)) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict((k, record(m, src, views=views)) for k, m in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": EasyDict(init_kwargs or {}),
    }
    for key, value in vars(module).items():
        if not key.startswith("_") and isinstance(value, (bool, int, float, str, type(None))):
            state[key] = value
    state.update(extra or {})
    return Persistent(class_name or type(module).__name__, state, src)


def generator_kwargs(G: Generator, schema: str, conv_clamp: Any) -> EasyDict:
    """`_init_kwargs` as each repository records them; conv_clamp=... leaves it out (the writer's default)."""
    common = dict(
        z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, img_resolution=G.img_resolution, img_channels=3
    )
    clamp = {} if conv_clamp is ... else {"conv_clamp": conv_clamp}
    if schema == "stylegan2-ada":
        synthesis = EasyDict(**CHANNELS, num_fp16_res=4, **clamp)
        return EasyDict(
            **common, mapping_kwargs=EasyDict(num_layers=MAPPING_LAYERS), synthesis_kwargs=synthesis
        )
    return EasyDict(
        **common,
        mapping_kwargs=EasyDict(num_layers=MAPPING_LAYERS),
        **CHANNELS,
        magnitude_ema_beta=0.999,
        fused_modconv_default="inference_only",
        **clamp,
    )


def discriminator_kwargs(D: Discriminator, schema: str, conv_clamp: Any) -> EasyDict:
    clamp = {} if conv_clamp is ... else {"conv_clamp": conv_clamp}
    block = EasyDict(freeze_layers=0) if schema == "stylegan3" else EasyDict()
    fp16 = {"num_fp16_res": 4} if schema == "stylegan2-ada" else {}
    return EasyDict(
        c_dim=D.c_dim,
        img_resolution=16,
        img_channels=3,
        architecture="resnet",
        **CHANNELS,
        **fp16,
        **clamp,
        block_kwargs=block,
        mapping_kwargs=EasyDict(),
        epilogue_kwargs=EasyDict(mbstd_group_size=4),
    )


def nvidia_snapshot(
    G_ema: Generator,
    G: Generator,
    D: Discriminator,
    *,
    schema: str,
    conv_clamp: Any,
    marker: Path,
    views: bool = False,
    augment_p: float = 0.3,
) -> dict:
    """The dict NVIDIA's training loop pickles: training_set_kwargs, G, D, G_ema, augment_pipe."""
    src = module_src(marker)
    pipe = nn.Module()
    pipe.register_buffer("p", torch.tensor(augment_p))
    return dict(
        training_set_kwargs=EasyDict(
            class_name="training.dataset.ImageFolderDataset",
            path="/data/cats-16.zip",
            use_labels=G.c_dim > 0,
            max_size=np.int64(120),
            xflip=True,
            resolution=16,
            random_seed=0,
        ),
        G=record(G, src, generator_kwargs(G, schema, conv_clamp), views),
        D=record(D, src, discriminator_kwargs(D, schema, conv_clamp), views),
        G_ema=record(G_ema, src, generator_kwargs(G_ema, schema, conv_clamp), views),
        augment_pipe=record(
            pipe,
            src,
            EasyDict(xflip=1, rotate90=1),
            extra={"xflip": np.float32(1.0), "Hz_fbank": np.eye(3)},
            class_name="AugmentPipe",
        ),
    )


def write_pickle(path: Path, obj: Any, protocol: int = 4) -> Path:
    with nvidia_names():
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def pickle_globals(path: Path) -> set[str]:
    """Every global a pickle file references, as 'module.name' (GLOBAL, and STACK_GLOBAL through the memo)."""
    found: set[str] = set()
    pushed: list[Any] = []  # what the last opcodes pushed, as far as module and attribute names go
    memo: dict[int, Any] = {}
    for op, arg, _ in pickletools.genops(path.read_bytes()):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
        if op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1]
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1]
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        else:
            pushed.append(arg if isinstance(arg, str) else None)
    return found


def _tf_conv(weight: torch.Tensor, flip: bool = False) -> np.ndarray:
    """Our [out, in, kh, kw] kernel in TensorFlow's [kh, kw, in, out] layout, flipped for up-convolutions."""
    kernel = weight.detach().numpy().transpose(2, 3, 1, 0)
    return np.ascontiguousarray(kernel[::-1, ::-1] if flip else kernel)


def _tf_dense(weight: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(weight.detach().numpy().T)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def tensorflow_generator_variables(G: Generator) -> dict[str, dict[str, np.ndarray]]:
    """Our generator's weights as the variables of TensorFlow StyleGAN2's G_main, its mapping and its synthesis
    networks (by FORMATS.md's mapping, inverted)."""
    sd = G.state_dict()
    top = {"lod": np.float32(0), "dlatent_avg": _np(sd["mapping.w_avg"])}
    mapping = {}
    for i in range(G.mapping.num_layers):
        mapping[f"Dense{i}/weight"] = _tf_dense(sd[f"mapping.fc{i}.weight"])
        mapping[f"Dense{i}/bias"] = _np(sd[f"mapping.fc{i}.bias"])
    if G.c_dim:
        mapping["LabelEmbed/weight"] = _tf_dense(sd["mapping.embed.weight"])
        mapping["LabelEmbed/bias"] = _np(sd["mapping.embed.bias"])
    synthesis = {"4x4/Const/const": _np(sd["synthesis.b4.const"])[None]}

    def layer(ours: str, theirs: str, noise: int, up: bool = False) -> None:
        synthesis[f"{theirs}/weight"] = _tf_conv(sd[f"{ours}.weight"], flip=up)
        synthesis[f"{theirs}/mod_weight"] = _tf_dense(sd[f"{ours}.affine.weight"])
        synthesis[f"{theirs}/mod_bias"] = _np(sd[f"{ours}.affine.bias"] - 1)
        synthesis[f"{theirs}/bias"] = _np(sd[f"{ours}.bias"])
        if f"{ours}.noise_strength" in sd:  # TensorFlow stores a 0-d variable as a numpy scalar
            synthesis[f"{theirs}/noise_strength"] = np.float32(sd[f"{ours}.noise_strength"].item())
            synthesis[f"noise{noise}"] = _np(sd[f"{ours}.noise_const"])[None, None]

    def torgb(ours: str, theirs: str) -> None:
        synthesis[f"{theirs}/weight"] = _tf_conv(sd[f"{ours}.weight"])
        synthesis[f"{theirs}/mod_weight"] = _tf_dense(sd[f"{ours}.affine.weight"])
        synthesis[f"{theirs}/mod_bias"] = _np(sd[f"{ours}.affine.bias"] - 1)
        synthesis[f"{theirs}/bias"] = _np(sd[f"{ours}.bias"])

    layer("synthesis.b4.conv1", "4x4/Conv", 0)
    torgb("synthesis.b4.torgb", "4x4/ToRGB")
    for res in G.synthesis.block_resolutions[1:]:
        log2 = int(math.log2(res))
        layer(f"synthesis.b{res}.conv0", f"{res}x{res}/Conv0_up", 2 * log2 - 5, up=True)
        layer(f"synthesis.b{res}.conv1", f"{res}x{res}/Conv1", 2 * log2 - 4)
        torgb(f"synthesis.b{res}.torgb", f"{res}x{res}/ToRGB")
    return {"": top, "mapping": mapping, "synthesis": synthesis}


def tensorflow_discriminator_variables(D: Discriminator) -> dict[str, np.ndarray]:
    sd = D.state_dict()
    top = D.img_resolution
    out = {f"{top}x{top}/FromRGB/weight": _tf_conv(sd[f"b{top}.fromrgb.weight"])}
    out[f"{top}x{top}/FromRGB/bias"] = _np(sd[f"b{top}.fromrgb.bias"])
    for res in D.block_resolutions:
        out[f"{res}x{res}/Conv0/weight"] = _tf_conv(sd[f"b{res}.conv0.weight"])
        out[f"{res}x{res}/Conv0/bias"] = _np(sd[f"b{res}.conv0.bias"])
        out[f"{res}x{res}/Conv1_down/weight"] = _tf_conv(sd[f"b{res}.conv1.weight"])
        out[f"{res}x{res}/Conv1_down/bias"] = _np(sd[f"b{res}.conv1.bias"])
        out[f"{res}x{res}/Skip/weight"] = _tf_conv(sd[f"b{res}.skip.weight"])
    out["4x4/Conv/weight"] = _tf_conv(sd["b4.conv.weight"])
    out["4x4/Conv/bias"] = _np(sd["b4.conv.bias"])
    out["4x4/Dense0/weight"] = _tf_dense(sd["b4.fc.weight"])
    out["4x4/Dense0/bias"] = _np(sd["b4.fc.bias"])
    out["Output/weight"] = _tf_dense(sd["b4.out.weight"])
    out["Output/bias"] = _np(sd["b4.out.bias"])
    return out


def tf_network(name: str, func: str, settings: dict, variables: dict, marker: Path, **components) -> Network:
    """A `dnnlib.tflib.network.Network` as StyleGAN2's TensorFlow code pickles it (state version 4)."""
    return Network(
        dict(
            version=4,
            name=name,
            static_kwargs=settings,
            components=components,
            build_module_src=module_src(marker),
            build_func_name=func,
            variables=list(variables.items()),
        )
    )


def tf_generator_settings(G: Generator, **extra: Any) -> dict:
    """The static kwargs a StyleGAN2 TensorFlow run records for our tiny generator's architecture."""
    settings = dict(
        latent_size=G.z_dim, dlatent_size=G.w_dim, label_size=G.c_dim, resolution=G.img_resolution,
        num_channels=G.img_channels, mapping_layers=G.mapping.num_layers, fmap_base=CHANNELS["channel_base"] // 2,
        fmap_max=CHANNELS["channel_max"],
    )
    return {**settings, **extra}


def tf_generator(G: Generator, marker: Path, name: str = "Gs", settings: dict | None = None,
                 synthesis_func: str = "G_synthesis_stylegan2") -> Network:
    variables = tensorflow_generator_variables(G)
    settings = tf_generator_settings(G) if settings is None else settings
    mapping = tf_network("G_mapping", "G_mapping", settings, variables["mapping"], marker)
    synthesis = tf_network("G_synthesis", synthesis_func, settings, variables["synthesis"], marker)
    return tf_network(name, "G_main", settings, variables[""], marker, mapping=mapping, synthesis=synthesis)


def tf_discriminator(D: Discriminator, marker: Path, func: str = "D_stylegan2", **extra: Any) -> Network:
    settings = dict(
        resolution=D.img_resolution, num_channels=3, label_size=D.c_dim, fmap_base=CHANNELS["channel_base"] // 2,
        fmap_max=CHANNELS["channel_max"], mbstd_group_size=4, **extra,
    )
    return tf_network("D", func, settings, tensorflow_discriminator_variables(D), marker)


def tensorflow_pickle(G: Generator, D: Discriminator, Gs: Generator, marker: Path, **g_settings: Any) -> tuple:
    """The (G, D, Gs) tuple a StyleGAN2 TensorFlow training run pickles."""
    settings = tf_generator_settings(Gs, **g_settings)
    return (
        tf_generator(G, marker, "G", settings),
        tf_discriminator(D, marker),
        tf_generator(Gs, marker, "Gs", settings),
    )


# --- rosinality checkpoints


def rosinality_generator(G: Generator) -> dict[str, torch.Tensor]:
    """Our generator's weights under rosinality's names, by FORMATS.md's mapping."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for i in range(MAPPING_LAYERS):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    kernel = 4 * ops.setup_filter([1, 3, 3, 1])

    def layer(src: str, dst: str, noise: int, up: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        if up:
            out[f"{dst}.conv.blur.kernel"] = kernel.clone()
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"noises.noise_{noise}"] = sd[f"{src}.noise_const"][None, None]

    def torgb(src: str, dst: str, up: bool) -> None:
        if up:
            out[f"{dst}.upsample.kernel"] = kernel.clone()
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)

    layer("synthesis.b4.conv1", "conv1", 0, up=False)
    torgb("synthesis.b4.torgb", "to_rgb1", up=False)
    for i, res in enumerate(G.synthesis.block_resolutions[1:], start=1):
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * i - 2}", 2 * i - 1, up=True)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * i - 1}", 2 * i, up=False)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i - 1}", up=True)
    return out


def rosinality_discriminator(D: Discriminator) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().clone() for k, v in D.state_dict().items()}
    kernel = ops.setup_filter([1, 3, 3, 1])
    top = D.img_resolution
    out = {"convs.0.0.weight": sd[f"b{top}.fromrgb.weight"], "convs.0.1.bias": sd[f"b{top}.fromrgb.bias"]}
    for k, res in enumerate(D.block_resolutions, start=1):
        out.update(
            {
                f"convs.{k}.conv1.0.weight": sd[f"b{res}.conv0.weight"],
                f"convs.{k}.conv1.1.bias": sd[f"b{res}.conv0.bias"],
                f"convs.{k}.conv2.0.kernel": kernel.clone(),
                f"convs.{k}.conv2.1.weight": sd[f"b{res}.conv1.weight"],
                f"convs.{k}.conv2.2.bias": sd[f"b{res}.conv1.bias"],
                f"convs.{k}.skip.0.kernel": kernel.clone(),
                f"convs.{k}.skip.1.weight": sd[f"b{res}.skip.weight"],
            }
        )
    out.update(
        {
            "final_conv.0.weight": sd["b4.conv.weight"],
            "final_conv.1.bias": sd["b4.conv.bias"],
            "final_linear.0.weight": sd["b4.fc.weight"],
            "final_linear.0.bias": sd["b4.fc.bias"],
            "final_linear.1.weight": sd["b4.out.weight"],
            "final_linear.1.bias": sd["b4.out.bias"],
        }
    )
    return out


def adam_state(net: nn.Module) -> dict:
    """An Adam `state_dict()` as rosinality saves it (built by hand: constructing an optimizer is slow)."""
    params = list(net.parameters())
    state = {
        i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.ones_like(p)}
        for i, p in enumerate(params)
    }
    group = dict(lr=0.002, betas=(0.0, 0.99), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False)
    return {"state": state, "param_groups": [{**group, "params": list(range(len(params)))}]}


def rosinality_args(**overrides: Any) -> argparse.Namespace:
    """The `args` of a rosinality training snapshot."""
    args = dict(
        path="/data/cats_lmdb",
        arch="stylegan2",
        iter=800000,
        batch=4,
        n_sample=64,
        size=16,
        r1=10,
        path_regularize=2,
        path_batch_shrink=2,
        d_reg_every=16,
        g_reg_every=4,
        mixing=0.9,
        ckpt=None,
        lr=0.002,
        channel_multiplier=2,
        wandb=False,
        local_rank=0,
        augment=True,
        augment_p=0,
        ada_target=0.6,
        ada_length=500000,
        ada_every=256,
        latent=512,
        n_mlp=8,
        start_iter=0,
        distributed=False,
    )
    return argparse.Namespace(**{**args, **overrides})


# --- rosinality's forward pass, written from its published semantics


def _upfirdn(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
):
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros([n, c, h * up, w * up])
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    x = F.conv2d(x, kernel.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def _lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x + bias.reshape(1, -1, *[1] * (x.ndim - 2)), 0.2) * math.sqrt(2)


def _modulated(
    sd: dict,
    prefix: str,
    x: torch.Tensor,
    style: torch.Tensor,
    demodulate: bool = True,
    upsample: bool = False,
) -> torch.Tensor:
    weight = sd[f"{prefix}.weight"]  # [1, out, in, k, k]
    _, c_out, c_in, k, _ = weight.shape
    mod_w, mod_b = sd[f"{prefix}.modulation.weight"], sd[f"{prefix}.modulation.bias"]
    s = F.linear(style, mod_w / math.sqrt(mod_w.shape[1]), mod_b)
    batch = x.shape[0]
    w = weight / math.sqrt(c_in * k * k) * s.view(batch, 1, c_in, 1, 1)
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, c_out, 1, 1, 1)
    if upsample:
        w = w.transpose(1, 2).reshape(batch * c_in, c_out, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * c_in, *x.shape[2:]), w, stride=2, groups=batch)
        out = out.view(batch, c_out, *out.shape[2:])
        return _upfirdn(out, sd[f"{prefix}.blur.kernel"], pad=(1, 1))
    out = F.conv2d(
        x.reshape(1, batch * c_in, *x.shape[2:]),
        w.reshape(batch * c_out, c_in, k, k),
        padding=k // 2,
        groups=batch,
    )
    return out.view(batch, c_out, *out.shape[2:])


def rosinality_generate(sd: dict, z: torch.Tensor) -> torch.Tensor:
    """rosinality's `Generator([z], randomize_noise=False)` on its own state_dict."""
    x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        w, b = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = _lrelu(F.linear(x, w * (0.01 / math.sqrt(w.shape[1]))), b * 0.01)
        i += 1

    def styled(prefix: str, h: torch.Tensor, noise: str, up: bool = False) -> torch.Tensor:
        h = _modulated(sd, f"{prefix}.conv", h, x, upsample=up)
        h = h + sd[f"{prefix}.noise.weight"] * sd[noise]
        return _lrelu(h, sd[f"{prefix}.activate.bias"])

    def to_rgb(prefix: str, h: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = _modulated(sd, f"{prefix}.conv", h, x, demodulate=False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + _upfirdn(skip, sd[f"{prefix}.upsample.kernel"], up=2, pad=(2, 1))
        return out

    h = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    h = styled("conv1", h, "noises.noise_0")
    img = to_rgb("to_rgb1", h, None)
    k = 0
    while f"to_rgbs.{k}.conv.weight" in sd:
        h = styled(f"convs.{2 * k}", h, f"noises.noise_{2 * k + 1}", up=True)
        h = styled(f"convs.{2 * k + 1}", h, f"noises.noise_{2 * k + 2}")
        img = to_rgb(f"to_rgbs.{k}", h, img)
        k += 1
    return img


def _conv_layer(sd: dict, prefix: str, x: torch.Tensor, down: bool = False, activate: bool = True):
    index = 1 if down else 0
    weight = sd[f"{prefix}.{index}.weight"]
    k = weight.shape[-1]
    weight = weight / math.sqrt(weight.shape[1] * k * k)
    if down:
        p = 4 - 2 + (k - 1)
        x = _upfirdn(x, sd[f"{prefix}.0.kernel"], pad=((p + 1) // 2, p // 2))
        x = F.conv2d(x, weight, stride=2)
    else:
        x = F.conv2d(x, weight, padding=k // 2)
    return _lrelu(x, sd[f"{prefix}.{index + 1}.bias"]) if activate else x


def rosinality_discriminate(sd: dict, img: torch.Tensor) -> torch.Tensor:
    """rosinality's `Discriminator(img)` on its own state_dict."""
    x = _conv_layer(sd, "convs.0", img)
    k = 1
    while f"convs.{k}.conv1.0.weight" in sd:
        y = _conv_layer(sd, f"convs.{k}.conv2", _conv_layer(sd, f"convs.{k}.conv1", x), down=True)
        x = (y + _conv_layer(sd, f"convs.{k}.skip", x, down=True, activate=False)) / math.sqrt(2)
        k += 1
    n, c, h, w = x.shape
    group = min(n, 4)
    std = x.view(group, -1, 1, c, h, w)
    std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    x = torch.cat([x, std.repeat(group, 1, h, w)], 1)
    x = _conv_layer(sd, "final_conv", x).view(n, -1)
    w0, b0 = sd["final_linear.0.weight"], sd["final_linear.0.bias"]
    x = _lrelu(F.linear(x, w0 / math.sqrt(w0.shape[1])), b0)
    w1, b1 = sd["final_linear.1.weight"], sd["final_linear.1.bias"]
    return F.linear(x, w1 / math.sqrt(w1.shape[1]), b1)


def torch_save(path: Path, obj: Any, legacy: bool = False) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    path.write_bytes(buffer.getvalue())
    return path
