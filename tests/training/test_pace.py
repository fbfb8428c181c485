"""The pace of a run: an ETA that holds steady on a busy machine, and a time budget turned into images."""

from __future__ import annotations

import pytest

from training import pace as pace_module
from training.pace import SmoothedRate, SpeedWarmUp


def test_smoothed_eta_holds_through_busy_seconds_and_follows_a_lasting_slowdown():
    pace = SmoothedRate(time_constant_s=60.0)
    remaining = 100_000
    raw, smoothed = [], []
    for second in range(120):  # a machine where every third second another job takes most of the CPU
        images = 5 if second % 3 == 2 else 30
        pace.add(images, 1.0)
        raw.append(remaining / images)
        smoothed.append(pace.eta_s(remaining))
    steady = smoothed[20:]
    assert max(raw) / min(raw) == 6  # the per-second ETA swings six-fold
    assert max(steady) / min(steady) < 1.1  # the smoothed one by under 10 %
    assert pace.rate == pytest.approx(65 / 3, rel=0.05)  # and it is the true average speed
    for _ in range(240):  # the machine stays four times slower: within a few minutes the ETA says so
        pace.add(5, 1.0)
    assert pace.rate == pytest.approx(5, rel=0.1)
    assert pace.eta_s(-8) == 0.0  # the last step passed the total: no negative ETA
    assert SmoothedRate().eta_s(100) is None  # nothing measured yet


def test_warm_up_skips_the_first_steps_then_fits_the_budget():
    # Start-up took 4 s; the first 3 steps are slow (allocation), then 8 images every 0.1 s (80 img/s).
    start, clock, nimg = 100.0, 104.0, 0
    warm_up = SpeedWarmUp(budget_s=100.0, session_start=start, start_nimg=0)
    assert warm_up.window_s == 5.0  # 5 % of the budget, at least 2 s, at most 30 s
    measured = None
    for step in range(200):
        clock += 1.0 if step < 3 else 0.1
        nimg += 8
        measured = warm_up.step(nimg, clock)
        if measured is not None:
            break
    rate, total = measured
    assert rate == pytest.approx(80.0)  # the slow first steps are not in it
    assert clock - 107.0 == pytest.approx(5.0, abs=0.11)  # measured over the window
    assert total == pytest.approx(nimg + 80 * (start + 100 - clock), abs=1)  # what fits in the rest of it
    # Resumed with 800 images done: they count as the 10 s they take at this speed.
    resumed = SpeedWarmUp(budget_s=100.0, session_start=start, start_nimg=800)
    clock, nimg = 104.0, 800
    while (measured := resumed.step(nimg, clock)) is None:
        clock += 0.1
        nimg += 8
    assert measured[1] == pytest.approx(nimg + 80 * (start + 100 - clock - 10), abs=1)
    # A budget smaller than the start-up: nothing more to train.
    late = SpeedWarmUp(budget_s=3.0, session_start=start, start_nimg=0)
    clock, nimg = 104.0, 0
    while (measured := late.step(nimg, clock)) is None:
        clock += 0.1
        nimg += 8
    assert measured[1] == nimg


class FakeClock:
    """`time.perf_counter` for `measure_images_per_s`: each call of `step` takes the next of `durations`."""

    def __init__(self, durations: list[float]):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def perf_counter(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def test_measured_speed_skips_the_first_call_unless_it_is_long(monkeypatch):
    clock = FakeClock([3.0, 0.25, 0.3, 0.2, 0.25])  # a slow first call (set-up), then steps of 0.2-0.3 s
    monkeypatch.setattr(pace_module.time, "perf_counter", clock.perf_counter)
    assert pace_module.measure_images_per_s(clock.step, images=2, min_s=1.0) == pytest.approx(2 * 4 / 1.0)
    assert clock.calls == 5
    clock = FakeClock([40.0, 1.0])  # a big network: its one step is the measurement
    monkeypatch.setattr(pace_module.time, "perf_counter", clock.perf_counter)
    assert pace_module.measure_images_per_s(clock.step, images=2) == pytest.approx(2 / 40.0) and clock.calls == 1
