"""The keyframe timeline on a real tiny model: exact keyframes, seamless loops, per-parameter interpolation,
easing, BPM snapping, animated noise, project files, and exports that never look complete when they are not."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from models.seeds import z_from_seed
from studio.engine.files import ExportError
from studio.engine.library import ModelLibrary
from studio.engine.session import Session
from studio.engine.state import Edit, MixSource, RenderState
from studio.engine.timeline import Animator, Keyframe, Timeline, ease, slerp
from studio.engine.timeline_export import export_timeline, read_timeline, save_timeline
from tests.studio.engine_support import model_file  # noqa: F401


@pytest.fixture(scope="module")
def session(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    library = ModelLibrary(tmp_path_factory.mktemp("library"))
    session = Session(library.import_model(model_file), device="cpu", data_dir=tmp_path_factory.mktemp("data"))
    # A user direction: edits without GANSpace's 10 000-sample computation.
    session.save_direction("up", np.linspace(-1, 1, session.w_dim), (0, session.num_ws), direction_id="user-up")
    return session


def three_keys(session: Session, **options) -> Timeline:
    state = RenderState(model_id=session.model_id)
    keys = (
        Keyframe(0.0, state.replace(seed=1)),
        Keyframe(1.0, state.replace(seed=2, psi=0.7), "ease-in-out"),
        Keyframe(2.0, state.replace(seed=3, edits=(Edit("user-up", 1.5, (0, 4)),))),
    )
    return Timeline(keys, duration=3.0, fps=4, **options)


def test_keyframe_times_render_exactly_their_states(session: Session):
    timeline = three_keys(session)
    animator = Animator(session, timeline)
    for key in timeline.keyframes:
        assert np.array_equal(animator.ws_at(key.time), session.ws_for_state(key.state))
        assert np.array_equal(animator.render(key.time), session.render(key.state))


def test_loop_returns_to_the_first_frame_and_stops_one_frame_short(session: Session):
    looped = three_keys(session, loop=True)
    assert looped.num_frames == 12  # 3 s × 4 fps; frame 12 would repeat frame 0
    animator = Animator(session, looped)
    assert np.array_equal(animator.render(looped.duration), animator.render(0.0))
    # The closing segment (key 3 → key 1) is a real move, so the last frame differs from the first…
    last, first = animator.render(looped.frame_time(11)).astype(int), animator.render(0.0).astype(int)
    assert np.abs(last - first).mean() > 0
    # …and a straight timeline holds its last keyframe to the end instead, one frame more.
    straight = three_keys(session, loop=False)
    assert straight.num_frames == 13
    held = Animator(session, straight)
    assert np.array_equal(held.ws_at(2.5), session.ws_for_state(straight.keyframes[-1].state))


def test_z_moves_by_slerp_between_seeds(session: Session):
    state = RenderState(model_id=session.model_id)
    timeline = Timeline((Keyframe(0, state.replace(seed=1)), Keyframe(2, state.replace(seed=2))), 2.0, loop=False)
    z1, z2 = (z_from_seed(s, session.G.z_dim)[0].numpy() for s in (1, 2))
    middle = slerp(z1, z2, 0.5)
    # lerp would shrink the latent toward the origin (off the Gaussian shell); slerp keeps its norm.
    assert np.linalg.norm(middle) == pytest.approx((np.linalg.norm(z1) + np.linalg.norm(z2)) / 2, rel=1e-5)
    assert np.linalg.norm((z1 + z2) / 2) < 0.9 * np.linalg.norm(middle)
    expected = session.ws_for_z(middle)
    np.testing.assert_allclose(Animator(session, timeline).ws_at(1.0), expected, atol=1e-5)


def test_truncation_edits_and_mixing_are_interpolated_each_on_its_own(session: Session):
    start = RenderState(
        model_id=session.model_id, seed=4, psi=0.5, edits=(Edit("user-up", 2.0, (0, session.num_ws)),),
    )
    end = RenderState(model_id=session.model_id, seed=4, psi=1.0, mix=(MixSource(seed=9, layers=(6, 7)),))
    timeline = Timeline((Keyframe(0, start), Keyframe(1, end)), 1.0, loop=False)
    middle = Animator(session, timeline).ws_at(0.5)
    # The same seed: halfway is psi 0.75 and half the edit, mixed half-way on layers 6-7 only.
    halfway = session.ws_for_state(start.replace(psi=0.75, edits=(Edit("user-up", 1.0, (0, session.num_ws)),)))
    np.testing.assert_allclose(middle[:6], halfway[:6], atol=1e-5)
    mixed_end = session.ws_for_state(end)
    unmixed = session.ws_for_state(start.replace(psi=0.75, edits=()))
    edit_half = halfway - unmixed
    np.testing.assert_allclose(middle[6:], (unmixed[6:] + mixed_end[6:]) / 2 + edit_half[6:], atol=1e-5)


def test_easing_shapes_the_way_between_keyframes(session: Session):
    assert ease("linear", 0.25) == 0.25
    assert ease("ease-in-out", 0.25) < 0.25 < 0.75 < ease("ease-in-out", 0.75)
    assert ease("ease-in-out", 0.5) == pytest.approx(0.5)
    state = RenderState(model_id=session.model_id)
    held = Timeline((Keyframe(0, state.replace(seed=1), "hold"), Keyframe(1, state.replace(seed=2))), 2.0, loop=False)
    animator = Animator(session, held)
    first = session.ws_for_state(held.keyframes[0].state)
    assert np.array_equal(animator.ws_at(0.99), first)
    assert np.array_equal(animator.ws_at(1.0), session.ws_for_state(held.keyframes[1].state))


def test_bpm_grid_snaps_added_and_moved_keyframes(session: Session):
    state = RenderState(model_id=session.model_id)
    timeline = Timeline(duration=4.0, bpm=120)  # a beat every 0.5 s
    timeline = timeline.with_keyframe(state.replace(seed=1), 0.7).with_keyframe(state.replace(seed=2), 2.2)
    assert [k.time for k in timeline.keyframes] == [0.5, 2.0]
    assert [k.time for k in timeline.moved(0, 3.3).keyframes] == [2.0, 3.5]
    assert timeline.snap(9.0) == 4.0 and Timeline(duration=4.0).snap(0.7) == 0.7
    # Adding at a time already taken replaces that keyframe.
    replaced = timeline.with_keyframe(state.replace(seed=7), 0.6)
    assert [k.state.seed for k in replaced.keyframes] == [7, 2]


def test_animated_noise_varies_smoothly_and_loops(session: Session):
    state = RenderState(model_id=session.model_id, seed=3, noise_strength=60.0)  # make the tiny net's noise show
    timeline = Timeline((Keyframe(0, state),), duration=2.0, fps=8, animate_noise=True)
    still = session.render(state)
    animator = Animator(session, timeline)
    frames = [animator.render(timeline.frame_time(i)).astype(int) for i in range(timeline.num_frames)]
    assert np.array_equal(frames[0], still) and np.array_equal(animator.render(2.0), still)
    steps = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:] + frames[:1], strict=True)]
    assert min(steps) > 0  # the noise moves on every frame…
    assert np.abs(frames[4] - frames[0]).mean() > 1.5 * max(steps)  # …a little at a time
    assert np.array_equal(session.render(state), still)  # and the model's own noise maps are back


def test_project_file_round_trips_with_recipe_keyframes(session: Session, tmp_path: Path):
    timeline = three_keys(session, bpm=96.0, animate_noise=True, noise_cycles=2)
    path = save_timeline(timeline, session, tmp_path / "walk")
    assert path.name == "walk.json"
    data = json.loads(path.read_text())
    assert data["keyframes"][1]["recipe"]["model_hash"] == session.model_hash
    restored, recipe = read_timeline(path)
    assert restored == timeline and recipe["model_id"] == session.model_id


def test_damaged_or_foreign_project_files_say_what_is_wrong(tmp_path: Path, session: Session):
    (tmp_path / "other.json").write_text('{"name": "something else"}')
    with pytest.raises(ValueError, match="not a GAN Studio timeline"):
        read_timeline(tmp_path / "other.json")
    data = three_keys(session).to_dict(session.entry)
    data["keyframes"][1]["recipe"]["model_id"] = "another-model"
    (tmp_path / "mixed.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="different models"):
        read_timeline(tmp_path / "mixed.json")
    with pytest.raises(ValueError, match="past the end"):
        Timeline((Keyframe(5.0, RenderState(model_id="")),), duration=2.0)


def test_mp4_carries_the_timeline_and_its_frames(session: Session, tmp_path: Path):
    timeline = three_keys(session)
    written = export_timeline(session, timeline, tmp_path / "walk.mp4", size=64)
    assert written == tmp_path / "walk.mp4" and [p.name for p in tmp_path.iterdir()] == ["walk.mp4"]
    frames = imageio.mimread(written)
    assert len(frames) == 12 and frames[0].shape == (64, 64, 3)
    restored, _recipe = read_timeline(written)
    assert restored == timeline
    # H.264 in 4:2:0 keeps luma at full resolution but halves chroma, which the tiny random model's
    # pixel-sized colour noise does not survive: frames are compared by luma (8.6 levels off in RGB).
    animator = Animator(session, timeline)
    renders = [luma(resized(animator.render(timeline.frame_time(i)), 64)) for i in range(12)]
    for index, frame in enumerate(frames):
        errors = [np.abs(luma(frame) - render).mean() for render in renders]
        assert errors[index] < 3 and int(np.argmin(errors)) == index


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def resized(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def test_png_sequence_and_gif(session: Session, tmp_path: Path):
    timeline = three_keys(session)
    folder = export_timeline(session, timeline, tmp_path / "frames")
    names = sorted(p.name for p in folder.iterdir())
    assert names[:2] == ["frame_00000.png", "frame_00001.png"] and len(names) == 13 and names[-1] == "timeline.json"
    animator = Animator(session, timeline)
    assert np.array_equal(np.asarray(Image.open(folder / "frame_00004.png")), animator.render(1.0))
    gif = export_timeline(session, timeline, tmp_path / "walk.gif")
    with Image.open(gif) as image:
        assert image.n_frames == 12 and image.size == (32, 32)


@pytest.mark.parametrize("name", ["walk.mp4", "walk.gif", "frames"])
def test_cancelled_export_leaves_nothing_behind(session: Session, tmp_path: Path, name: str):
    seen = []
    result = export_timeline(
        session, three_keys(session), tmp_path / name, size=32,
        progress=lambda done, total, message: seen.append(done), cancel=lambda: len(seen) >= 3,
    )
    assert result is None and seen == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []


def test_export_errors_are_clear(session: Session, tmp_path: Path):
    with pytest.raises(ValueError, match="multiple of 16"):
        export_timeline(session, three_keys(session), tmp_path / "walk.mp4", size=40)
    with pytest.raises(ValueError, match="no keyframes"):
        export_timeline(session, Timeline(), tmp_path / "walk.mp4")
    with pytest.raises(ExportError, match="does not exist"):
        export_timeline(session, three_keys(session), tmp_path / "missing" / "walk.gif")
