"""Layer-wise model blending ("network blending", the toonification trick): one generator's coarse layers with
another's fine ones.

A `BlendCurve` gives model B's share of every synthesis block by its resolution: 0 below the swap resolution
`at`, 1 from it on, or, with a `width` in octaves, a linear ramp centred between `at / 2` and `at`. Every tensor
of a block (its convolutions, toRGB, constant input and noise) takes that share; the mapping network and w_avg
come whole from the `mapping` parent, so seeds and latent directions keep that parent's meaning. A share of 0
or 1 copies the parent's tensor exactly (bit for bit); a fractional share interpolates parameters linearly and
takes buffers (fixed noise maps, filters) from the nearer parent, since averaging two noise maps would shrink it.

`BlendSession` is a `Session` whose curve can change at any time: the change is recorded at once and applied on
the rendering thread before the next render, re-blending only the blocks whose share changed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.checkpoints import CheckpointBundle, load_checkpoint, save_checkpoint
from models.checkpoints.bundle import build_bundle
from models.stylegan2 import Generator
from studio.engine.library import ModelEntry, model_fingerprint
from studio.engine.session import Session

MAPPING_PARENTS = ("a", "b")
_BLOCK = re.compile(r"^synthesis\.b(\d+)\.")


class IncompatibleModels(ValueError):
    """Two generators that cannot be blended; the message lists what differs."""


@dataclass(frozen=True)
class BlendCurve:
    """B's share per synthesis resolution: a hard swap at `at` px (width 0), or a ramp `width` octaves wide."""

    at: int
    width: float = 0.0
    mapping: str = "a"

    def __post_init__(self) -> None:
        if isinstance(self.at, bool) or not isinstance(self.at, int) or self.at < 4 or self.at & (self.at - 1):
            raise ValueError(f"the swap resolution must be a power of two from 4 up, not {self.at!r}")
        if not (isinstance(self.width, int | float) and math.isfinite(self.width) and self.width >= 0):
            raise ValueError(f"the transition width must be a number of octaves ≥ 0, not {self.width!r}")
        if self.mapping not in MAPPING_PARENTS:
            raise ValueError(f"the mapping network comes from parent 'a' or 'b', not {self.mapping!r}")

    def share(self, resolution: int) -> float:
        """B's share of the block at `resolution` (0: all A, 1: all B)."""
        x = math.log2(resolution) - math.log2(self.at) + 0.5  # 0 halfway between at/2 and at
        if self.width == 0:
            return 1.0 if x > 0 else 0.0
        return min(1.0, max(0.0, 0.5 + x / self.width))

    def shares(self, resolutions: Iterable[int]) -> dict[int, float]:
        return {res: self.share(res) for res in resolutions}

    def to_dict(self) -> dict:
        return {"at": self.at, "width": float(self.width), "mapping": self.mapping}

    @classmethod
    def from_dict(cls, data: dict) -> BlendCurve:
        try:
            return cls(int(data["at"]), float(data.get("width", 0.0)), str(data.get("mapping", "a")))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a blend curve needs at least its swap resolution 'at' ({exc})") from None

    def describe(self) -> str:
        soft = f", {self.width:g} octave ramp" if self.width else ""
        return f"B from {self.at} px{soft}"


def check_compatible(A: Generator, B: Generator) -> None:
    """Raise IncompatibleModels naming every difference that keeps A and B from being blended."""
    problems = []
    for key in ("img_resolution", "img_channels", "z_dim", "w_dim", "c_dim"):
        a, b = getattr(A, key), getattr(B, key)
        if a != b:
            problems.append(f"{key.replace('img_', '').replace('_', ' ')} {a} vs {b}")
    if not problems:
        sa, sb = A.state_dict(), B.state_dict()
        if only := sorted(sa.keys() - sb.keys()) + sorted(sb.keys() - sa.keys()):
            problems.append(f"different layers ({', '.join(only[:4])}{' …' if len(only) > 4 else ''})")
        shapes = [k for k in sa.keys() & sb.keys() if sa[k].shape != sb[k].shape]
        if shapes:
            first = sorted(shapes)[0]
            problems.append(
                f"{len(shapes)} tensors of different shapes, e.g. {first} {tuple(sa[first].shape)} vs "
                f"{tuple(sb[first].shape)} (channel counts differ)"
            )
    if problems:
        raise IncompatibleModels("these models cannot be blended: " + "; ".join(problems))


def tensor_resolution(name: str) -> int | None:
    """The synthesis block resolution a state-dict entry belongs to; None for the mapping network."""
    match = _BLOCK.match(name)
    return int(match.group(1)) if match else None


class Blender:
    """Blends into `target` (a generator of the same architecture) from fixed copies of A's and B's tensors;
    `apply(curve)` re-blends only the blocks whose share changed since the last call."""

    def __init__(self, A: Generator, B: Generator, target: Generator):
        check_compatible(A, B)
        self.a = {k: v.detach().clone() for k, v in A.state_dict().items()}
        self.b = {k: v.detach().to(self.a[k].device).clone() for k, v in B.state_dict().items()}
        self.target = target
        self.resolutions = list(target.synthesis.block_resolutions)
        self._applied: dict[int, float] = {}
        self._mapping: str | None = None
        self.curve: BlendCurve | None = None

    def apply(self, curve: BlendCurve) -> list[int]:
        """Make the target the blend of `curve`; returns the block resolutions that were rewritten."""
        shares = curve.shares(self.resolutions)
        changed = [res for res in self.resolutions if self._applied.get(res) != shares[res]]
        live = self.target.state_dict(keep_vars=True)
        with torch.no_grad():
            for name, tensor in live.items():
                res = tensor_resolution(name)
                if res is None:
                    if curve.mapping != self._mapping:
                        tensor.copy_((self.a if curve.mapping == "a" else self.b)[name])
                elif res in changed:
                    is_parameter = isinstance(tensor, torch.nn.Parameter)
                    tensor.copy_(_mixed(self.a[name], self.b[name], shares[res], is_parameter))
        self._applied, self._mapping, self.curve = shares, curve.mapping, curve
        return changed


