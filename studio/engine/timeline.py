"""Keyframe animation: a timeline of complete render states on a time axis, and the frames between them.

Between two keyframes every parameter moves on its own: z by slerp (when both keyframes are seeds of the same
class, so the in-between latents stay where the mapping network expects them), w and w+ by lerp, truncation
per layer, mixing sources and edit amounts by lerp, and StyleGAN3's camera (translate x/y, rotate) by lerp too.
Rotation moves linearly in degrees, not along the shorter way round: keyframes at 0° and 360° turn the image
once, and -170° to 170° turns through 0°. A keyframe's easing shapes the segment that leaves it (camera
included); "hold" keeps its image until the next keyframe. StyleGAN2 models have no camera: a timeline's camera
keys are ignored there. A looping timeline returns from its last keyframe to the first at `duration`, so frame
`num_frames` would repeat frame 0 and is never rendered. Optional noise animation turns the constant noise maps
slowly around a circle in noise space (unit variance all along, and back where it started at the end of the
loop).

A timeline file is small JSON: timing, options and keyframes whose states are recipes (`recipe.make_recipe`),
so each keyframe names its model as an exported image does.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.seeds import z_from_seed
from studio.engine.library import ModelEntry
from studio.engine.recipe import app_version, make_recipe
from studio.engine.session import Session
from studio.engine.state import RenderState

EASINGS = ("linear", "ease-in-out", "hold")
TIMELINE_FORMAT = "gan-studio-timeline"
TIMELINE_VERSION = 1
MAX_FPS = 120
MAX_DURATION = 3600.0


@dataclass(frozen=True)
class Keyframe:
    """`state` shown at `time` seconds; `easing` shapes the way from here to the next keyframe."""

    time: float
    state: RenderState
    easing: str = "linear"

    def __post_init__(self) -> None:
        if isinstance(self.time, bool) or not isinstance(self.time, int | float) or not math.isfinite(self.time):
            raise ValueError(f"a keyframe time must be a finite number of seconds, not {self.time!r}")
        if self.time < 0:
            raise ValueError(f"a keyframe time cannot be negative ({self.time} s)")
        object.__setattr__(self, "time", float(self.time))
        if self.easing not in EASINGS:
            raise ValueError(f"easing must be one of {', '.join(EASINGS)}, not {self.easing!r}")
        if not isinstance(self.state, RenderState):
            raise ValueError(f"a keyframe holds a RenderState, not {type(self.state).__name__}")


@dataclass(frozen=True)
class Timeline:
    """Keyframes (kept in time order) over `duration` seconds at `fps`; `bpm` (if set) is the snapping grid."""

    keyframes: tuple[Keyframe, ...] = ()
    duration: float = 8.0
    fps: int = 24
    loop: bool = True
    animate_noise: bool = False
    noise_cycles: int = 1
    bpm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.duration, int | float) or not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"the duration must be more than 0 and at most {MAX_DURATION:.0f} s, not {self.duration}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or not 1 <= self.fps <= MAX_FPS:
            raise ValueError(f"fps must be a whole number from 1 to {MAX_FPS}, not {self.fps!r}")
        if not isinstance(self.noise_cycles, int) or self.noise_cycles < 1:
            raise ValueError(f"noise cycles must be a whole number of at least 1, not {self.noise_cycles!r}")
        if self.bpm is not None and (not isinstance(self.bpm, int | float) or not 1 <= self.bpm <= 1000):
            raise ValueError(f"BPM must lie between 1 and 1000, not {self.bpm!r}")
        keys = tuple(sorted(self.keyframes, key=lambda k: k.time))
        if late := [k.time for k in keys if k.time > self.duration]:
            raise ValueError(f"keyframes at {late} s lie past the end of the {self.duration} s timeline")
        object.__setattr__(self, "keyframes", keys)
        object.__setattr__(self, "duration", float(self.duration))

    def replace(self, **changes: Any) -> Timeline:
        return dataclasses.replace(self, **changes)

    @property
    def num_frames(self) -> int:
        """Frames of a render: a loop stops one frame short of `duration` (that frame is frame 0 again)."""
        frames = round(self.duration * self.fps)
        return max(frames if self.loop else frames + 1, 1)

    def frame_time(self, index: int) -> float:
        return index / self.fps

    def snap(self, time: float) -> float:
        """`time` on the nearest beat of the BPM grid (unchanged without a BPM), kept within the timeline."""
        if self.bpm is not None:
            beat = 60.0 / self.bpm
            time = round(time / beat) * beat
        return min(max(time, 0.0), self.duration)

    # --- editing (each returns a new timeline) ------------------------------------------------------------

    def with_keyframe(self, state: RenderState, time: float, easing: str = "linear") -> Timeline:
        """Add `state` at `time` (snapped); a keyframe already at that time is replaced."""
        time = self.snap(time)
        kept = tuple(k for k in self.keyframes if not math.isclose(k.time, time, abs_tol=1e-6))
        return self.replace(keyframes=(*kept, Keyframe(time, state, easing)))

    def moved(self, index: int, time: float) -> Timeline:
        """Keyframe `index` moved to `time` (snapped); a keyframe already at that time gives way to it."""
        time = self.snap(time)
        key = self.keyframes[index]
        others = tuple(
            k for i, k in enumerate(self.keyframes) if i != index and not math.isclose(k.time, time, abs_tol=1e-6)
        )
        return self.replace(keyframes=(*others, dataclasses.replace(key, time=time)))

    def with_state(self, index: int, state: RenderState) -> Timeline:
        keys = list(self.keyframes)
        keys[index] = dataclasses.replace(keys[index], state=state)
        return self.replace(keyframes=tuple(keys))

    def with_easing(self, index: int, easing: str) -> Timeline:
        keys = list(self.keyframes)
        keys[index] = dataclasses.replace(keys[index], easing=easing)
        return self.replace(keyframes=tuple(keys))

    def without(self, index: int) -> Timeline:
        return self.replace(keyframes=self.keyframes[:index] + self.keyframes[index + 1 :])

    @property
    def has_camera(self) -> bool:
        """Whether any keyframe moves or turns the image (StyleGAN3's camera)."""
        return any(any(k.state.camera) for k in self.keyframes)

    def without_camera(self) -> Timeline:
        """Every keyframe centred: the timeline as a model without a camera (StyleGAN2) shows it."""
        centred = (dataclasses.replace(k, state=k.state.with_camera((0, 0, 0))) for k in self.keyframes)
        return self.replace(keyframes=tuple(centred))

    # --- where a time falls -------------------------------------------------------------------------------

    def segment(self, time: float) -> tuple[Keyframe, Keyframe, float]:
        """The keyframes around `time` and the eased progress u in [0, 1) from the first toward the second.

        Before the first keyframe and after the last the image holds, unless the timeline loops: then the
        way from the last keyframe continues past `duration` into the first."""
        keys = self.keyframes
        if not keys:
            raise ValueError("the timeline has no keyframes: add the current image as a keyframe first")
        if len(keys) == 1:
            return keys[0], keys[0], 0.0
        if self.loop:
            time %= self.duration
        after = next((i for i, k in enumerate(keys) if k.time > time), len(keys))
        if not self.loop and (after == 0 or after == len(keys)):
            held = keys[0] if after == 0 else keys[-1]
            return held, held, 0.0
        a, b = keys[after - 1], keys[after % len(keys)]
        start, end = a.time, b.time
        if after == 0:  # looping, before the first keyframe: on the way from the last one
            start -= self.duration
        elif after == len(keys):
            end += self.duration
        u = (time - start) / (end - start) if end > start else 0.0
        return a, b, ease(a.easing, min(max(u, 0.0), 1.0))

    # --- files --------------------------------------------------------------------------------------------

    def to_dict(self, entry: ModelEntry) -> dict:
        """The project file's content; `entry` is the model the keyframes render with."""
        return {
            "format": TIMELINE_FORMAT,
            "version": TIMELINE_VERSION,
            "app_version": app_version(),
            "duration": self.duration,
            "fps": self.fps,
            "loop": self.loop,
            "animate_noise": self.animate_noise,
            "noise_cycles": self.noise_cycles,
            "bpm": self.bpm,
            "keyframes": [
                {"time": k.time, "easing": k.easing, "recipe": make_recipe(k.state, entry)} for k in self.keyframes
            ],
        }

    def to_json(self, entry: ModelEntry) -> str:
        return json.dumps(self.to_dict(entry), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Any) -> tuple[Timeline, dict]:
        """The timeline and the recipe of its first keyframe (which names the model); ValueError says what is
        wrong with a file that is not a timeline or is damaged."""
        if not isinstance(data, dict) or data.get("format") != TIMELINE_FORMAT:
            raise ValueError("this is not a GAN Studio timeline")
        version = data.get("version")
        if not isinstance(version, int) or version > TIMELINE_VERSION:
            raise ValueError(f"timeline version {version!r} is newer than this app understands")
        try:
            keys = []
            recipes = []
            for item in data["keyframes"]:
                recipe = item["recipe"]
                state = RenderState.from_dict(recipe["state"])
                keys.append(Keyframe(item["time"], state, item.get("easing", "linear")))
                recipes.append(recipe)
            bpm = data.get("bpm")
            timeline = cls(
                tuple(keys),
                duration=data["duration"],
                fps=data["fps"],
                loop=bool(data.get("loop", True)),
                animate_noise=bool(data.get("animate_noise", False)),
                noise_cycles=data.get("noise_cycles", 1),
                bpm=None if bpm is None else float(bpm),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the timeline is damaged (missing or malformed {exc})") from None
        if len({r.get("model_id") for r in recipes}) > 1:
            raise ValueError("the keyframes of this timeline come from different models; one timeline uses one model")
        return timeline, (recipes[0] if recipes else {})

    @classmethod
    def from_json(cls, text: str) -> tuple[Timeline, dict]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the timeline is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def ease(easing: str, u: float) -> float:
    if easing == "hold":
        return 0.0
    if easing == "ease-in-out":
        return 0.5 - 0.5 * math.cos(math.pi * u)
    return u


def slerp(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    """Spherical interpolation (norms lerped too), falling back to lerp for (nearly) parallel vectors."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return a + (b - a) * u
    cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    angle = math.acos(cos)
    if angle < 1e-4:
        return a + (b - a) * u
    direction = (math.sin((1 - u) * angle) * a / na + math.sin(u * angle) * b / nb) / math.sin(angle)
    return direction * (na + (nb - na) * u)


@dataclass(frozen=True)
class _Parts:
    """A keyframe's latent taken apart: composed w+ = mixed where `mixed_mask`, else truncated base; plus edits."""

    z: np.ndarray | None  # [z_dim] when the base is a seed
    base: np.ndarray  # untruncated w+ [num_ws, w_dim]
    psi: np.ndarray  # per-layer truncation [num_ws, 1] (1 where the cutoff leaves a layer alone)
    mixed: np.ndarray  # truncated and mixed w+, before edits
    mixed_mask: np.ndarray  # [num_ws, 1]: 1 on layers a mixing source replaces
    edits: np.ndarray  # what the edits add to w+
    full: np.ndarray  # exactly what the session renders for the state


class Animator:
    """Renders a timeline's frames with a session; keyframe latents are computed once and kept."""

    def __init__(self, session: Session, timeline: Timeline):
        self.session = session
        self.timeline = timeline if session.has_camera else timeline.without_camera()
        self._parts: dict[RenderState, _Parts] = {}
        self._avg = session.G.mapping.w_avg.detach().float().cpu().numpy()
        self._noise: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] | None = None

    def ws_at(self, time: float) -> np.ndarray:
        """The w+ [num_ws, w_dim] shown at `time`; exactly the keyframe's own w+ at a keyframe."""
        a, b, u = self.timeline.segment(time)
        pa = self._parts_of(a.state)
        if u == 0.0:
            return pa.full
        pb = self._parts_of(b.state)
        if pa.z is not None and pb.z is not None and a.state.class_index == b.state.class_index:
            base = self.session.ws_for_z(slerp(pa.z, pb.z, u), a.state.class_index)
        else:
            base = pa.base + (pb.base - pa.base) * u
        psi = pa.psi + (pb.psi - pa.psi) * u
        truncated = self._avg + psi * (base - self._avg)
        mask = pa.mixed_mask + (pb.mixed_mask - pa.mixed_mask) * u
        # A layer mixed at one keyframe only fades its source in or out, rather than sliding from the base.
        source_a = np.where(pa.mixed_mask > 0, pa.mixed, pb.mixed)
        source_b = np.where(pb.mixed_mask > 0, pb.mixed, pa.mixed)
        mixed = source_a + (source_b - source_a) * u
        edits = pa.edits + (pb.edits - pa.edits) * u
        return ((1 - mask) * truncated + mask * mixed + edits).astype(np.float32)

    def settings_at(self, time: float) -> RenderState:
        """The state whose settings besides the latent render `time`: the segment's first keyframe, with the
        noise strength and the camera moved along the segment."""
        a, b, u = self.timeline.segment(time)
        strength = a.state.noise_strength + (b.state.noise_strength - a.state.noise_strength) * u
        camera = tuple(x + (y - x) * u for x, y in zip(a.state.camera, b.state.camera, strict=True))
        return a.state.replace(noise_strength=strength).with_camera(camera)

    def state_at(self, time: float) -> RenderState:
        """A state rendering the frame at `time` on its own (the frame's recipe): the frame's w+ as its latent,
        with `settings_at`'s noise and camera. Animated noise maps are not part of a state."""
        latent = tuple(self.ws_at(time).ravel().tolist())
        return self.settings_at(time).replace(w=latent, psi=1.0, cutoff=None, mix=(), edits=())

    def render(self, time: float, preview: bool = False) -> np.ndarray:
        """uint8 RGB of the frame at `time` (a keyframe's time gives exactly that keyframe's render, unless the
        noise is animated: then only at the start of each noise cycle)."""
        ws, state = self.ws_at(time), self.settings_at(time)
        if not self.timeline.animate_noise or state.noise_mode != "const":
            return self.session.render_ws(ws, state, preview)
        with self._noise_at(time):
            return self.session.render_ws(ws, state, preview)

    def frames(self, preview: bool = False) -> Iterator[np.ndarray]:
        for index in range(self.timeline.num_frames):
            yield self.render(self.timeline.frame_time(index), preview)

    def _parts_of(self, state: RenderState) -> _Parts:
        if state not in self._parts:
            s = self.session
            base_state = state.replace(psi=1.0, cutoff=None, mix=(), edits=())
            mixed = s.ws_for_state(state.replace(edits=()))
            full = s.ws_for_state(state)
            layers = np.arange(s.num_ws)[:, None]
            truncated = np.ones_like(layers, bool) if state.cutoff is None else layers < state.cutoff
            psi = np.where(truncated, state.psi, 1.0).astype(np.float32)
            mask = np.zeros((s.num_ws, 1), np.float32)
            for source in state.mix:
                mask[list(source.layers)] = 1.0
            self._parts[state] = _Parts(
                z=z_from_seed(state.seed, s.G.z_dim)[0].numpy() if state.w is None else None,
                base=s.ws_for_state(base_state),
                psi=psi,
                mixed=mixed,
                mixed_mask=mask,
                edits=full - mixed,
                full=full,
            )
        return self._parts[state]

    @contextmanager
    def _noise_at(self, time: float) -> Iterator[None]:
        """Every constant noise map turned by the angle of `time` around the circle through it and a second
        map of the same seed: cos·const + sin·other keeps unit variance, and a whole number of cycles per
        timeline makes the loop seamless."""
        if self._noise is None:
            generator = torch.Generator().manual_seed(self.timeline.keyframes[0].state.noise_seed)
            layers = [m for m in self.session.G.synthesis.modules() if hasattr(m, "noise_const")]
            self._noise = [
                (m, m.noise_const, torch.randn(m.noise_const.shape, generator=generator).to(m.noise_const))
                for m in layers
            ]
        angle = 2 * math.pi * self.timeline.noise_cycles * (time % self.timeline.duration) / self.timeline.duration
        with self.session.swapped_noise(
            [(module, const * math.cos(angle) + other * math.sin(angle)) for module, const, other in self._noise]
        ):
            yield
