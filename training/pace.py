"""How fast a run goes: a smoothed speed for a steady ETA, and the warm-up that turns a time budget into a
length in images.

A busy machine makes the speed of single seconds swing several-fold; the ETA uses a speed averaged over
about a minute instead. A run given a time budget trains a few seconds first, measures its speed, and fixes
its length once (recorded in config.json), so a resumed run trains to the same length.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def per_kimg(images_per_s: float) -> str:
    """How long a thousand images take at this speed, in words: "40 s", "12 min", "3.5 h"."""
    seconds = 1000 / images_per_s
    if seconds >= 90 * 60:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def rate_text(images_per_s: float) -> str:
    return f"{images_per_s:.0f}" if images_per_s >= 10 else f"{images_per_s:.2g}"


def measure_images_per_s(step: Callable[[], None], images: int, min_s: float = 1.0, long_s: float = 10.0) -> float:
    """The speed of `step` (one training step's work on `images` images): after a first, untimed call (one-off
    set-up: allocations, kernels, filter matrices), the average of calls made for at least `min_s`. A first call
    longer than `long_s` (a big network on a CPU, whose one-off costs are small beside it) is the measurement,
    so that measuring stays quick."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    if first >= long_s:
        return images / first
    calls, start = 0, time.perf_counter()
    while (spent := time.perf_counter() - start) < min_s:
        step()
        calls += 1
    return images * calls / spent


class SmoothedRate:
    """Images per second over roughly the last `time_constant_s`: the ratio of exponentially discounted sums
    of images and seconds, so at first it is the plain average of what was seen, and later a slow second or
    two moves it a little while a lasting slowdown moves it within a couple of minutes."""

    def __init__(self, time_constant_s: float = 60.0):
        self.time_constant_s = time_constant_s
        self._images = 0.0
        self._seconds = 0.0

    def add(self, images: float, seconds: float) -> None:
        if seconds <= 0:
            return
        keep = math.exp(-seconds / self.time_constant_s)
        self._images = self._images * keep + images
        self._seconds = self._seconds * keep + seconds

    @property
    def rate(self) -> float | None:
        return self._images / self._seconds if self._seconds > 0 and self._images > 0 else None

    def eta_s(self, remaining_images: float) -> float | None:
        """Seconds left for `remaining_images` (never negative: the last step may pass the total)."""
        rate = self.rate
        return max(remaining_images, 0.0) / rate if rate else None


class SpeedWarmUp:
    """Measures the speed of a run with a time budget, after its first steps (memory allocation, lazy
    initialisation) and over a few percent of the budget (2 to 30 s), then says how many images fit.

    The budget counts from `session_start` (the process's start, so loading the networks and the dataset
    counts too); images of an earlier session of the run count as the time they take at the measured speed.
    """

    SKIP_STEPS = 3
    MIN_STEPS = 5

    def __init__(self, budget_s: float, session_start: float, start_nimg: int):
        self.budget_s = budget_s
        self.session_start = session_start
        self.start_nimg = start_nimg
        self.window_s = min(max(0.05 * budget_s, 2.0), 30.0)
        self._steps = 0
        self._mark: tuple[float, int] | None = None  # (time, nimg) where measuring began

    def step(self, nimg: int, now: float) -> tuple[float, int] | None:
        """After each training step: None while measuring, then (images per second, total images)."""
        self._steps += 1
        if self._steps == self.SKIP_STEPS:
            self._mark = (now, nimg)
        if self._mark is None or self._steps < self.SKIP_STEPS + self.MIN_STEPS:
            return None
        start, start_nimg = self._mark
        if now - start < self.window_s or nimg <= start_nimg:
            return None
        rate = (nimg - start_nimg) / (now - start)
        spent_s = (now - self.session_start) + self.start_nimg / rate
        return rate, nimg + round(rate * max(self.budget_s - spent_s, 0.0))