def _mixed(a: torch.Tensor, b: torch.Tensor, share: float, interpolate: bool) -> torch.Tensor:
    if share == 0:
        return a
    if share == 1:
        return b
    if interpolate and a.is_floating_point():
        return torch.lerp(a, b, share)
    return b if share >= 0.5 else a


def blend_generators(A: Generator, B: Generator, curve: BlendCurve) -> Generator:
    """A new generator: the blend of A and B by `curve`."""
    target = copy.deepcopy(A)
    Blender(A, B, target).apply(curve)
    return target


def blend_spec(entry_a: ModelEntry, entry_b: ModelEntry, curve: BlendCurve) -> dict:
    """The parents and the curve, as recipes and exported files record them."""
    def parent(entry: ModelEntry) -> dict:
        return {"id": entry.id, "model_hash": entry.model_hash, "name": entry.name}

    return {"a": parent(entry_a), "b": parent(entry_b), **curve.to_dict()}


def blend_id(hash_a: str, hash_b: str, mapping: str) -> str:
    """The id a live blend's states carry: the same for every curve of one pair of parents."""
    return "blend-" + hashlib.sha256(f"{hash_a}:{hash_b}:{mapping}".encode()).hexdigest()[:10]


def blend_bundle(G: Generator, spec: dict, name: str) -> CheckpointBundle:
    """A checkpoint bundle of blended generator `G` whose training metadata names both parents and the curve."""
    return build_bundle(
        G_ema=G, G=None, D=None, augment_p=None, source_format="native", source_name=name,
        source_sha256="", training={"base": "blend", "blend": spec}, device="cpu",
    )


def blend_files(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    curve: BlendCurve,
    out: str | os.PathLike[str],
) -> Path:
    """Blend two checkpoint files into a .safetensors file at `out` (the CLI's `gan-studio blend`)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the blended model is written as .safetensors, not {out.name}")
    A, B = (load_checkpoint(path, "cpu").G_ema for path in (path_a, path_b))
    check_compatible(A, B)
    spec = blend_spec(_file_entry(path_a, A), _file_entry(path_b, B), curve)
    save_checkpoint(out, blend_bundle(blend_generators(A, B, curve), spec, out.name))
    return out


def _file_entry(path: str | os.PathLike[str], G: Generator) -> ModelEntry:
    """How a model file outside the library is named in a blend's metadata: by its content, as the library does."""
    model_hash = model_fingerprint(G)
    return ModelEntry(model_hash[:16], Path(path).stem, Path(path), Path(), {}, "", False, model_hash)


class BlendSession(Session):
    """A session rendering the blend of library models `entry_a` and `entry_b`; `set_curve` is cheap and
    thread-safe. Its states carry `blend_id(...)`; directions are those of the mapping parent."""

    compiles = False  # every curve rewrites the weights in place, which no compiled graph would match

    def __init__(
        self,
        entry_a: ModelEntry,
        entry_b: ModelEntry,
        curve: BlendCurve,
        device: str | torch.device | None = None,
        precision: str | None = None,
        data_dir: Path | None = None,
    ):
        mapping_parent = entry_a if curve.mapping == "a" else entry_b
        super().__init__(mapping_parent, device, precision, data_dir)
        A = self.G if curve.mapping == "a" else load_checkpoint(entry_a.path, self.device).G_ema
        B = self.G if curve.mapping == "b" else load_checkpoint(entry_b.path, self.device).G_ema
        self.parents = (entry_a, entry_b)
        self._blender = Blender(A, B, self.G)
        self._curve_lock = threading.Lock()
        self._pending: BlendCurve | None = None
        self._blender.apply(curve)
        self.curve = curve
        self.model_id = blend_id(entry_a.model_hash, entry_b.model_hash, curve.mapping)
        self.entry = self._entry_for(curve)

    def _entry_for(self, curve: BlendCurve) -> ModelEntry:
        a, b = self.parents
        return dataclasses.replace(
            a,
            id=self.model_id,
            name=f"{a.name} × {b.name}",
            meta={**a.meta, "blend": blend_spec(a, b, curve)},
            bundled=False,
            model_hash=self.model_id,
        )

    def set_curve(self, curve: BlendCurve) -> None:
        """Blend by `curve` from the next render on (the mapping parent is fixed for the session's life)."""
        if curve.mapping != self.curve.mapping:
            raise ValueError("the mapping parent of a blend cannot change: open a new blend")
        with self._curve_lock:
            self._pending = curve
            self.curve = curve
            self.entry = self._entry_for(curve)

    def _synthesize(self, *args, **kwargs):  # always called with the render lock held
        self._apply_pending()
        return super()._synthesize(*args, **kwargs)

    def _eager_synthesize(self, *args, **kwargs):  # render_raw's way in, also under the render lock
        self._apply_pending()
        return super()._eager_synthesize(*args, **kwargs)

    def _apply_pending(self) -> None:
        with self._curve_lock:
            curve, self._pending = self._pending, None
        if curve is not None:
            self._blender.apply(curve)

    def blended_generator(self) -> Generator:
        """A copy of the generator as the current curve blends it."""
        with self._lock:
            self._apply_pending()
            return copy.deepcopy(self.G)

    def export_bundle(self, name: str) -> CheckpointBundle:
        """The blend as the curve stands, ready for the library or a .safetensors file."""
        a, b = self.parents
        return blend_bundle(self.blended_generator().cpu(), blend_spec(a, b, self.curve), name)
