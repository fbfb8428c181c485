"""StyleGAN3's camera on the timeline: translate and rotate keyframes move the picture between keyframes with the
keyframe's easing (rotation linearly in degrees), the project file, the CLI and each exported PNG frame's recipe
record them, interpolation videos move the camera too, and StyleGAN2 models ignore camera keys."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.engine.export import export_video
from studio.engine.library import ModelLibrary
from studio.engine.recipe import read_recipe
from studio.engine.session import Session
from studio.engine.state import RenderState
from studio.engine.timeline import Animator, Keyframe, Timeline, ease
from studio.engine.timeline_export import export_timeline, read_timeline, save_timeline
from tests.models import sg3_reference as ref
from tests.studio.engine_support import model_file  # noqa: F401

RES = 32


@pytest.fixture(scope="module")
def sg3_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sg3")
    G = ref.make_sg3(seed=2, resolution=RES)
    return ref.sg3_pickle(folder, folder / "side-effect", G, name="alias-free.pkl")


@pytest.fixture(scope="module")
def sg3(sg3_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    library = ModelLibrary(tmp_path_factory.mktemp("library"))
    return Session(library.import_model(sg3_file), device="cpu", precision="fp32")


def moved_by(later: np.ndarray, earlier: np.ndarray, dx: int) -> bool:
    """Whether `later` shows `earlier` shifted `dx` px to the right: nearer to it so shifted than unshifted."""
    a, b = later.astype(np.float32), earlier.astype(np.float32)
    inner = slice(8, RES - 8)
    shifted = np.abs(a[inner, 8 + dx : RES - 8 + dx] - b[inner, inner]).mean()
    unshifted = np.abs(a[inner, inner] - b[inner, inner]).mean()
    return shifted < 0.5 * unshifted


def pan(session: Session, easing: str = "linear", end: tuple[float, float, float] = (0.25, 0.0, 0.0)) -> Timeline:
    """Seed 1 held still while the camera moves from the centre to `end` over 2 s (by default: a quarter of the
    width to the right)."""
    state = RenderState(model_id=session.model_id, seed=1)
    keys = (Keyframe(0.0, state, easing), Keyframe(2.0, state.with_camera(end)))
    return Timeline(keys, duration=2.0, fps=4, loop=False)


def test_camera_keys_move_the_picture_with_the_keyframe_easing(sg3: Session):
    timeline = pan(sg3)
    animator = Animator(sg3, timeline)
    for key in timeline.keyframes:
        assert np.array_equal(animator.render(key.time), sg3.render(key.state))
    assert animator.settings_at(1.0).camera == (0.125, 0.0, 0.0)
    start, middle, end = (animator.render(t) for t in (0.0, 1.0, 2.0))
    assert moved_by(middle, start, 4) and moved_by(end, middle, 4)  # 1/8 of 32 px each half
    assert not np.array_equal(middle, start)

    eased = Animator(sg3, pan(sg3, "ease-in-out"))
    assert eased.settings_at(0.5).translate_x == pytest.approx(0.25 * ease("ease-in-out", 0.25))
    assert eased.settings_at(0.5).translate_x < animator.settings_at(0.5).translate_x
    held = Animator(sg3, pan(sg3, "hold"))
    assert np.array_equal(held.render(1.5), start)


def test_rotation_moves_linearly_in_degrees(sg3: Session):
    state = RenderState(model_id=sg3.model_id, seed=1)
    turn = Timeline((Keyframe(0, state), Keyframe(2, state.replace(rotate=360.0))), 2.0, fps=4, loop=False)
    animator = Animator(sg3, turn)
    assert animator.settings_at(1.0).rotate == 180.0  # a whole turn, not the shorter way (no turn at all)
    half = animator.render(1.0).astype(int)
    assert np.abs(half - sg3.render(state.replace(rotate=180.0))).max() <= 1  # w+ = avg + (w - avg): rounding
    start = animator.render(0.0).astype(int)
    assert np.abs(half - start).mean() > 10
    assert np.abs(animator.render(2.0) - start).mean() < 1  # a full turn comes back to the start
    across = Timeline((Keyframe(0, state.replace(rotate=-170.0)), Keyframe(2, state.replace(rotate=170.0))), 2.0)
    assert Animator(sg3, across).settings_at(1.0).rotate == 0.0


def test_project_file_and_each_png_frame_record_the_camera(sg3: Session, tmp_path: Path):
    timeline = pan(sg3, end=(0.25, -0.1, 20.0))
    project = save_timeline(timeline, sg3, tmp_path / "pan.json")
    reopened, recipe = read_timeline(project)
    assert reopened == timeline and recipe["model_id"] == sg3.model_id
    assert reopened.keyframes[1].state.camera == (0.25, -0.1, 20.0)

    folder = export_timeline(sg3, timeline, tmp_path / "frames")
    frames = sorted(folder.glob("frame_*.png"))
    assert len(frames) == timeline.num_frames == 9
    animator = Animator(sg3, timeline)
    for index, path in enumerate(frames):
        state = RenderState.from_dict(read_recipe(path)["state"])
        assert state.camera == pytest.approx(animator.settings_at(index / 4).camera)
        # The frame's recipe alone renders the frame: dropped on the window, it comes back.
        assert np.array_equal(np.asarray(Image.open(path)), sg3.render(state))
    assert RenderState.from_dict(read_recipe(frames[4])["state"]).camera == pytest.approx((0.125, -0.05, 10.0))


def test_cli_animate_renders_camera_keys(sg3: Session, sg3_file: Path, tmp_path: Path):
    project = save_timeline(pan(sg3), sg3, tmp_path / "pan.json")
    out = tmp_path / "cli-frames"
    argv = ["animate", str(project), "--out", str(out), "--model", str(sg3_file), "--device", "cpu"]
    assert main([*argv, "--precision", "fp32"]) == 0
    frames = [np.asarray(Image.open(p)) for p in sorted(out.glob("frame_*.png"))]
    assert len(frames) == 9
    assert moved_by(frames[4], frames[0], 4) and moved_by(frames[8], frames[0], 8)  # an eighth, a quarter of 32 px
    assert np.array_equal(frames[4], Animator(sg3, pan(sg3)).render(1.0))
    assert read_recipe(out / "frame_00008.png")["state"]["translate_x"] == 0.25


def test_interpolation_video_between_two_seeds_moves_the_camera(sg3: Session, tmp_path: Path):
    a = RenderState(model_id=sg3.model_id, seed=1)
    b = a.replace(seed=2, translate_x=0.25, rotate=30.0)
    path = export_video(sg3, [a, b], tmp_path / "pan.mp4", seconds=1, fps=3)
    frames = [f.astype(float) @ [0.299, 0.587, 0.114] for f in imageio.mimread(path, format="FFMPEG")]
    assert len(frames) == 3  # positions 0, 0.5 and 1 on the way from a to b
    wanted = [sg3.render(s).astype(float) @ [0.299, 0.587, 0.114] for s in (a, b)]
    without_camera = sg3.render(b.replace(translate_x=0.0, rotate=0.0)).astype(float) @ [0.299, 0.587, 0.114]
    errors = [np.abs(frame - image).mean() for frame, image in ((frames[0], wanted[0]), (frames[2], wanted[1]))]
    assert max(errors) < 4  # H.264's loss on a 32 px frame
    assert np.abs(frames[2] - without_camera).mean() > 2 * errors[1]


def test_stylegan2_models_ignore_camera_keys(model_file: Path, tmp_path: Path, capsys):
    session = Session(model_file, device="cpu", precision="fp32")
    assert not session.has_camera
    camera_keys = pan(session)
    assert camera_keys.has_camera and not camera_keys.without_camera().has_camera
    still = Animator(session, camera_keys.without_camera())
    animator = Animator(session, camera_keys)
    assert animator.settings_at(1.0).camera == (0.0, 0.0, 0.0)
    assert np.array_equal(animator.render(1.0), still.render(1.0))
    keys = [k.state for k in camera_keys.keyframes]
    assert export_video(session, keys, tmp_path / "still.gif", seconds=0.5, fps=4) is not None

    project = save_timeline(camera_keys, session, tmp_path / "pan.json")
    argv = ["animate", str(project), "--out", str(tmp_path / "frames"), "--model", str(model_file)]
    assert main([*argv, "--device", "cpu", "--precision", "fp32"]) == 0
    assert "camera moves are ignored" in capsys.readouterr().err
    frame = np.asarray(Image.open(tmp_path / "frames" / "frame_00004.png"))
    assert np.array_equal(frame, still.render(1.0))
