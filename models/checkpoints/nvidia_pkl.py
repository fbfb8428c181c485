"""NVIDIA StyleGAN2-ADA and StyleGAN3-repository StyleGAN2 network pickles, read without NVIDIA's code.

The pickle is read by `safe_pickle.restricted_load`; each network is an inert `PersistentRecord` whose
`_parameters`/`_buffers`/`_modules` give its state_dict and whose `_init_kwargs` say how to build it.
StyleGAN3 networks (recognised by their Fourier-feature input) are built as `models.stylegan3` networks.
TensorFlow StyleGAN2 pickles, which the same reader opens, are handed to `tensorflow_pkl`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models import stylegan3
from models.checkpoints.bundle import CheckpointBundle, build_bundle, dataset_name, materialize, snapshot_kimg
from models.checkpoints.errors import CheckpointError
from models.checkpoints.limits import check_network_settings
from models.checkpoints.safe_pickle import PersistentRecord, restricted_load, to_plain
from models.checkpoints.tensorflow_pkl import is_tensorflow_pickle, load_tensorflow_networks
from models.stylegan2 import discriminator_from_kwargs, generator_from_kwargs

# Discriminator options of NVIDIA's training code that change neither weights nor outputs.
_D_BLOCK_TRAINING_ONLY = ("freeze_layers",)
_MAX_DEPTH = 32


def load_nvidia_pkl(path: Path, sha256: str, device: str | torch.device) -> CheckpointBundle:
    with open(path, "rb") as file:
        data = restricted_load(path, file)
    if is_tensorflow_pickle(data):
        return load_tensorflow_networks(path, sha256, device, data)
    if not isinstance(data, dict):
        raise CheckpointError(
            path, f"it is a pickle of a {type(data).__name__}, not a network pickle (a dict holding G_ema)"
        )
    if "G_ema" not in data:
        keys = ", ".join(sorted(map(str, data))[:8]) or "nothing"
        raise CheckpointError(path, f"it holds no G_ema network (it has {keys})")

    g_ema_record = _network(path, data, "G_ema", "Generator")
    g_ema_weights = _weights(path, g_ema_record, "G_ema")
    g_kwargs = _init_kwargs(path, g_ema_record, "G_ema")
    # The two writers differ in their defaults; which one wrote the file shows in the kwargs layout.
    schema = "stylegan2-ada" if "synthesis_kwargs" in g_kwargs else "stylegan3"
    check_network_settings(path, "G_ema", g_kwargs)
    family = "stylegan3" if "synthesis.input.freqs" in g_ema_weights else "stylegan2"

    def build(kwargs: dict[str, Any]) -> torch.nn.Module:
        if family == "stylegan3":
            return stylegan3.generator_from_kwargs(kwargs)
        return generator_from_kwargs(kwargs, schema)

    G_ema = materialize(path, "G_ema", lambda: build(g_kwargs), g_ema_weights)
    G = D = None
    if data.get("G") is not None:
        g_record = _network(path, data, "G", "Generator")
        g_kwargs_g = _init_kwargs(path, g_record, "G")
        check_network_settings(path, "G", g_kwargs_g)
        g_weights = _weights(path, g_record, "G")
        G = materialize(path, "G", lambda: build(g_kwargs_g), g_weights)
    training = _training_summary(path, data.get("training_set_kwargs"), schema)
    if data.get("D") is not None:
        d_record = _network(path, data, "D", "Discriminator")
        d_kwargs = _discriminator_kwargs(_init_kwargs(path, d_record, "D"))
        architecture = d_kwargs.get("architecture", "resnet")
        if architecture == "resnet":
            check_network_settings(path, "D", d_kwargs, discriminator=True)
            d_weights = _weights(path, d_record, "D")
            D = materialize(path, "D", lambda: discriminator_from_kwargs(d_kwargs, schema), d_weights)
        else:  # e.g. the ADA repo's cifar config; the generator is still fine to use
            training["discriminator"] = f"not loaded: its {architecture!r} architecture is not supported"

    return build_bundle(
        G_ema=G_ema,
        G=G,
        D=D,
        augment_p=_augment_p(path, data.get("augment_pipe")),
        source_format="nvidia-pkl",
        source_name=path.name,
        source_sha256=sha256,
        training=training,
        device=device,
    )


def _network(path: Path, data: dict, key: str, class_name: str) -> PersistentRecord:
    record = data[key]
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(path, f"its {key} is a {type(record).__name__}, not a pickled network")
    if record.class_name != class_name:
        raise CheckpointError(path, f"its {key} is a pickled {record.class_name!r}, not a {class_name}")
    return record


def _weights(path: Path, record: PersistentRecord, what: str) -> dict[str, torch.Tensor]:
    """The state_dict: `_parameters` and persistent `_buffers` of all nested modules, names joined by '.'."""
    weights: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(node: PersistentRecord, prefix: str, depth: int) -> None:
        if id(node) in seen or depth > _MAX_DEPTH:
            where = prefix or "the top"
            raise CheckpointError(path, f"its {what} network nests modules in a loop at {where}")
        seen.add(id(node))
        state = node.state
        skip = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            entries = state.get(group) or {}
            if not isinstance(entries, dict):
                raise CheckpointError(path, f"its {what} module {prefix or '(top)'} has a malformed {group}")
            for name, tensor in entries.items():
                if tensor is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    kind = type(tensor).__name__
                    raise CheckpointError(path, f"its {what} tensor {prefix}{name} is a {kind}")
                weights[f"{prefix}{name}"] = tensor
        modules = state.get("_modules") or {}
        if not isinstance(modules, dict):
            raise CheckpointError(path, f"its {what} module {prefix or '(top)'} has a malformed _modules")
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                kind = type(child).__name__
                raise CheckpointError(path, f"its {what} submodule {prefix}{name} is a {kind}, not a network")
            walk(child, f"{prefix}{name}.", depth + 1)

    walk(record, "", 0)
    return weights


def _init_kwargs(path: Path, record: PersistentRecord, what: str) -> dict[str, Any]:
    args, kwargs = record.state.get("_init_args", ()), record.state.get("_init_kwargs")
    if args:
        raise CheckpointError(
            path, f"its {what} was built with positional arguments; NVIDIA's code never does"
        )
    if not isinstance(kwargs, dict):
        raise CheckpointError(path, f"its {what} does not record the settings it was built with")
    try:
        return to_plain(kwargs, f"{what} settings")
    except ValueError as exc:
        raise CheckpointError(path, str(exc)) from None


def _discriminator_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    block = {k: v for k, v in (kwargs.get("block_kwargs") or {}).items() if k not in _D_BLOCK_TRAINING_ONLY}
    return {**kwargs, "block_kwargs": block}


def _augment_p(path: Path, pipe: Any) -> float | None:
    if not isinstance(pipe, PersistentRecord):
        return None
    p = (pipe.state.get("_buffers") or {}).get("p")
    if not isinstance(p, torch.Tensor) or p.numel() != 1:
        raise CheckpointError(path, "its augment_pipe has no scalar probability buffer p")
    return float(p)


def _training_summary(path: Path, dataset: Any, schema: str) -> dict[str, Any]:
    """What the file tells about its training run: the writer, dataset settings and, from the name, kimg."""
    writer = "stylegan2-ada-pytorch" if schema == "stylegan2-ada" else "stylegan3"
    summary: dict[str, Any] = {"writer": writer}
    if isinstance(dataset, dict):
        try:
            settings = to_plain(dataset, "training_set_kwargs")
        except ValueError:
            settings = {}
        if isinstance(settings.get("path"), str):
            summary["dataset"] = dataset_name(settings["path"])
        for key in ("resolution", "use_labels", "xflip", "max_size"):
            if settings.get(key) is not None:
                summary[key] = settings[key]
    if (kimg := snapshot_kimg(path.name)) is not None:
        summary["kimg"] = kimg
    return summary
