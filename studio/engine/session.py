"""A session: one loaded model on one device, turning render states into pixels, and its latent directions.

A state becomes w+ in a fixed order: the base latent (seed through the mapping, or a given w/w+) and every
mixing source are truncated toward w_avg, the mixing sources replace their layers, and then the edits add
`amount * direction` on their layer ranges — after truncation, so an edit keeps its strength at any psi.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from models import directions as direction_math
from models.checkpoints import load_checkpoint
from models.device import (
    COMPILE_ENV,
    autocast,
    compiling_unavailable,
    describe,
    keep_freed_memory,
    select_device,
    select_precision,
)
from models.fast_synthesis import FastSynthesis, RenderCancelled
from models.seeds import z_from_seed
from models.stylegan2 import truncate
from models.stylegan3 import make_transform
from studio.engine.files import atomic_write, atomic_write_bytes
from studio.engine.imaging import to_uint8
from studio.engine.library import ModelEntry, model_fingerprint
from studio.engine.masking import masked_synthesis, rasterize
from studio.engine.paths import cache_dir, user_data_dir
from studio.engine.state import RenderState

log = logging.getLogger(__name__)

DirectionMethod = Literal["ganspace", "sefa", "user"]
NUM_DIRECTIONS = 20
GANSPACE_SAMPLES = 10_000
DIRECTIONS_VERSION = 1
PREVIEW_MIN = 64
# Previews aim to take at most this long (20 frames a second while a slider moves): the preview resolution halves
# when one takes longer, and doubles (up to half the model's) when a frame at twice the size would still fit.
PREVIEW_BUDGET_MS = 50.0
MAPPED_KEPT = 64
# Unless COMPILE_ENV says otherwise, the display path is compiled where it was measured to pay: bf16 up to 256²
# (1.15× there on a Xeon with AMX; fp32 0.99×, 1024² bf16 1.04× after a quarter of an hour of compiling).
COMPILE_PAYS_UP_TO = 256
COMPILE_THREAD = "gan-studio-compile"


@dataclass
class Direction:
    """A latent direction; `strength` is GANSpace's explained variance, SeFa's eigenvalue or a user norm."""

    id: str
    name: str
    method: DirectionMethod
    vector: np.ndarray
    strength: float
    default_layers: tuple[int, int]


class Session:
    """The model of `entry_or_path` (a library entry or a checkpoint path) on `device` with `precision`.

    `device` and `precision` take the names `models.device` understands ("auto"/None, "cpu", "cuda", "mps";
    "fp32", "bf16", "fp16"). Rendering is safe from several threads; calls are serialised on the model.
    """

    def __init__(
        self,
        entry_or_path: ModelEntry | str | os.PathLike[str],
        device: str | torch.device | None = None,
        precision: str | None = None,
        data_dir: Path | None = None,
    ):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.dtype = select_precision(self.device, precision)
        if self.device.type == "cpu":
            keep_freed_memory()
        if isinstance(entry_or_path, ModelEntry):
            entry = entry_or_path
        else:
            path = Path(entry_or_path)
            entry = ModelEntry("", path.stem, path, Path(), {}, "", False)
        bundle = load_checkpoint(entry.path, self.device)
        self.G = bundle.G_ema  # G and D are dropped: rendering only needs the EMA generator
        self.meta = bundle.meta
        if not entry.model_hash:  # a file opened directly: identify it the way the library does
            model_hash = model_fingerprint(self.G)
            meta = self.meta.to_dict()
            entry = dataclasses.replace(entry, id=model_hash[:16], model_hash=model_hash, meta=meta)
        self.entry = entry
        self.model_hash = entry.model_hash
        self.model_id = entry.id
        self.num_ws = self.G.num_ws
        self.w_dim = self.G.w_dim
        self.resolution = self.G.img_resolution
        self._lock = threading.RLock()
        # The display path (same pixels, less work); fp16 keeps the eager network and its fp16 safeguards.
        display_path = self.meta.family == "stylegan2" and self.dtype in (None, torch.bfloat16)
        self._fast = FastSynthesis(self.G.synthesis, self.dtype) if display_path else None
        self._eager_fast: FastSynthesis | None = None  # the display path a compiled one replaced, to fall back to
        self._preview_cut = min(self.resolution, max(self.resolution // 4, PREVIEW_MIN))
        self._mapped: dict[tuple[int, int], torch.Tensor] = {}  # the mapping's w+ of recent (seed, class)
        self._directions_dir = (data_dir or user_data_dir()) / "directions"
        self._computed: list[Direction] | None = None
        self._user = self._read_user_directions()

    @property
    def has_camera(self) -> bool:
        """Whether the model takes translate and rotate (StyleGAN3's input transform; StyleGAN2 has none)."""
        return self.meta.family == "stylegan3"

    @property
    def device_label(self) -> str:
        return describe(self.device, self.dtype)

    @property
    def preview_resolution(self) -> int:
        """Previews stop synthesis at a quarter of the resolution, but not below 64 px (nor above full), at first;
        then at the size whose measured render time fits `PREVIEW_BUDGET_MS` (see `_measured_preview`)."""
        return self._preview_cut

    def _measured_preview(self, cut: int, elapsed_ms: float) -> None:
        """Adapt the preview resolution to a preview that was synthesised from scratch in `elapsed_ms`."""
        if cut != self._preview_cut:
            return
        smallest = min(self.resolution, PREVIEW_MIN)
        largest = max(self.resolution // 2, smallest)
        if elapsed_ms > PREVIEW_BUDGET_MS and cut // 2 >= smallest:
            self._preview_cut = cut // 2
        elif elapsed_ms * 4.5 < PREVIEW_BUDGET_MS and cut * 2 <= largest:  # 4× the pixels, and some margin
            self._preview_cut = cut * 2

    # --- compiling the display path -----------------------------------------------------------------------

    compiles = True  # whether `compile_display_path` may compile this kind of session at all

    def compile_in_background(self) -> threading.Thread:
        """Start `compile_display_path` on a thread of its own; renders go on eagerly until it is done."""
        thread = threading.Thread(target=self._compile_politely, name=COMPILE_THREAD, daemon=True)
        thread.start()
        return thread

    def _compile_politely(self) -> None:
        if sys.platform == "linux":  # there a thread has a nice value of its own, which the compilers it starts inherit
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # renders and the window come first
        self.compile_display_path()

    def compile_display_path(self) -> bool:
        """Compile the display path with torch.compile on this thread (minutes the first time, seconds once
        inductor's on-disk cache holds it) without holding the render lock, then render through it. False,
        with a log line and never an exception, where that is not possible or fails: rendering stays eager."""
        reason = self._compile_unavailable()
        if reason is not None:
            log.info("rendering without torch.compile: %s", reason)
            return False
        eager = self._fast
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # light: no dynamo

        # Inductor writes its default (a temporary folder) into the variable once anything has used it: only a
        # folder the user chose is kept, so that compiled code outlives a reboot in the app's own cache. Not in
        # a folder whose path has whitespace (a user name, GAN_STUDIO_HOME): inductor does not quote its paths
        # for the C++ compiler, so there it keeps its temporary folder.
        if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default_cache_dir()):
            ours = cache_dir() / "torch-inductor"
            if any(c.isspace() for c in str(ours)):
                log.info("compiled code goes to %s: inductor cannot compile in %s", default_cache_dir(), ours)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(ours)
        started = time.perf_counter()
        try:
            ws = self.G.mapping.w_avg.detach().float().expand(1, self.num_ws, -1)  # any latent does
            compiled = eager.compiled(ws)
        except Exception:
            log.warning("torch.compile of the display path failed; rendering without it", exc_info=True)
            return False
        with self._lock:
            if self._fast is not eager:  # the display path failed meanwhile: the reference network renders
                return False
            self._fast, self._eager_fast = compiled, eager
        log.info("display path compiled in %.1f s", time.perf_counter() - started)
        return True

    def _compile_unavailable(self) -> str | None:
        """Why this session cannot compile its display path, or None if it can try."""
        if (reason := compiling_unavailable()) is not None:
            return reason
        if os.environ.get(COMPILE_ENV) != "1" and (
            self.dtype != torch.bfloat16 or self.resolution > COMPILE_PAYS_UP_TO
        ):
            return f"it pays only in bf16 up to {COMPILE_PAYS_UP_TO}² ({COMPILE_ENV}=1 compiles anyway)"
        if not self.compiles or self._fast is None or self._eager_fast is not None:
            return "this model renders without the display path, or it is compiled already"
        if self.device.type != "cpu":
            return f"compiled only for the CPU, not {self.device.type}"
        return None

    # --- latents -----------------------------------------------------------------------------------------

    def w_for_seed(self, seed: int, class_index: int = 0) -> np.ndarray:
        """The untruncated w [w_dim] (float32) of `seed` in NVIDIA's seed convention."""
        with self._lock, torch.inference_mode():
            return self._seed_ws(seed, class_index)[0, 0].cpu().numpy()

    def ws_for_state(self, state: RenderState) -> np.ndarray:
        """The w+ [num_ws, w_dim] (float32) that `state` renders: truncated, mixed and edited."""
        with self._lock, torch.inference_mode():
            return self._compose(state)[0].cpu().numpy()

    def ws_for_z(self, z: np.ndarray, class_index: int = 0) -> np.ndarray:
        """The untruncated w+ [num_ws, w_dim] (float32) of a latent z [z_dim] that no seed gives (animation)."""
        with self._lock, torch.inference_mode():
            return self._z_ws(torch.as_tensor(np.asarray(z, dtype=np.float32))[None], class_index)[0].cpu().numpy()

    # --- rendering ---------------------------------------------------------------------------------------

    @contextmanager
    def swapped_noise(self, maps: Sequence[tuple[torch.nn.Module, torch.Tensor]]) -> Iterator[None]:
        """Render with these constant noise maps in place of the layers' own (animated noise), under the lock
        that serialises renders, so other threads never see them; the layers' own are put back afterwards."""
        with self._lock:
            own = [(layer, layer.noise_const) for layer, _ in maps]
            try:
                for layer, noise in maps:
                    layer.noise_const = noise
                self._forget_frame()
                yield
            finally:
                for layer, noise in own:
                    layer.noise_const = noise
                self._forget_frame()

    def _forget_frame(self) -> None:
        if self._fast is not None:
            self._fast.forget_frame()

    def render(
        self, state: RenderState, preview: bool = False, cancel: Callable[[], bool] | None = None,
        remember: bool = True,
    ) -> np.ndarray:
        """uint8 RGB [resolution, resolution, 3]; previews are synthesised at `preview_resolution`. `cancel` is
        polled between blocks of the network: when it returns True, RenderCancelled is raised. `remember=False`
        keeps this image out of the cache of the last frame's layers (thumbnails: the canvas keeps its own)."""
        with self._lock, torch.inference_mode():
            return to_uint8(self._synthesize(self._compose(state), state, preview, cancel, remember))[0]

    def render_raw(self, state: RenderState) -> torch.Tensor:
        """The generator's float32 output [1, channels, resolution, resolution] (about -1 to 1) on the session's
        device: what `render` turns into pixels, for callers that keep the raw values too."""
        with self._lock, torch.inference_mode():
            return self._synthesize(self._compose(state), state, preview=False)

    def render_ws(self, ws: np.ndarray, state: RenderState, preview: bool = False) -> np.ndarray:
        """Render a given w+ [num_ws, w_dim] with `state`'s noise settings (video frames, mixing grids)."""
        expected = (self.num_ws, self.w_dim)
        if tuple(ws.shape) != expected:
            raise ValueError(f"w+ of shape {tuple(ws.shape)} does not fit this model, which takes {expected}")
        with self._lock, torch.inference_mode():
            tensor = torch.as_tensor(np.asarray(ws, dtype=np.float32), device=self.device)[None]
            return to_uint8(self._synthesize(tensor, state, preview, remember=False))[0]  # grids, video frames

    def _synthesize(
        self, ws: torch.Tensor, state: RenderState, preview: bool, cancel: Callable[[], bool] | None = None,
        remember: bool = True,
    ) -> torch.Tensor:
        stop_at = self.preview_resolution if preview else None
        # A masked edit blends two renders' features block by block: the reference network does that.
        fast = self._fast is not None and state.mask is None
        image = self._fast_synthesize(ws, state, stop_at, cancel, remember) if fast else None
        if image is None:
            image = self._eager_synthesize(ws, state, stop_at, remember)
        if image.shape[-1] != self.resolution:
            image = F.interpolate(image.float(), size=(self.resolution, self.resolution), mode="bilinear")
        return image.float()

    def _fast_synthesize(self, ws, state: RenderState, stop_at: int | None, cancel, remember) -> torch.Tensor | None:
        """The display path's image, or None (and the eager path from then on) if it failed unexpectedly."""
        start = time.perf_counter()
        try:
            image = self._fast(
                ws, noise_mode=state.noise_mode, noise_scale=state.noise_strength, noise_seed=state.noise_seed,
                stop_at=stop_at, cancel=cancel, remember=remember,
            )
        except RenderCancelled:
            raise
        except Exception:
            if self._eager_fast is not None:
                log.warning("the compiled display path failed; rendering without it from now on", exc_info=True)
                self._fast, self._eager_fast = self._eager_fast, None
                return self._fast_synthesize(ws, state, stop_at, cancel, remember)
            log.warning("the fast render path failed; rendering with the reference network from now on", exc_info=True)
            self._fast = None
            return None
        if stop_at is not None and self._fast.last_reused_blocks == 0:
            self._measured_preview(stop_at, (time.perf_counter() - start) * 1000)
        return image

    def _eager_synthesize(
        self, ws: torch.Tensor, state: RenderState, stop_at: int | None, remember: bool = True
    ) -> torch.Tensor:
        if self.meta.family == "stylegan3" and state.mask is None:
            return self._stylegan3_synthesize(ws, state, stop_at, remember)
        generator = None
        if state.noise_mode == "random":
            generator = torch.Generator(device=self.device).manual_seed(state.noise_seed)
        # The edit confined to the mask, blended with the original's features (its latents mapped outside
        # autocast, as every state's are, so the outside pass is exactly the original's render).
        outside = (self._compose(state.mask.original), state.mask.original) if state.mask is not None else None
        with autocast(self.device, self.dtype):
            if outside is not None:
                coverage = rasterize(state.mask, self.resolution)
                return masked_synthesis(self.G, outside, (ws, state), coverage, state.mask.blend_from, stop_at)
            return self.G.render(
                ws,
                "ws",
                noise_mode=state.noise_mode,
                noise_scale=state.noise_strength,
                stop_at=stop_at,
                generator=generator,
                **self._camera(state),
            )

    def _stylegan3_synthesize(
        self, ws: torch.Tensor, state: RenderState, stop_at: int | None, remember: bool
    ) -> torch.Tensor:
        """StyleGAN3 previews stop at a lower layer through an RGB head fitted to the canvas's last full render
        (`SynthesisNetwork.forward`), so only the canvas's own frames use and refit them: other previews
        (thumbnails of other seeds, video frames) are of images the head was not fitted to, and render in full."""
        synthesis = self.G.synthesis
        early = remember and stop_at in synthesis.preview_heads
        start = time.perf_counter()
        with autocast(self.device, self.dtype):
            image = self.G.render(
                ws, "ws", stop_at=stop_at if early else None, fit_previews=remember and not early,
                **self._camera(state),
            )
        if early:
            self._measured_preview(stop_at, (time.perf_counter() - start) * 1000)
        return image

    def _camera(self, state: RenderState) -> dict[str, torch.Tensor]:
        """StyleGAN3's input transform for the state's translate and rotate (none when they are all 0)."""
        if not any(state.camera):
            return {}
        if not self.has_camera:
            raise ValueError("translate and rotate need a StyleGAN3 model; this model is StyleGAN2")
        transform = make_transform((state.translate_x, state.translate_y), state.rotate)
        return {"transform": transform.to(self.device)}

    def _compose(self, state: RenderState) -> torch.Tensor:
        if state.model_id and state.model_id != self.model_id:
            raise ValueError(
                f"this render state is for model {state.model_id}, but the session holds {self.model_id}"
            )
        ws = self._truncated(state, state.seed, state.w)
        if state.mix:
            ws = ws.clone()
            for source in state.mix:
                layers = list(source.layers)
                if bad := [i for i in layers if not 0 <= i < self.num_ws]:
                    raise ValueError(f"mixing layers {bad} are outside this model's 0-{self.num_ws - 1}")
                ws[:, layers] = self._truncated(state, source.seed, source.w)[:, layers]
        if state.edits:
            ws = ws.clone()
            for edit in state.edits:
                vector = torch.as_tensor(self.direction_vector(edit.direction_id), device=self.device)
                start, end = edit.layers
                ws[:, start : min(end, self.num_ws)] += edit.amount * vector
        return ws

    def _truncated(self, state: RenderState, seed: int | None, w: tuple[float, ...] | None) -> torch.Tensor:
        ws = self._seed_ws(seed, state.class_index) if w is None else self._given_ws(w)
        if state.psi != 1:
            ws = truncate(ws, self.G.mapping.w_avg, state.psi, state.cutoff)
        return ws

    def _seed_ws(self, seed: int, class_index: int) -> torch.Tensor:
        """The mapping's w+ for a seed; the last few are kept, as every frame of a slider drag asks again."""
        key = (seed, class_index)
        if key not in self._mapped:
            if len(self._mapped) >= MAPPED_KEPT:
                del self._mapped[next(iter(self._mapped))]
            self._mapped[key] = self._z_ws(z_from_seed(seed, self.G.z_dim), class_index)
        return self._mapped[key].clone()  # callers may write into theirs

    def _z_ws(self, z: torch.Tensor, class_index: int) -> torch.Tensor:
        c = None
        if self.G.c_dim > 0:
            if not 0 <= class_index < self.G.c_dim:
                raise ValueError(
                    f"class {class_index} does not exist: this model has classes 0-{self.G.c_dim - 1}"
                )
            c = F.one_hot(torch.tensor([class_index]), self.G.c_dim).float().to(self.device)
        return self.G.mapping(z.to(self.device), c)

    def _given_ws(self, w: tuple[float, ...]) -> torch.Tensor:
        t = torch.tensor(w, dtype=torch.float32, device=self.device)
        if t.numel() == self.w_dim:
            return self.G.to_ws(t[None])
        if t.numel() == self.num_ws * self.w_dim:
            return t.reshape(1, self.num_ws, self.w_dim)
        raise ValueError(
            f"a latent of {t.numel()} values does not fit this model: it takes w ({self.w_dim} values) "
            f"or w+ ({self.num_ws}×{self.w_dim} values)"
        )

    # --- directions --------------------------------------------------------------------------------------

    def directions(self) -> list[Direction]:
        """GANSpace, SeFa and the user's directions in the user's order (computed once, cached on disk)."""
        with self._lock:
            computed = self._computed_directions()
            pool = {d.id: d for d in computed}
            pool.update({d["id"]: self._user_direction(d) for d in self._user["directions"]})
            for direction_id, name in self._user["names"].items():
                if direction_id in pool:
                    pool[direction_id] = dataclasses.replace(pool[direction_id], name=name)
            order = [i for i in self._user["order"] if i in pool]
            return [pool[i] for i in order] + [d for i, d in pool.items() if i not in order]

    def direction_vector(self, direction_id: str) -> np.ndarray:
        """The vector of one direction; user directions never trigger the (slow) GANSpace/SeFa computation."""
        with self._lock:
            for d in self._user["directions"]:
                if d["id"] == direction_id:
                    return np.asarray(d["vector"], dtype=np.float32)
            for d in self._computed_directions():
                if d.id == direction_id:
                    return d.vector
        raise KeyError(f"direction {direction_id!r} does not exist for model {self.entry.name}")

    def save_direction(
        self, name: str, vector: np.ndarray, layers: tuple[int, int], direction_id: str | None = None
    ) -> Direction:
        """Keep a user direction for this model (e.g. the difference of two latents); `direction_id` is for
        restoring one from a recipe under its original id."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.w_dim,) or not np.all(np.isfinite(vector)):
            raise ValueError(f"a direction must be {self.w_dim} finite numbers, got {vector.size}")
        start, end = layers
        if not 0 <= start < end <= self.num_ws:
            raise ValueError(f"direction layers must lie within 0-{self.num_ws}, not {layers}")
        record = {
            "id": direction_id or f"user-{uuid.uuid4().hex[:8]}",
            "name": name.strip() or "Direction",
            "vector": vector.tolist(),
            "layers": [int(start), int(end)],
        }
        with self._lock:
            self._user["directions"] = [d for d in self._user["directions"] if d["id"] != record["id"]]
            self._user["directions"].append(record)
            self._write_user_directions()
        return self._user_direction(record)

    def rename_direction(self, direction_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("a direction name cannot be empty")
        with self._lock:
            self.direction_vector(direction_id)  # raises for unknown ids
            self._user["names"][direction_id] = name
            self._write_user_directions()

    def reorder_directions(self, ids: Sequence[str]) -> None:
        """Show directions in this order; directions not listed follow in their default order."""
        with self._lock:
            self._user["order"] = list(dict.fromkeys(ids))
            self._write_user_directions()

    def delete_direction(self, direction_id: str) -> None:
        """Forget a user direction (computed ones always come back, so they cannot be deleted)."""
        with self._lock:
            kept = [d for d in self._user["directions"] if d["id"] != direction_id]
            if len(kept) == len(self._user["directions"]):
                raise KeyError(f"{direction_id!r} is not a user direction of model {self.entry.name}")
            self._user["directions"] = kept
            self._user["names"].pop(direction_id, None)
            self._write_user_directions()

    def _user_direction(self, record: dict) -> Direction:
        vector = np.asarray(record["vector"], dtype=np.float32)
        return Direction(
            record["id"],
            record["name"],
            "user",
            vector,
            float(np.linalg.norm(vector)),
            tuple(record["layers"]),
        )

    def _computed_directions(self) -> list[Direction]:
        if self._computed is None:
            path = self._directions_dir / f"{self.model_hash}.npz"
            arrays = self._read_cached(path)
            if arrays is None:
                gs = direction_math.ganspace(self.G, NUM_DIRECTIONS, GANSPACE_SAMPLES)
                sf = direction_math.sefa(self.G, NUM_DIRECTIONS)
                arrays = {
                    "version": np.array(DIRECTIONS_VERSION),
                    "ganspace": gs.vectors,
                    "ganspace_strength": gs.strengths,
                    "sefa": sf.vectors,
                    "sefa_strength": sf.strengths,
                }
                self._write_npz(path, arrays)
            every = (0, self.num_ws)
            self._computed = [
                Direction(f"{method}-{i}", f"{label} {i + 1}", method, vec, float(strength), every)
                for method, label in (("ganspace", "GANSpace"), ("sefa", "SeFa"))
                for i, (vec, strength) in enumerate(
                    zip(arrays[method], arrays[f"{method}_strength"], strict=True)
                )
            ]
        return self._computed

    def _read_cached(self, path: Path) -> dict[str, np.ndarray] | None:
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
            if int(arrays["version"]) != DIRECTIONS_VERSION or arrays["ganspace"].shape[1] != self.w_dim:
                return None
            return arrays
        except (OSError, ValueError, KeyError, IndexError) as exc:
            log.warning("direction cache %s is unreadable (%s); recomputing", path, exc)
            return None

    def _write_npz(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
        except OSError as exc:  # a cache: losing it costs time, not work
            log.warning("could not cache directions in %s: %s", path, exc)

    def _read_user_directions(self) -> dict:
        path = self._directions_dir / f"{self.model_hash}.user.json"
        empty = {"directions": [], "names": {}, "order": []}
        if not path.exists():
            return empty
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {k: data[k] for k in empty}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = path.with_suffix(".json.damaged")
            os.replace(path, aside)
            log.warning("user directions %s were unreadable (%s); kept as %s", path, exc, aside.name)
            return empty

    def _write_user_directions(self) -> None:
        path = self._directions_dir / f"{self.model_hash}.user.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps({"version": DIRECTIONS_VERSION, **self._user}).encode("utf-8"))
