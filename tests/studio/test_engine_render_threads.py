"""Live CPU renders run on all cores while the frames show the threads ran side by side, on one thread after a
frame shows other work holding the cores, and try all cores again later."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from studio.engine.render_threads import (
    DEFAULT_THREADS,
    FIRST_RETRY_S,
    LONGEST_RETRY_S,
    RenderThreads,
)
from studio.engine.renderer import Renderer, RenderResult
from studio.engine.session import Session
from studio.engine.state import RenderState
from tests.studio.engine_support import model_file  # noqa: F401


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def default_threads():
    yield
    torch.set_num_threads(DEFAULT_THREADS)  # the next tests render at full speed


def test_a_contended_frame_means_one_thread_for_a_while_then_all_cores_again():
    clock = Clock()
    threads = RenderThreads(most=4, clock=clock)
    threads.measured(4, wall_s=0.5, cpu_s=1.9)  # 95 % of four threads' time: parallel
    assert threads.count() == 4
    threads.measured(4, wall_s=0.5, cpu_s=0.6)  # 30 %: the cores are busy elsewhere
    assert threads.count() == 1
    threads.measured(1, wall_s=0.5, cpu_s=0.5)  # one thread cannot show contention: the choice stays
    clock.now += FIRST_RETRY_S - 0.1
    assert threads.count() == 1
    clock.now += 0.2
    assert threads.count() == 4  # the retry
    threads.measured(4, wall_s=0.5, cpu_s=0.6)  # still busy: the next retry waits twice as long
    clock.now += 2 * FIRST_RETRY_S - 0.1
    assert threads.count() == 1
    clock.now += 0.2
    assert threads.count() == 4
    for _ in range(10):  # the wait stops doubling at its longest
        threads.measured(4, wall_s=0.5, cpu_s=0.6)
        clock.now += LONGEST_RETRY_S + 0.1
    threads.measured(4, wall_s=0.5, cpu_s=0.6)
    clock.now += LONGEST_RETRY_S - 0.1
    assert threads.count() == 1
    clock.now += 0.2
    assert threads.count() == 4
    threads.measured(4, wall_s=0.5, cpu_s=1.8)  # the cores are free again: the next contention starts short
    threads.measured(4, wall_s=0.5, cpu_s=0.6)
    clock.now += FIRST_RETRY_S + 0.1
    assert threads.count() == 4


def test_short_and_single_thread_frames_leave_the_choice_alone():
    threads = RenderThreads(most=2, clock=Clock())
    threads.measured(2, wall_s=0.005, cpu_s=0.001)  # too short to tell
    threads.measured(1, wall_s=0.5, cpu_s=0.1)  # one thread cannot show contention
    assert threads.count() == 2


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.skipif(DEFAULT_THREADS < 2, reason="one core: nothing to choose")
def test_real_frames_on_cores_another_process_holds_drop_to_one_thread():
    """Every core busy with a spinning process: a real multi-threaded workload shows it in its CPU time."""
    threads = RenderThreads()
    x, weight = torch.randn(1, 64, 128, 128), torch.randn(64, 64, 3, 3)

    def frame():
        for _ in range(20):
            torch.conv2d(x, weight, padding=1)

    spinners = busy_processes(DEFAULT_THREADS)
    try:
        for _ in range(3):  # the first frames may still find a core free while the spinners start
            threads.render(frame)
            if threads.count() == 1:
                break
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert threads.count() == 1
    assert torch.get_num_threads() == DEFAULT_THREADS  # the frame ran on all cores; the next one gets one


def test_the_render_thread_renders_on_the_count_it_is_given(model_file: Path, tmp_path: Path):
    session = Session(model_file, device="cpu", data_dir=tmp_path)
    renderer = Renderer()
    clock = Clock()
    renderer.threads = RenderThreads(most=DEFAULT_THREADS, clock=clock)
    renderer.set_session(session)
    seen: list[tuple[int, RenderResult]] = []
    try:
        renderer.threads.measured(DEFAULT_THREADS, wall_s=1.0, cpu_s=0.1)  # as if the last frame was contended
        renderer.request(RenderState(model_id=session.model_id, seed=3), False,
                         lambda result: seen.append((torch.get_num_threads(), result)))
        assert renderer.wait_idle(60)
        clock.now += LONGEST_RETRY_S
        renderer.request(RenderState(model_id=session.model_id, seed=4), False,
                         lambda result: seen.append((torch.get_num_threads(), result)))
        assert renderer.wait_idle(60)
    finally:
        renderer.shutdown()
    assert [count for count, _ in seen] == [1, DEFAULT_THREADS]
    assert all(result.error is None and result.image.std() > 0 for _, result in seen)
