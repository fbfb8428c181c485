"""The render state: everything that decides one image, as a frozen, hashable, JSON-serialisable value.

The UI edits a state by making a new one (`state.replace(psi=0.7)`), the renderer turns it into pixels,
exports embed it as the recipe, and `History` keeps the states for undo/redo.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NOISE_MODES = ("const", "random", "none")
CAMERA_FIELDS = ("translate_x", "translate_y", "rotate")  # StyleGAN3's input transform
STATE_VERSION = 1
SEED_LIMIT = 2**31 - 1  # the seeds the app offers: QSpinBox holds a C int; models.seeds accepts up to 2**32 - 1


@dataclass(frozen=True)
class Edit:
    """Move w by `amount` along a direction, on the ws indices start (inclusive) to end (exclusive)."""

    direction_id: str
    amount: float
    layers: tuple[int, int]

    def __post_init__(self) -> None:
        _set(self, "amount", _number(self.amount, "edit amount"))
        _set(self, "layers", _layer_range(self.layers))


@dataclass(frozen=True)
class MixSource:
    """Style-mixing source: a seed or a latent (w [w_dim], or w+ flattened [num_ws * w_dim]) for `layers`."""

    seed: int | None = None
    w: tuple[float, ...] | None = None
    layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (self.seed is None) == (self.w is None):
            raise ValueError("a mixing source needs exactly one of a seed or a latent w")
        if self.seed is not None:
            _set(self, "seed", _integer(self.seed, "mixing seed"))
        if self.w is not None:
            _set(self, "w", _latent(self.w, "mixing latent"))
        _set(self, "layers", tuple(_integer(i, "mixing layer") for i in self.layers))


@dataclass(frozen=True)
class MaskStroke:
    """One brush stroke: `points` (x, y) in image fractions (0-1, left/top to right/bottom), a `radius` in
    fractions of the image width, the fraction of the radius painted fully (`hardness`), painting or erasing."""

    points: tuple[tuple[float, float], ...]
    radius: float
    hardness: float = 0.5
    erase: bool = False

    def __post_init__(self) -> None:
        points = tuple((_number(x, "mask point"), _number(y, "mask point")) for x, y in self.points)
        if not points:
            raise ValueError("a mask stroke needs at least one point")
        _set(self, "points", points)
        _set(self, "radius", _number(self.radius, "brush radius"))
        _set(self, "hardness", _number(self.hardness, "brush hardness"))
        if not 0 < self.radius <= 1 or not 0 <= self.hardness <= 1:
            raise ValueError(f"a brush needs a radius in (0, 1] and a hardness in [0, 1], not {self.radius}, "
                             f"{self.hardness}")
        _set(self, "erase", bool(self.erase))


@dataclass(frozen=True)
class RenderState:
    """One image: which model, which latent (seed, or w overriding it), edits, truncation, mixing, noise.

    `w` is w [w_dim] or a flattened w+ [num_ws * w_dim]; `class_index` picks the label of conditional models.
    An empty `model_id` means "the session's model". `translate_x`, `translate_y` (image widths) and `rotate`
    (degrees) move a StyleGAN3 model's image through its input transform; they stay 0 for StyleGAN2.
    """

    model_id: str
    seed: int = 0
    w: tuple[float, ...] | None = None
    edits: tuple[Edit, ...] = ()
    psi: float = 1.0
    cutoff: int | None = None
    noise_mode: str = "const"
    noise_strength: float = 1.0
    noise_seed: int = 0
    mix: tuple[MixSource, ...] = ()
    class_index: int = 0
    mask: Mask | None = None
    translate_x: float = 0.0
    translate_y: float = 0.0
    rotate: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "seed", _integer(self.seed, "seed"))
        if self.w is not None:
            _set(self, "w", _latent(self.w, "latent w"))
        _set(self, "edits", tuple(self.edits))
        _set(self, "mix", tuple(self.mix))
        for edit in self.edits:
            if not isinstance(edit, Edit):
                raise ValueError(f"edits must be Edit values, not {type(edit).__name__}")
        for source in self.mix:
            if not isinstance(source, MixSource):
                raise ValueError(f"mix must hold MixSource values, not {type(source).__name__}")
        _set(self, "psi", _number(self.psi, "truncation psi"))
        if self.cutoff is not None:
            _set(self, "cutoff", _integer(self.cutoff, "truncation cutoff"))
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {self.noise_mode!r}")
        _set(self, "noise_strength", _number(self.noise_strength, "noise strength"))
        _set(self, "noise_seed", _integer(self.noise_seed, "noise seed"))
        _set(self, "class_index", _integer(self.class_index, "class index"))
        if self.mask is not None and not isinstance(self.mask, Mask):
            raise ValueError(f"mask must be a Mask value, not {type(self.mask).__name__}")
        for name in CAMERA_FIELDS:
            _set(self, name, _number(getattr(self, name), name.replace("_", " ")))

    def replace(self, **changes: Any) -> RenderState:
        return dataclasses.replace(self, **changes)

    @property
    def camera(self) -> tuple[float, float, float]:
        """(translate_x, translate_y, rotate)."""
        return self.translate_x, self.translate_y, self.rotate

    def with_camera(self, camera: tuple[float, float, float]) -> RenderState:
        return self.replace(**dict(zip(CAMERA_FIELDS, (float(v) for v in camera), strict=True)))

    def to_dict(self) -> dict:
        return {"version": STATE_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> RenderState:
        """Rebuild from `to_dict()`; a ValueError says which field is wrong (recipes come from files)."""
        if not isinstance(data, dict):
            raise ValueError(f"a render state must be a JSON object, not {type(data).__name__}")
        version = data.get("version", STATE_VERSION)
        if not isinstance(version, int) or version > STATE_VERSION:
            raise ValueError(f"render state version {version!r} is newer than this app understands")
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names}
        if not isinstance(fields.get("model_id"), str):
            raise ValueError("render state lacks its model_id")
        try:
            fields["edits"] = tuple(
                Edit(e["direction_id"], e["amount"], tuple(e["layers"])) for e in fields.get("edits", ())
            )
            fields["mix"] = tuple(
                MixSource(m.get("seed"), _optional_tuple(m.get("w")), tuple(m["layers"]))
                for m in fields.get("mix", ())
            )
            fields["w"] = _optional_tuple(fields.get("w"))
            if fields.get("mask") is not None:
                fields["mask"] = Mask.from_dict(fields["mask"])
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"render state has a malformed edit or mixing source ({exc})") from None

    @classmethod
    def from_json(cls, text: str | dict) -> RenderState:
        """Parse `to_json()` output; an already parsed object (a recipe's `state`) is accepted too."""
        if isinstance(text, dict):
            return cls.from_dict(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"render state is not valid JSON: {exc}") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class Mask:
    """A painted region that confines every change: `original` is rendered outside it, the state holding the
    mask inside, their feature maps blended under the mask from the `blend_from` px block on."""

    original: RenderState
    strokes: tuple[MaskStroke, ...] = ()
    invert: bool = False
    blend_from: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.original, RenderState) or self.original.mask is not None:
            raise ValueError("a mask's original must be a render state without a mask of its own")
        _set(self, "strokes", tuple(self.strokes))
        if not all(isinstance(stroke, MaskStroke) for stroke in self.strokes):
            raise ValueError("mask strokes must be MaskStroke values")
        _set(self, "invert", bool(self.invert))
        _set(self, "blend_from", _integer(self.blend_from, "mask blending resolution"))

    def replace(self, **changes: Any) -> Mask:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Any) -> Mask:
        if not isinstance(data, dict) or not isinstance(data.get("original"), dict):
            raise ValueError("a mask must be a JSON object with its original state")
        strokes = tuple(
            MaskStroke(tuple(tuple(p) for p in s["points"]), s["radius"], s.get("hardness", 0.5), s.get("erase", False))
            for s in data.get("strokes", ())
        )
        return cls(
            RenderState.from_dict(data["original"]), strokes, data.get("invert", False), data.get("blend_from", 8)
        )


