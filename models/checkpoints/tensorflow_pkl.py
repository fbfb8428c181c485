"""TensorFlow StyleGAN2 network pickles (NVIDIA's `stylegan2` and `stylegan2-ada` TensorFlow repositories),
converted to our networks with numpy alone: no TensorFlow, and nothing from the file is run.

Such a file is a tuple (G, D, Gs) of `dnnlib.tflib.network.Network` objects, read by the restricted
unpickler as inert `TFNetworkRecord`s. Each holds `static_kwargs` (how it was built), `components` (the
mapping and synthesis sub-networks), `variables` [(name, array)] and `build_module_src`, the source code
TensorFlow would run; it is never looked at. Variable names joined through the components
(`mapping/Dense0/weight`, `synthesis/64x64/Conv0_up/weight`, …) map onto NVIDIA's PyTorch names, with
TensorFlow's layouts turned around: dense weights [in, out] → [out, in], convolutions [kh, kw, in, out] →
[out, in, kh, kw], the up-convolution's kernel flipped (TensorFlow runs it as a transposed convolution), and
the modulation bias stored without the +1 that TensorFlow adds at run time. Learning-rate multipliers are
applied at run time on both sides, so the stored values carry over unchanged.

Generators of configs e and f (the `skip` architecture, which every published StyleGAN2 network uses) are
read; the discriminator is converted where it is ours (unconditional `resnet`), otherwise the bundle says
why it is missing and fine-tuning starts a fresh one. StyleGAN (the first) and ProGAN pickles are refused by
name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import ops
from models.checkpoints.bundle import CheckpointBundle, build_bundle, materialize, snapshot_kimg
from models.checkpoints.errors import CheckpointError
from models.checkpoints.limits import check_network_settings
from models.checkpoints.safe_pickle import NumpyArray, TFNetworkRecord, to_plain
from models.stylegan2 import Discriminator, Generator, discriminator_from_kwargs, generator_from_kwargs

_MAX_COMPONENT_DEPTH = 8  # G → mapping/synthesis is one level; deeper nesting is a damaged file
_MAX_VARIABLES = 100_000  # a 1024 px StyleGAN2 G has about 300
# Top-level build functions of the generations before StyleGAN2, and what to call them.
_OLDER_GENERATIONS = {
    "G_style": "StyleGAN (the first version)",
    "D_basic": "StyleGAN (the first version)",
    "G_paper": "Progressive GAN (ProGAN)",
    "D_paper": "Progressive GAN (ProGAN)",
}
# The synthesis build functions of the two StyleGAN2 TensorFlow repositories; the writer shows in which.
_SYNTHESIS_WRITERS = {
    "G_synthesis_stylegan2": "NVIDIA stylegan2 (TensorFlow)",
    "G_synthesis": "NVIDIA stylegan2-ada (TensorFlow)",
}
# Static kwargs that change nothing in the stored weights or the pixels of an untruncated render: run-time
# defaults (truncation, mixing), progressive-growing bookkeeping, the fused-modconv implementation choice.
_INERT_SETTINGS = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure", "conditioning",
                   "fused_modconv", "freeze_layers")  # fmt: skip


def is_tensorflow_pickle(data: Any) -> bool:
    return isinstance(data, tuple) and any(isinstance(item, TFNetworkRecord) for item in data)


def load_tensorflow_networks(
    path: Path, sha256: str, device: str | torch.device, data: tuple
) -> CheckpointBundle:
    """Convert the unpickled (G, D, Gs) tuple into a bundle: Gs is G_ema, G the training generator."""
    if len(data) != 3 or not all(isinstance(item, TFNetworkRecord) for item in data):
        raise CheckpointError(path, "it is a TensorFlow pickle but not the (G, D, Gs) tuple of a StyleGAN2 run")
    nets = [_Network(path, what, record) for what, record in zip(("G", "D", "Gs"), data, strict=True)]
    G_net, D_net, Gs_net = nets
    for net in nets:
        net.refuse_older_generation()
    G_ema = _generator(Gs_net)
    G = _generator(G_net)
    training: dict[str, Any] = {"writer": Gs_net.writer()}
    if (kimg := snapshot_kimg(path.name)) is not None:
        training["kimg"] = kimg
    D, why_not = _discriminator(D_net)
    if D is None:
        training["discriminator"] = f"not converted ({why_not}): fine-tuning starts a fresh one"
    return build_bundle(
        G_ema=G_ema,
        G=G,
        D=D,
        augment_p=None,  # the TensorFlow ADA pipe keeps p in the training loop's state, not in the pickle
        source_format="tensorflow-pkl",
        source_name=path.name,
        source_sha256=sha256,
        training=training,
        device=device,
    )


class _Network:
    """One pickled TensorFlow network: its checked settings and its variables named through its components."""

    def __init__(self, path: Path, what: str, record: TFNetworkRecord):
        self.path, self.what = path, what
        state = self._state(record, what)
        try:
            self.settings = to_plain(state.get("static_kwargs") or {}, f"{what} static_kwargs")
        except ValueError as exc:
            raise CheckpointError(path, str(exc)) from None
        if not isinstance(self.settings, dict):
            raise CheckpointError(path, f"its {what} static_kwargs are not a mapping")
        func = state.get("build_func_name")
        self.func = func if isinstance(func, str) else None
        self.component_funcs: dict[str, Any] = {}
        self.variables: dict[str, np.ndarray] = {}
        self._collect(record, "", 0, set())

    def _state(self, record: Any, where: str) -> dict:
        state = getattr(record, "state", None)
        if not isinstance(record, TFNetworkRecord) or not isinstance(state, dict):
            raise CheckpointError(self.path, f"its {where} is not a pickled TensorFlow network")
        return state

    def _collect(self, record: TFNetworkRecord, prefix: str, depth: int, seen: set[int]) -> None:
        where = f"{self.what} {prefix.rstrip('/')}".strip()
        if id(record) in seen or depth > _MAX_COMPONENT_DEPTH:
            raise CheckpointError(self.path, f"its {where} nests components in a loop or too deeply")
        seen.add(id(record))
        state = self._state(record, where)
        variables, components = state.get("variables") or [], state.get("components") or {}
        if not isinstance(variables, list | tuple) or not isinstance(components, dict):
            raise CheckpointError(self.path, f"its {where} has malformed variables or components")
        for item in variables:
            if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(self.path, f"its {where} has a variable that is not a (name, value) pair")
            name, value = item
            array = value.array if isinstance(value, NumpyArray) else value
            if not isinstance(array, np.ndarray | np.generic) or array.dtype.kind != "f":
                raise CheckpointError(self.path, f"its {where} variable {name} is not an array of numbers")
            self.variables[prefix + name] = np.asarray(array, dtype=np.float32)
            if len(self.variables) > _MAX_VARIABLES:
                raise CheckpointError(self.path, f"its {self.what} holds more variables than any StyleGAN2")
        for name, component in components.items():
            if not isinstance(name, str):
                raise CheckpointError(self.path, f"its {where} has a component without a name")
            self.component_funcs[prefix + name] = self._state(component, f"{where} {name}").get("build_func_name")
            self._collect(component, f"{prefix}{name}/", depth + 1, seen)

    def refuse_older_generation(self) -> None:
        """StyleGAN (1) and ProGAN networks share the pickle layout; their build functions and variables tell."""
        generation = _OLDER_GENERATIONS.get(self.func)
        if generation is None and any("/StyleMod/" in name for name in self.variables):
            generation = _OLDER_GENERATIONS["G_style"]  # StyleGAN's AdaIN style layers
        if generation is None and self.what != "D" and "mapping" not in self.component_funcs:
            generation = _OLDER_GENERATIONS["G_paper"]  # no mapping network: ProGAN's generator
        if generation:
            raise CheckpointError(
                self.path,
                f"it is a TensorFlow {generation} pickle (its {self.what} is built by {self.func!r}); GAN "
                "Studio reads TensorFlow StyleGAN2 pickles, not earlier generations",
            )

    def writer(self) -> str:
        return _SYNTHESIS_WRITERS.get(self.component_funcs.get("synthesis"), "TensorFlow StyleGAN2")

    def setting(self, name: str, default: Any, *choices: Any) -> Any:
        """A static kwarg (or its default when absent or None), refused unless one of `choices` if given."""
        value = self.settings.get(name)
        value = default if value is None else value
        if choices and value not in choices:
            allowed = " or ".join(map(repr, choices))
            raise _Unsupported(f"its {self.what} has {name} = {value!r}; GAN Studio builds {allowed}")
        return value

    def check_settings_known(self, known: set[str]) -> None:
        """Refuse settings this converter does not know: it cannot tell whether they change the network."""
        if unknown := sorted(set(self.settings) - known - set(_INERT_SETTINGS)):
            listed = ", ".join(unknown)
            raise _Unsupported(f"its {self.what} was built with settings GAN Studio does not know: {listed}")

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.variables:
            raise CheckpointError(self.path, f"its {self.what} lacks the TensorFlow variable {name}")
        return torch.from_numpy(self.variables[name])


class _Unsupported(Exception):
    """A network the file holds but GAN Studio does not build; fatal for a generator, not for D."""


def _fmaps_base(net: _Network) -> Any:
    """TensorFlow's fmap_base is half of channel_base: its layer at resolution R has fmap_base·2/R channels."""
    base = net.setting("fmap_base", 16384)
    return 2 * base if type(base) is int else base  # a non-integer is reported by name by the limits check


