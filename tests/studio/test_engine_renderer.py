"""The render thread: coalescing, the newest state always rendered, errors returned, never raised."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from studio.engine.renderer import Renderer, RenderResult
from studio.engine.session import Session
from studio.engine.state import Edit, RenderState
from tests.studio.engine_support import model_file  # noqa: F401


@pytest.fixture(scope="module")
def session(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    return Session(model_file, device="cpu", data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
def renderer():
    r = Renderer()
    yield r
    r.shutdown()


def test_requests_coalesce_and_the_last_state_is_rendered(session: Session, renderer: Renderer):
    renderer.set_session(session)
    results: list[RenderResult] = []
    threads: set[str] = set()

    def done(result: RenderResult) -> None:
        threads.add(threading.current_thread().name)
        results.append(result)

    states = [RenderState(model_id=session.model_id, seed=s) for s in range(20)]
    for state in states:
        renderer.request(state, False, done)
    assert renderer.wait_idle(timeout=60)
    assert len(results) < 10 and renderer.renders == len(results)
    assert results[-1].state == states[-1] and results[-1].error is None
    assert np.array_equal(results[-1].image, session.render(states[-1]))
    assert results[-1].elapsed_ms > 0 and not results[-1].preview
    assert threads == {"gan-studio-renderer"}


def test_preview_flag_is_passed_through(session: Session, renderer: Renderer):
    renderer.set_session(session)
    results: list[RenderResult] = []
    renderer.request(RenderState(model_id="", seed=1), True, results.append)
    assert renderer.wait_idle(timeout=30)
    assert results[0].preview and results[0].image.shape == (32, 32, 3)


def test_errors_come_back_in_the_result(session: Session, renderer: Renderer):
    results: list[RenderResult] = []
    renderer.request(RenderState(model_id=""), False, results.append)
    assert renderer.wait_idle(timeout=30)
    assert results[0].image is None and results[0].error == "no model is open"
    renderer.set_session(session)
    renderer.request(RenderState(model_id="", edits=(Edit("gone", 1.0, (0, 8)),)), False, results.append)
    assert renderer.wait_idle(timeout=30)
    assert results[1].image is None and "direction 'gone' does not exist" in results[1].error


def test_a_failing_callback_does_not_stop_the_thread(session: Session, renderer: Renderer):
    renderer.set_session(session)

    def explode(result: RenderResult) -> None:
        raise RuntimeError("UI went away")

    renderer.request(RenderState(model_id=""), False, explode)
    assert renderer.wait_idle(timeout=30)
    results: list[RenderResult] = []
    renderer.request(RenderState(model_id="", seed=3), False, results.append)
    assert renderer.wait_idle(timeout=30) and results[0].error is None


def test_the_session_factory_runs_on_the_render_thread(model_file: Path, tmp_path: Path):
    made_on: list[str] = []

    def factory() -> Session:
        made_on.append(threading.current_thread().name)
        return Session(model_file, device="cpu", data_dir=tmp_path)

    renderer = Renderer(session_factory=factory)
    try:
        results: list[RenderResult] = []
        for seed in (1, 2):
            renderer.request(RenderState(model_id="", seed=seed), False, results.append)
            assert renderer.wait_idle(timeout=60)
        assert made_on == ["gan-studio-renderer"] and all(r.error is None for r in results)
    finally:
        renderer.shutdown()


def test_shutdown_stops_the_thread_and_refuses_requests(session: Session):
    renderer = Renderer()
    renderer.set_session(session)
    renderer.request(RenderState(model_id=""), False, lambda result: time.sleep(0.1))
    renderer.shutdown()
    assert not renderer._thread.is_alive()
    with pytest.raises(RuntimeError, match="shut down"):
        renderer.request(RenderState(model_id=""), False, lambda result: None)