class History:
    """Undo/redo over pushed states; pushing the current state again is ignored, pushing anew drops redo."""

    def __init__(self, limit: int = 500):
        self._past: list[RenderState] = []
        self._future: list[RenderState] = []
        self._current: RenderState | None = None
        self._limit = limit

    @property
    def current(self) -> RenderState | None:
        return self._current

    @property
    def can_undo(self) -> bool:
        return bool(self._past)

    @property
    def can_redo(self) -> bool:
        return bool(self._future)

    def push(self, state: RenderState) -> None:
        if state == self._current:
            return
        if self._current is not None:
            self._past.append(self._current)
            del self._past[: -self._limit]
        self._current = state
        self._future.clear()

    def undo(self) -> RenderState | None:
        if not self._past:
            return None
        self._future.append(self._current)
        self._current = self._past.pop()
        return self._current

    def redo(self) -> RenderState | None:
        if not self._future:
            return None
        self._past.append(self._current)
        self._current = self._future.pop()
        return self._current


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):  # __index__: ints, numpy integers
        raise ValueError(f"{what} must be an integer, not {value!r}")
    return int(value)


def _layer_range(value: Any) -> tuple[int, int]:
    try:
        start, end = value
    except (TypeError, ValueError):
        raise ValueError(f"edit layers must be a (start, end) pair, not {value!r}") from None
    start, end = _integer(start, "edit layer start"), _integer(end, "edit layer end")
    if not 0 <= start <= end:
        raise ValueError(f"edit layers must satisfy 0 <= start <= end, not ({start}, {end})")
    return start, end


def _latent(values: Any, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of numbers") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} must be a non-empty list of finite numbers")
    return out


def _optional_tuple(value: Any) -> tuple | None:
    return None if value is None else tuple(value)
