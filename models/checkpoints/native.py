"""GAN Studio's own checkpoint: one `.safetensors` file, weights plus JSON metadata, no code anywhere.

Tensors are stored as `G_ema.<key>`, `G.<key>`, `D.<key>` (contiguous, no shared storage, float32 or
float16) and the string metadata holds `format`, `format_version`, `meta` (`ModelMeta` as JSON) and
`augment_p` (JSON). Reading goes through `safe_open`, which memory-maps the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from models import stylegan3
from models.checkpoints.bundle import CheckpointBundle, ModelMeta, build_bundle, materialize
from models.checkpoints.errors import CheckpointError
from models.checkpoints.limits import check_network_settings
from models.stylegan2 import discriminator_from_kwargs, generator_from_kwargs

FORMAT = "gan-studio"
FORMAT_VERSION = 1
_NETWORKS = ("G_ema", "G", "D")


def save_checkpoint(
    path: str | os.PathLike[str], bundle: CheckpointBundle, dtype: torch.dtype = torch.float32
) -> None:
    """Write `bundle` atomically; float16 halves the file, and loading casts back to float32.

    The architecture fields of the metadata are taken from the networks themselves, so the file always
    describes what it holds.
    """
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"checkpoints are stored as torch.float32 or torch.float16, not {dtype}")
    path = Path(path)
    G_ema, D = bundle.G_ema, bundle.D
    old = bundle.meta
    meta = ModelMeta.for_networks(
        G_ema, D, source_format=old.source_format, source_name=old.source_name,
        source_sha256=old.source_sha256, training=old.training,
    )
    tensors = {}
    for prefix, net in zip(_NETWORKS, (G_ema, bundle.G, D), strict=True):
        for key, value in (net.state_dict() if net is not None else {}).items():
            target = dtype if value.is_floating_point() else value.dtype
            tensors[f"{prefix}.{key}"] = value.detach().to("cpu", dtype=target, copy=True).contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "dtype": str(dtype).removeprefix("torch."),
        "meta": json.dumps(meta.to_dict()),
        "augment_p": json.dumps(bundle.augment_p),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_native(path: Path, sha256: str, device: str | torch.device) -> CheckpointBundle:
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            _check_format(path, metadata)
            tensors: dict[str, dict[str, torch.Tensor]] = {name: {} for name in _NETWORKS}
            for key in file.keys():
                prefix, _, name = key.partition(".")
                if prefix not in tensors or not name:
                    raise CheckpointError(path, f"it holds a tensor {key!r} outside G_ema, G and D")
                tensor = file.get_tensor(key)
                tensors[prefix][name] = tensor.float() if tensor.is_floating_point() else tensor
    except SafetensorError as exc:
        raise CheckpointError(path, f"the safetensors data is truncated or corrupt ({exc})") from None
    try:
        meta = ModelMeta.from_dict(json.loads(metadata.get("meta", "")))
        augment_p = json.loads(metadata.get("augment_p", "null"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(path, f"its metadata is malformed ({exc})") from None
    if augment_p is not None and not isinstance(augment_p, (int, float)):
        raise CheckpointError(path, f"its augment_p is {augment_p!r}, not a number")
    if not tensors["G_ema"]:
        raise CheckpointError(path, "it holds no G_ema tensors")

    def generator(what: str):
        check_network_settings(path, what, meta.g_kwargs)
        if meta.family == "stylegan3":
            return materialize(path, what, lambda: stylegan3.generator_from_kwargs(meta.g_kwargs), tensors[what])
        return materialize(path, what, lambda: generator_from_kwargs(meta.g_kwargs), tensors[what])

    G_ema = generator("G_ema")
    G = generator("G") if tensors["G"] else None
    D = None
    if tensors["D"]:
        if meta.d_kwargs is None:
            raise CheckpointError(path, "it holds D tensors but no discriminator settings (d_kwargs)")
        check_network_settings(path, "D", meta.d_kwargs, discriminator=True)
        D = materialize(path, "D", lambda: discriminator_from_kwargs(meta.d_kwargs), tensors["D"])
    # Provenance names the file a model was first imported from; a model born here names its own file.
    source = (meta.source_format, meta.source_name, meta.source_sha256)
    if not meta.source_sha256:
        source = ("native", path.name, sha256)
    return build_bundle(
        G_ema=G_ema,
        G=G,
        D=D,
        augment_p=augment_p,
        source_format=source[0],
        source_name=source[1],
        source_sha256=source[2],
        training=meta.training,
        device=device,
    )


def _check_format(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            path,
            "it is a safetensors file but not a GAN Studio checkpoint (no 'format: gan-studio' metadata)",
        )
    version = metadata.get("format_version", "")
    if not version.isdigit():
        raise CheckpointError(path, f"its format_version {version!r} is not a number")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(
            path, f"it was written by a newer GAN Studio (format {version}; this one reads {FORMAT_VERSION})"
        )
