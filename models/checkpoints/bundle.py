"""What every checkpoint format loads into: the networks plus a JSON-ready description of their origin."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from models.checkpoints.errors import CheckpointError
from models.stylegan2 import Discriminator, Generator

SOURCE_FORMATS = ("native", "nvidia-pkl", "tensorflow-pkl", "rosinality")
NetT = TypeVar("NetT", bound=nn.Module)


@dataclass
class ModelMeta:
    """Architecture, provenance and training summary of a loaded model; stored as JSON in our own files."""

    family: str
    resolution: int
    z_dim: int
    w_dim: int
    num_ws: int
    c_dim: int
    img_channels: int
    source_format: str
    source_name: str
    source_sha256: str
    g_kwargs: dict
    d_kwargs: dict | None
    training: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def for_networks(
        cls, G_ema: Generator, D: Discriminator | None, *, source_format: str, source_name: str,
        source_sha256: str, training: dict,
    ) -> ModelMeta:
        """Describe these networks: the architecture fields come from them, so they always match the weights."""
        return cls(
            family=getattr(G_ema, "family", "stylegan2"),
            resolution=G_ema.img_resolution,
            z_dim=G_ema.z_dim,
            w_dim=G_ema.w_dim,
            num_ws=G_ema.num_ws,
            c_dim=G_ema.c_dim,
            img_channels=G_ema.img_channels,
            source_format=source_format,
            source_name=source_name,
            source_sha256=source_sha256,
            g_kwargs=copy.deepcopy(G_ema.init_kwargs),
            d_kwargs=copy.deepcopy(D.init_kwargs) if D is not None else None,
            training=training,
        )

    @classmethod
    def from_dict(cls, data: Any) -> ModelMeta:
        """Rebuild from `to_dict()` output; raises ValueError naming what is missing or unexpected."""
        if not isinstance(data, dict):
            raise ValueError(f"metadata is a {type(data).__name__}, not an object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = names - {"training"}
        if missing := sorted(required - data.keys()):
            raise ValueError(f"metadata lacks {', '.join(missing)}")
        if unknown := sorted(data.keys() - names):
            raise ValueError(f"metadata has unknown fields {', '.join(unknown)}")
        if data["source_format"] not in SOURCE_FORMATS:
            raise ValueError(f"unknown source_format {data['source_format']!r}")
        return cls(**data)


@dataclass
class CheckpointBundle:
    """The networks of one checkpoint; G and D are present only when the file holds them."""

    G_ema: Generator
    G: Generator | None
    D: Discriminator | None
    augment_p: float | None
    meta: ModelMeta


def materialize(path: Path, what: str, build: Callable[[], NetT], weights: dict[str, torch.Tensor]) -> NetT:
    """Build a network from its recorded settings and load `weights` strictly, naming every missing,
    unexpected and mis-shaped tensor when they do not fit.
    """
    try:
        with torch.random.fork_rng(
            devices=[]
        ):  # initial weights are overwritten: keep the caller's RNG intact
            net = build()
    except (TypeError, ValueError, KeyError) as exc:
        reason = f"its {what} settings do not describe a network we can build ({exc})"
        raise CheckpointError(path, reason) from None
    expected = net.state_dict()
    problems = []
    if missing := [k for k in expected if k not in weights]:
        problems.append(f"missing {_some(missing)}")
    if unexpected := [k for k in weights if k not in expected]:
        problems.append(f"unexpected {_some(unexpected)}")
    if wrong := [
        f"{k} is {list(v.shape)} (expected {list(expected[k].shape)})"
        for k, v in weights.items()
        if k in expected and v.shape != expected[k].shape
    ]:
        problems.append(f"wrong shapes: {_some(wrong)}")
    if not_float := [k for k, v in weights.items() if k in expected and not v.is_floating_point()]:
        problems.append(f"non-float tensors: {_some(not_float)}")
    if problems:
        raise CheckpointError(
            path, f"its {what} weights do not fit the network its settings describe: {'; '.join(problems)}"
        )
    # Adopt the file's tensors instead of copying them (half the peak memory), each with its own storage.
    adopted, storages = {}, set()
    for key, value in weights.items():
        value = value.detach().to(expected[key].dtype).contiguous()
        if value.untyped_storage().data_ptr() in storages:
            value = value.clone()
        storages.add(value.untyped_storage().data_ptr())
        adopted[key] = value
    net.load_state_dict(adopted, strict=True, assign=True)
    return net


def _some(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def dataset_name(recorded_path: str) -> str:
    """The folder or archive name of a dataset path recorded on another machine (POSIX or Windows)."""
    return Path(recorded_path.replace("\\", "/")).name


def snapshot_kimg(file_name: str) -> int | None:
    """The training length NVIDIA's snapshot names carry (`network-snapshot-000120.pkl`: 120 kimg)."""
    found = re.search(r"network-snapshot-(\d+)", file_name)
    return int(found.group(1)) if found else None


def build_bundle(
    *,
    G_ema: Generator,
    G: Generator | None,
    D: Discriminator | None,
    augment_p: float | None,
    source_format: str,
    source_name: str,
    source_sha256: str,
    training: dict,
    device: str | torch.device,
) -> CheckpointBundle:
    """Put the networks in inference state on `device` and describe them."""
    G_ema.eval().requires_grad_(False).to(device)
    for net in (G, D):
        if net is not None:
            net.eval().to(device)
    meta = ModelMeta.for_networks(
        G_ema, D, source_format=source_format, source_name=source_name, source_sha256=source_sha256,
        training=training,
    )
    return CheckpointBundle(G_ema=G_ema, G=G, D=D, augment_p=augment_p, meta=meta)
