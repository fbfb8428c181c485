"""The display path compiled with torch.compile: the eager path's pixels, no compiling on the render thread, a
log line and eager rendering wherever compiling is unavailable or fails, and rendering that never waits on it."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import logging
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from models.fast_synthesis import FastSynthesis
from studio.engine import session as session_module
from studio.engine.paths import cache_dir
from studio.engine.renderer import Renderer
from studio.engine.session import Session
from studio.engine.state import RenderState
from tests.studio.engine_support import model_file  # noqa: F401
from tests.studio.ui_support import canvas, engine_render, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")

STATE = RenderState(model_id="", seed=3, psi=0.7)


@pytest.fixture
def compiling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Compiling turned on, with inductor's cache in the session's cache folder under a fresh GAN_STUDIO_HOME;
    the path of that cache."""
    monkeypatch.setenv(session_module.COMPILE_ENV, "1")
    monkeypatch.setenv("GAN_STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # recorded, so that the session's choice is undone after
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    return tmp_path / "home" / "cache" / "torch-inductor"


@pytest.mark.compile
@pytest.mark.timeout(1800)  # a cold compile: a minute or two on two idle cores, far longer on busy ones
def test_the_compiled_display_path_renders_the_eager_pixels_without_compiling_again(
    model_file: Path, tmp_path: Path, compiling: Path
):
    from torch._dynamo.utils import counters

    session = Session(model_file, device="cpu", precision="bf16", data_dir=tmp_path)
    states = [STATE, STATE.replace(noise_mode="none"), STATE.replace(seed=4, noise_mode="random", noise_seed=2)]
    eager = [session.render(state) for state in states] + [session.render(STATE, preview=True)]
    assert session.compile_display_path()
    assert session._eager_fast is not None and session._fast is not session._eager_fast
    assert any(compiling.rglob("*")), "inductor's cache is in the app's cache folder"
    graphs = counters["stats"]["unique_graphs"]
    compiled = [session.render(state) for state in states] + [session.render(STATE, preview=True)]
    # Slider moves, noise settings and previews (a prefix of the blocks) run the graphs compiled up front.
    for seed in (5, 6):
        compiled.append(session.render(STATE.replace(seed=seed, psi=0.5), preview=True))
        eager.append(session._eager_fast(session._compose(STATE.replace(seed=seed, psi=0.5)),
                                         stop_at=session.preview_resolution))
    assert counters["stats"]["unique_graphs"] == graphs
    for before, after in zip(eager[:4], compiled[:4], strict=True):
        difference = np.abs(before.astype(int) - after)
        assert difference.mean() < 1.0 and difference.max() <= 16  # bf16 roundings in another order
    for before, after in zip(eager[4:], compiled[4:], strict=True):  # raw outputs of preview renders
        assert np.abs(session_module.to_uint8(before)[0].astype(int) - after).mean() < 1.0


def test_a_failing_compile_logs_and_renders_on_eagerly(
    model_file: Path, tmp_path: Path, compiling: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    eager = session._fast

    def failing(self, ws):
        raise RuntimeError("C++ compile failed: cstdint: No such file or directory")

    monkeypatch.setattr(FastSynthesis, "compiled", failing)
    with caplog.at_level(logging.WARNING, logger="studio.engine.session"):
        assert not session.compile_display_path()
    assert "torch.compile of the display path failed" in caplog.text
    assert session._fast is eager
    assert np.array_equal(session.render(STATE), Session(model_file, precision="fp32", data_dir=tmp_path)
                          .render(STATE))


def test_a_compiled_path_failing_at_render_time_falls_back_to_the_eager_display_path(
    model_file: Path, tmp_path: Path, compiling: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    expected = session.render(STATE)
    eager = session._fast

    def broken_twin(self, ws):
        twin = FastSynthesis(self.synthesis, self.dtype)
        twin._block = lambda *args: (_ for _ in ()).throw(RuntimeError("compiled kernel crashed"))
        return twin

    monkeypatch.setattr(FastSynthesis, "compiled", broken_twin)
    assert session.compile_display_path()
    with caplog.at_level(logging.WARNING, logger="studio.engine.session"):
        assert np.array_equal(session.render(STATE), expected)
    assert "compiled display path failed" in caplog.text
    assert session._fast is eager


@pytest.mark.parametrize(
    "setting, expected",
    [
        ("off", "turned off"),
        ("auto fp32", "pays only in bf16"),
        ("frozen", "packaged app"),
        ("no compiler", "no C++ compiler"),
    ],
)
def test_compiling_is_skipped_with_a_log_line_where_unavailable(
    model_file: Path, tmp_path: Path, compiling: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, setting: str, expected: str,
):
    if setting == "off":
        monkeypatch.setenv(session_module.COMPILE_ENV, "0")
    elif setting == "auto fp32":
        monkeypatch.delenv(session_module.COMPILE_ENV)
    elif setting == "frozen":
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    else:
        monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(FastSynthesis, "compiled", lambda self, ws: pytest.fail("compiled where unavailable"))
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="studio.engine.session"):
        assert not session.compile_display_path()
    assert expected in caplog.text
    assert session.render(STATE).shape == (32, 32, 3)


@pytest.mark.parametrize(("home", "cache_kept"), [("artist", True), ("an artist", False)])
def test_compiled_code_is_kept_in_the_app_cache_unless_its_path_has_whitespace(
    model_file: Path, tmp_path: Path, compiling: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, home: str, cache_kept: bool,
):
    """Inductor hands its paths to g++ unquoted: compiling in ~/.cache/GAN Studio failed with "input file
    '…/GAN' is the same as output file", so such a folder is left for inductor's temporary one."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

    monkeypatch.setenv("GAN_STUDIO_HOME", str(tmp_path / home))
    chosen = []
    monkeypatch.setattr(FastSynthesis, "compiled", lambda self, ws: chosen.append(inductor_cache_dir()) or self)
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="studio.engine.session"):
        assert session.compile_display_path()
    ours = str(tmp_path / home / "cache" / "torch-inductor")
    assert (chosen == [ours]) is cache_kept
    assert not any(c.isspace() for c in chosen[0])
    assert ("inductor cannot compile in" in caplog.text) is not cache_kept


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG cache folder")
def test_the_default_cache_folder_has_no_space_in_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GAN_STUDIO_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gan-studio" and cache_dir().is_dir()


@pytest.fixture
def slow_compile(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """FastSynthesis.compiled held until the second event is set (the first says it started); it then returns
    an eager twin, so the swap happens without the minute a real compile takes."""
    started, release = threading.Event(), threading.Event()

    def held(self, ws):
        started.set()
        assert release.wait(60)
        return FastSynthesis(self.synthesis, self.dtype)

    monkeypatch.setattr(FastSynthesis, "compiled", held)
    return started, release


def test_rendering_goes_on_while_the_display_path_compiles(
    model_file: Path, tmp_path: Path, compiling: Path, slow_compile: tuple[threading.Event, threading.Event]
):
    started, release = slow_compile
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    eager = session._fast
    renderer = Renderer()
    renderer.set_session(session)
    try:
        thread = session.compile_in_background()
        assert started.wait(30)
        results = []
        for seed in range(3):
            renderer.request(STATE.replace(seed=seed), False, results.append)
            assert renderer.wait_idle(30)
        assert [r.error for r in results] == [None] * 3 and session._fast is eager
        release.set()
        thread.join(30)
        assert session._eager_fast is eager and session._fast is not eager
        renderer.request(STATE.replace(seed=7), False, results.append)
        assert renderer.wait_idle(30) and results[-1].error is None
    finally:
        release.set()
        renderer.shutdown()


def test_the_window_shows_renders_while_the_opened_model_compiles(
    qtbot, library_home: Path, make_window, compiling: Path, slow_compile: tuple[threading.Event, threading.Event]
):
    started, release = slow_compile
    try:
        window = make_window()
        settle(qtbot, window)
        assert started.wait(30), "opening a model starts compiling its display path"
        state = window.controller.state
        assert np.abs(canvas(window).astype(int) - engine_render(window, state)).max() <= 1
        window.controller.commit(state.replace(seed=state.seed + 1))
        settle(qtbot, window)
        assert np.abs(canvas(window).astype(int) - engine_render(window, window.controller.state)).max() <= 1
    finally:
        release.set()