def _generator(net: _Network) -> Generator:
    try:
        kwargs = _generator_kwargs(net)
    except _Unsupported as exc:
        raise CheckpointError(net.path, str(exc)) from None
    check_network_settings(net.path, net.what, kwargs)
    return materialize(net.path, net.what, lambda: generator_from_kwargs(kwargs), _generator_weights(net, kwargs))


def _generator_kwargs(net: _Network) -> dict[str, Any]:
    synthesis_func = net.component_funcs.get("synthesis")
    if synthesis_func not in _SYNTHESIS_WRITERS:
        raise _Unsupported(
            f"its {net.what} synthesis network is {synthesis_func!r} (StyleGAN2 configs a-d, progressive "
            "growing); GAN Studio reads configs e and f"
        )
    net.setting("architecture", "skip", "skip")
    net.setting("nonlinearity", "lrelu", "lrelu")
    net.setting("mapping_nonlinearity", "lrelu", "lrelu")
    label_size = net.setting("label_size", 0)
    if label_size and "mapping/LabelConcat/weight" in net.variables:
        raise _Unsupported(
            f"its {net.what} is conditional in the TensorFlow StyleGAN2 way (labels concatenated to z); "
            "GAN Studio reads conditional networks of stylegan2-ada"
        )
    # None there means w_avg is not tracked; NVIDIA's converter keeps it frozen (beta 1), and so do we.
    w_avg_beta = net.settings.get("w_avg_beta", 0.995)
    w_avg_beta = 1.0 if w_avg_beta is None else w_avg_beta
    kwargs = dict(
        z_dim=net.setting("latent_size", 512),
        c_dim=label_size,
        w_dim=net.setting("dlatent_size", 512),
        img_resolution=net.setting("resolution", 1024),
        img_channels=net.setting("num_channels", 3),
        mapping_kwargs=dict(
            num_layers=net.setting("mapping_layers", 8),
            embed_features=net.setting("label_fmaps", None),
            layer_features=net.setting("mapping_fmaps", None),
            lr_multiplier=net.setting("mapping_lrmul", 0.01),
            w_avg_beta=w_avg_beta,
        ),
        synthesis_kwargs=dict(
            channel_base=_fmaps_base(net),
            channel_max=net.setting("fmap_max", 512),
            num_fp16_res=net.setting("num_fp16_res", 0),
            conv_clamp=net.setting("conv_clamp", None),
            resample_filter=net.setting("resample_kernel", [1, 3, 3, 1]),
            use_noise=net.setting("use_noise", True),
        ),
    )
    net.check_settings_known({
        "architecture", "nonlinearity", "mapping_nonlinearity", "label_size", "w_avg_beta", "latent_size",
        "dlatent_size", "resolution", "num_channels", "mapping_layers", "label_fmaps", "mapping_fmaps",
        "mapping_lrmul", "fmap_base", "fmap_max", "num_fp16_res", "conv_clamp", "resample_kernel", "use_noise",
    })  # fmt: skip
    return kwargs


