"""Exports with real files: recipes restore exact pixels, names never collide, clear errors, videos loop."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import errno
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from studio.engine import files
from studio.engine.export import (
    ExportError,
    export_batch,
    export_grid,
    export_image,
    export_latents,
    export_video,
    frame_positions,
    interpolate_latents,
    unique_path,
)
from studio.engine.library import ModelLibrary
from studio.engine.recipe import read_recipe, write_png_with_recipe
from studio.engine.selftest import run_self_test
from studio.engine.session import Session
from studio.engine.state import Edit, MixSource, RenderState
from tests.studio.engine_support import model_file  # noqa: F401


@pytest.fixture(scope="module")
def session(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    library = ModelLibrary(tmp_path_factory.mktemp("library"))
    return Session(library.import_model(model_file), device="cpu", data_dir=tmp_path_factory.mktemp("data"))


def rich_state(session: Session) -> RenderState:
    return RenderState(
        model_id=session.model_id, seed=5, psi=0.6, cutoff=6, noise_mode="random", noise_seed=4,
        noise_strength=1.5, edits=(Edit("sefa-1", 2.5, (2, 8)),), mix=(MixSource(seed=9, layers=(6, 7)),),
    )


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
def test_recipe_round_trip_restores_identical_pixels(session: Session, tmp_path: Path, fmt: str):
    state = rich_state(session)
    image = session.render(state)
    written = export_image(image, tmp_path / "look", fmt, 1, state, session.entry)
    suffixes = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif"}
    assert written.exists() and written.suffix == suffixes[fmt]
    recipe = read_recipe(written)
    assert recipe["model_id"] == session.model_id and recipe["model_hash"] == session.model_hash
    assert recipe["model_name"] == "tiny" and recipe["app_version"]
    restored = RenderState.from_json(recipe["state"])
    assert restored == state
    assert np.array_equal(session.render(restored), image)
    if fmt in ("png", "tiff"):  # lossless: the file holds the exact pixels too
        assert np.array_equal(np.asarray(Image.open(written).convert("RGB")), image)


def test_write_png_with_recipe_writes_exactly_there(session: Session, tmp_path: Path):
    state = RenderState(model_id=session.model_id, seed=1)
    image = session.render(state)
    path = write_png_with_recipe(tmp_path / "a.png", image, state, session.entry)
    assert path == tmp_path / "a.png" and RenderState.from_json(read_recipe(path)["state"]) == state
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_files_without_a_recipe(tmp_path: Path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    (tmp_path / "notes.txt").write_text("hello")
    assert read_recipe(plain) is None
    assert read_recipe(tmp_path / "notes.txt") is None
    assert read_recipe(tmp_path / "missing.png") is None


def test_export_never_overwrites(session: Session, tmp_path: Path):
    image = session.render(RenderState(model_id=""))
    first = export_image(image, tmp_path / "out.png")
    second = export_image(image, tmp_path / "out.png")
    third = export_image(image, tmp_path / "out.png")
    assert (first.name, second.name, third.name) == ("out.png", "out (2).png", "out (3).png")
    assert unique_path(second) == tmp_path / "out (4).png"
    assert unique_path(tmp_path / "free.png") == tmp_path / "free.png"


def test_upscale_uses_lanczos(session: Session, tmp_path: Path):
    image = session.render(RenderState(model_id=""))
    for factor in (2, 4):
        written = export_image(image, tmp_path / f"x{factor}.png", "png", factor)
        with Image.open(written) as im:
            assert im.size == (32 * factor, 32 * factor)
            expected = Image.fromarray(image).resize(im.size, Image.Resampling.LANCZOS)
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(expected))
    with pytest.raises(ValueError, match="upscale"):
        export_image(image, tmp_path / "x3.png", "png", 3)
    with pytest.raises(ValueError, match="format"):
        export_image(image, tmp_path / "x.bmp", "bmp")


def test_read_only_folder_is_a_clear_export_error(tmp_path: Path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes into read-only folders; sysfs refuses new files even to root
        folder = Path("/sys")
        if not folder.is_dir():
            pytest.skip("running as root without /sys: no folder refuses writes")
    try:
        with pytest.raises(ExportError, match=rf"Could not save a\.png in {folder}: permission denied"):
            export_image(np.zeros((4, 4, 3), np.uint8), folder / "a.png")
    finally:
        (tmp_path / "locked").chmod(0o755)


@pytest.mark.parametrize(
    "code, message",
    [(errno.ENOSPC, "the disk is full: free some space"), (errno.EACCES, "permission denied: choose a")],
)
def test_write_failures_become_clear_export_errors(tmp_path: Path, monkeypatch, code: int, message: str):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(ExportError, match=f"Could not save a.png in {tmp_path}: {message}"):
        export_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []  # the temp file is gone


def test_a_folder_that_is_not_there_is_a_clear_export_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="the folder does not exist"):
        export_image(np.zeros((4, 4, 3), np.uint8), blocker / "a.png")
    with pytest.raises(ExportError, match="the folder does not exist"):
        export_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "missing" / "a.png")


def test_batch_writes_one_file_per_seed_and_cancels(session: Session, tmp_path: Path):
    state = RenderState(model_id=session.model_id, psi=0.8)
    events = []
    written = export_batch(session, [3, 1, 2], state, tmp_path / "batch", lambda *e: events.append(e))
    assert [p.name for p in written] == ["seed0003.png", "seed0001.png", "seed0002.png"]
    assert [e[:2] for e in events] == [(1, 3), (2, 3), (3, 3)]
    recipe = RenderState.from_json(read_recipe(written[1])["state"])
    assert recipe == state.replace(seed=1)
    assert np.array_equal(np.asarray(Image.open(written[1]).convert("RGB")), session.render(recipe))
    calls = iter([False, True])
    partial = export_batch(session, [7, 8, 9], state, tmp_path / "cancelled", cancel=lambda: next(calls))
    assert [p.name for p in partial] == ["seed0007.png"]
    assert sorted(p.name for p in (tmp_path / "cancelled").iterdir()) == ["seed0007.png"]


def test_contact_sheet(session: Session, tmp_path: Path):
    states = [RenderState(model_id="", seed=s) for s in range(5)]
    sheet_path = export_grid(session, states, tmp_path / "sheet.png", columns=3, padding=2)
    with Image.open(sheet_path) as sheet:
        width, height = sheet.size
        pixels = np.asarray(sheet.convert("RGB"))
    assert width == 3 * 32 + 4 * 2 and height > 2 * 32 + 3 * 2  # two rows plus caption strips
    assert np.array_equal(pixels[2:34, 2:34], session.render(states[0]))
    assert export_grid(session, states, tmp_path / "never.png", cancel=lambda: True) is None
    assert not (tmp_path / "never.png").exists()


def test_keyframe_schedule_and_seamless_loop():
    keys = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 2, 4), np.float32)
    positions = frame_positions(12, 3, loop=True)
    assert len(positions) == 12 and positions[0] == 0 and positions[-1] < 3
    frames = interpolate_latents(keys, positions, "linear", loop=True)
    after_last = interpolate_latents(keys, np.array([3.0]), "linear", loop=True)[0]
    assert np.array_equal(frames[0], keys[0]) and np.array_equal(after_last, frames[0])
    steps = np.abs(np.diff(np.concatenate([frames[:, 0, 0], [after_last[0, 0]]])))
    assert np.allclose(steps[:8], 0.25) and np.isclose(steps[-1], 0.5)  # 2→0 takes the same four frames
    open_path = interpolate_latents(keys, frame_positions(5, 3, loop=False), "linear")
    assert np.allclose(open_path[:, 0, 0], [0, 0.5, 1, 1.5, 2])
    smooth = interpolate_latents(keys, frame_positions(9, 3, loop=False), "smooth")
    assert np.allclose(smooth[[0, 4, 8], 0, 0], [0, 1, 2]) and 0 < smooth[1, 0, 0] < 0.25
    with pytest.raises(ValueError, match="easing"):
        interpolate_latents(keys, positions, "bouncy")


def test_gif_video_has_seconds_times_fps_frames(session: Session, tmp_path: Path):
    keyframes = [RenderState(model_id="", seed=s, psi=0.8) for s in (1, 2, 3)]
    events = []
    path = export_video(
        session, keyframes, tmp_path / "loop.gif", 1.5, 8, loop=True, progress=lambda *e: events.append(e)
    )
    with Image.open(path) as gif:
        assert gif.n_frames == 12 and gif.info["loop"] == 0 and gif.size == (32, 32)
    assert events[-1][:2] == (12, 12)
    assert not export_video(session, keyframes, tmp_path / "x.gif", 1, 8, cancel=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.gif"]  # nothing left of the cancelled one


def test_mp4_video_is_written_and_decodes(session: Session, tmp_path: Path):
    keyframes = [RenderState(model_id="", seed=s) for s in (4, 5)]
    path = export_video(session, keyframes, tmp_path / "walk.mp4", seconds=1, fps=6, easing="smooth")
    assert path.stat().st_size > 0
    frames = imageio.mimread(path, format="FFMPEG")
    assert len(frames) == 6 and frames[0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        export_video(session, keyframes, tmp_path / "walk.avi", 1, 6)
    with pytest.raises(ValueError, match="two keyframes"):
        export_video(session, keyframes[:1], tmp_path / "one.mp4", 1, 6)


def test_latents_export(session: Session, tmp_path: Path):
    states = [rich_state(session), RenderState(model_id="", seed=3)]
    path = export_latents(session, states, tmp_path / "latents")
    assert path.name == "latents.npy"
    latents = np.load(path)
    assert latents.shape == (2, 8, 32) and latents.dtype == np.float32
    assert np.array_equal(latents[0], session.ws_for_state(states[0]))
    assert np.array_equal(session.render_ws(latents[0], states[0]), session.render(states[0]))


def test_self_test_passes(tmp_path: Path):
    assert run_self_test(tmp_path) == []
    assert read_recipe(tmp_path / "self-test.png") is not None
