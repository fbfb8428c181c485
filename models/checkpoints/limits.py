"""Bounds on what a checkpoint may ask us to build, so that a small or damaged file cannot demand terabytes.

A file's recorded settings decide how large the networks built from it are, before any of its weights are
compared with them. Each sizing setting is checked against a range far beyond published StyleGAN2 networks,
and the whole network against `MAX_NETWORK_ELEMENTS`; the tensors themselves are checked against the storage
that holds them (`check_extent`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from models.checkpoints.errors import CheckpointError

# 512 M numbers (2 GiB in float32) per network; NVIDIA's 1024 px StyleGAN2 networks hold about 30 M.
MAX_NETWORK_ELEMENTS = 1 << 29

# Every integer setting that sizes a network: (lowest, highest, may be None). Names mean the same wherever they
# sit (top level, mapping_kwargs, synthesis_kwargs, block_kwargs, epilogue_kwargs).
_INT_SETTINGS: dict[str, tuple[int, int, bool]] = {
    "z_dim": (1, 4096, False),
    "w_dim": (1, 4096, False),
    "c_dim": (0, 65536, False),
    "img_resolution": (4, 4096, False),
    "img_channels": (1, 4, False),
    "channel_base": (1, 1 << 21, False),
    "channel_max": (1, 4096, False),
    "num_layers": (1, 64, False),
    "embed_features": (1, 4096, True),
    "layer_features": (1, 4096, True),
    "cmap_dim": (1, 4096, True),
    "num_fp16_res": (0, 32, False),
    "mbstd_group_size": (1, 1024, True),
    "mbstd_num_channels": (0, 64, False),
}
_MAX_FILTER_TAPS = 16  # resample_filter: NVIDIA's is [1, 3, 3, 1]
_MAX_NESTING = 4


def check_network_settings(path: Path, what: str, settings: Any, discriminator: bool = False) -> None:
    """Refuse settings that are malformed, out of range, or describe a network beyond `MAX_NETWORK_ELEMENTS`."""
    found = _collect(path, what, settings, 0)
    resolution = found.get("img_resolution", 0)
    if resolution and resolution & (resolution - 1):
        raise CheckpointError(path, f"its {what} resolution {resolution} is not a power of two")
    elements = _elements_bound(found, discriminator)
    if elements > MAX_NETWORK_ELEMENTS:
        raise CheckpointError(
            path,
            f"its {what} settings describe a network of about {elements / 1e6:,.0f} million numbers, beyond "
            f"the {MAX_NETWORK_ELEMENTS / 1e6:,.0f} million GAN Studio loads (a damaged or hostile file)",
        )


def check_extent(what: str, storage_numel: int, offset: int, size: tuple, stride: tuple) -> None:
    """ValueError unless the tensor view lies inside its storage and holds no more elements than it: no reading
    past the end, and no stride-0 view that turns a few stored numbers into terabytes once copied."""
    numel = math.prod(size)
    if numel == 0:
        if offset > storage_numel:
            raise ValueError(f"{what} starts at element {offset:,} of a storage of {storage_numel:,}")
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage_numel or numel > storage_numel:
        raise ValueError(
            f"{what} of shape {list(size)} (offset {offset:,}, stride {list(stride)}) reaches beyond its "
            f"storage of {storage_numel:,} elements"
        )


def _collect(path: Path, what: str, settings: Any, depth: int) -> dict[str, int]:
    """The sizing settings anywhere in the nested settings dicts, each checked."""
    if not isinstance(settings, dict):
        raise CheckpointError(path, f"its {what} settings are a {type(settings).__name__}, not a mapping")
    if depth > _MAX_NESTING:
        raise CheckpointError(path, f"its {what} settings nest too deeply")
    found: dict[str, int] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            found.update(_collect(path, what, value, depth + 1))
        elif key == "resample_filter":
            _check_filter(path, what, value)
        elif key in _INT_SETTINGS:
            low, high, nullable = _INT_SETTINGS[key]
            if value is None and nullable:
                continue
            if type(value) is not int:
                raise CheckpointError(
                    path, f"its {what} setting {key} is {value!r} ({type(value).__name__}), not a whole number"
                )
            if not low <= value <= high:
                raise CheckpointError(
                    path, f"its {what} setting {key} = {value:,} is outside what GAN Studio builds ({low} to {high:,})"
                )
            found[key] = value
    return found


def _check_filter(path: Path, what: str, taps: Any) -> None:
    numbers = isinstance(taps, list | tuple) and all(type(t) in (int, float) for t in taps)
    if not numbers or not 1 <= len(taps) <= _MAX_FILTER_TAPS:
        reason = f"its {what} setting resample_filter is not a list of 1 to {_MAX_FILTER_TAPS} numbers"
        raise CheckpointError(path, reason)


def _elements_bound(found: dict[str, int], discriminator: bool) -> int:
    """An upper bound on the numbers the network holds, from its dominant terms (3×3 convolutions, affine
    layers, noise maps, the mapping network); missing settings take the constructors' defaults."""
    resolution = found.get("img_resolution", 4)
    blocks = max(resolution.bit_length() - 2, 1)
    channels = min(found.get("channel_max", 512), max(found.get("channel_base", 32768) // 4, 1))
    img = found.get("img_channels", 3)
    w = (found.get("cmap_dim") or channels) if discriminator else found.get("w_dim", 512)
    layer = max(found.get("z_dim", 0) + w, found.get("layer_features") or w, found.get("embed_features") or w)
    mapping = found.get("num_layers", 8) * layer * (layer + 1) + found.get("c_dim", 0) * layer
    if discriminator:
        per_block = 19 * channels * channels + img * channels
        epilogue = 26 * channels * channels + channels * w
        return blocks * per_block + epilogue + (mapping if found.get("c_dim", 0) else 0)
    per_block = 19 * channels * channels + 3 * channels * w + 2 * resolution * resolution + 2 * img * channels
    return blocks * per_block + mapping