def _generator_weights(net: _Network, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Our state_dict from the TensorFlow variables. Variables we do not use (`lod`, the progressive-growing
    level, and the like) are left alone, as NVIDIA's converter does."""
    w: dict[str, torch.Tensor] = {"mapping.w_avg": net("dlatent_avg")}
    for i in range(kwargs["mapping_kwargs"]["num_layers"]):
        w[f"mapping.fc{i}.weight"] = net(f"mapping/Dense{i}/weight").t()
        w[f"mapping.fc{i}.bias"] = net(f"mapping/Dense{i}/bias")
    if kwargs["c_dim"]:
        w["mapping.embed.weight"] = net("mapping/LabelEmbed/weight").t()
        w["mapping.embed.bias"] = net("mapping/LabelEmbed/bias")
    synthesis = kwargs["synthesis_kwargs"]
    f, plain = ops.setup_filter(list(synthesis["resample_filter"])), ops.setup_filter([1, 3, 3, 1])

    def layer(ours: str, theirs: str, noise: int, up: bool = False) -> None:
        weight = net(f"{theirs}/weight").permute(3, 2, 0, 1)
        w[f"{ours}.weight"] = weight.flip([2, 3]) if up else weight
        w[f"{ours}.bias"] = net(f"{theirs}/bias")
        w[f"{ours}.resample_filter"] = f if up else plain  # others keep NVIDIA's default, unused
        modulation(ours, theirs)
        if synthesis["use_noise"]:
            w[f"{ours}.noise_strength"] = net(f"{theirs}/noise_strength").reshape([])
            w[f"{ours}.noise_const"] = net(f"synthesis/noise{noise}")[0, 0]

    def modulation(ours: str, theirs: str) -> None:
        w[f"{ours}.affine.weight"] = net(f"{theirs}/mod_weight").t()
        w[f"{ours}.affine.bias"] = net(f"{theirs}/mod_bias") + 1

    def torgb(ours: str, theirs: str) -> None:
        w[f"{ours}.weight"] = net(f"{theirs}/weight").permute(3, 2, 0, 1)
        w[f"{ours}.bias"] = net(f"{theirs}/bias")
        modulation(ours, theirs)

    w["synthesis.b4.const"] = net("synthesis/4x4/Const/const")[0]
    w["synthesis.b4.resample_filter"] = f
    layer("synthesis.b4.conv1", "synthesis/4x4/Conv", 0)
    torgb("synthesis.b4.torgb", "synthesis/4x4/ToRGB")
    for log2 in range(3, kwargs["img_resolution"].bit_length()):
        ours, theirs = f"synthesis.b{2**log2}", f"synthesis/{2**log2}x{2**log2}"
        w[f"{ours}.resample_filter"] = f
        layer(f"{ours}.conv0", f"{theirs}/Conv0_up", 2 * log2 - 5, up=True)
        layer(f"{ours}.conv1", f"{theirs}/Conv1", 2 * log2 - 4)
        torgb(f"{ours}.torgb", f"{theirs}/ToRGB")
    return w


def _discriminator(net: _Network) -> tuple[Discriminator | None, str]:
    """Our discriminator from D, or None and the reason when D is not one we build."""
    try:
        kwargs = _discriminator_kwargs(net)
    except _Unsupported as exc:
        return None, str(exc)
    check_network_settings(net.path, net.what, kwargs, discriminator=True)
    f, plain = ops.setup_filter(list(kwargs["block_kwargs"]["resample_filter"])), ops.setup_filter([1, 3, 3, 1])

    def conv(ours: str, theirs: str, down: bool = False, bias: bool = True) -> None:
        w[f"{ours}.weight"] = net(f"{theirs}/weight").permute(3, 2, 0, 1)
        w[f"{ours}.resample_filter"] = f if down else plain  # others keep NVIDIA's default, unused
        if bias:
            w[f"{ours}.bias"] = net(f"{theirs}/bias")

    resolution = kwargs["img_resolution"]
    w: dict[str, torch.Tensor] = {}
    conv(f"b{resolution}.fromrgb", f"{resolution}x{resolution}/FromRGB")
    for log2 in range(resolution.bit_length() - 1, 2, -1):
        ours, theirs = f"b{2**log2}", f"{2**log2}x{2**log2}"
        w[f"{ours}.resample_filter"] = f
        conv(f"{ours}.conv0", f"{theirs}/Conv0")
        conv(f"{ours}.conv1", f"{theirs}/Conv1_down", down=True)
        conv(f"{ours}.skip", f"{theirs}/Skip", down=True, bias=False)
    conv("b4.conv", "4x4/Conv")
    w["b4.fc.weight"] = net("4x4/Dense0/weight").t()
    w["b4.fc.bias"] = net("4x4/Dense0/bias")
    w["b4.out.weight"] = net("Output/weight").t()
    w["b4.out.bias"] = net("Output/bias")
    return materialize(net.path, net.what, lambda: discriminator_from_kwargs(kwargs), w), ""


def _discriminator_kwargs(net: _Network) -> dict[str, Any]:
    if net.func not in ("D_stylegan2", "D_main"):
        raise _Unsupported(f"its D is built by {net.func!r}, not the StyleGAN2 discriminator")
    net.setting("architecture", "resnet", "resnet")
    net.setting("nonlinearity", "lrelu", "lrelu")
    if net.setting("label_size", 0):
        raise _Unsupported("it is conditional, and conditional models are not fine-tuned here")
    group = net.setting("mbstd_group_size", 4)  # TensorFlow's default; 0 there turns the layer off
    kwargs = dict(
        c_dim=0,
        img_resolution=net.setting("resolution", 1024),
        img_channels=net.setting("num_channels", 3),
        architecture="resnet",
        channel_base=_fmaps_base(net),
        channel_max=net.setting("fmap_max", 512),
        num_fp16_res=net.setting("num_fp16_res", 0),
        conv_clamp=net.setting("conv_clamp", None),
        block_kwargs=dict(resample_filter=net.setting("resample_kernel", [1, 3, 3, 1])),
        epilogue_kwargs=dict(
            mbstd_group_size=group or None,
            mbstd_num_channels=net.setting("mbstd_num_features", 1) if group else 0,
        ),
    )
    net.check_settings_known({
        "architecture", "nonlinearity", "label_size", "mbstd_group_size", "mbstd_num_features", "resolution",
        "num_channels", "fmap_base", "fmap_max", "num_fp16_res", "conv_clamp", "resample_kernel",
        "mapping_layers", "mapping_fmaps", "mapping_lrmul",
    })  # fmt: skip
    return kwargs
