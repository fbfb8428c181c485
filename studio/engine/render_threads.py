"""How many intra-op threads a live CPU render gets, from how well the last frames used them.

Measured on a 2-core CPU (benchmarks/render.py --busy-cores): on idle cores two threads render a 1024² frame
1.8× faster than one, but with one core busy elsewhere (a training run, another program) OpenMP's threads wait
for each other and two render it 2.2× *slower* than one. The process's CPU time during a frame tells the two
apart: threads that ran side by side used about `threads` CPU-seconds per second of the frame; threads that
shared a core with someone else used far less.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

# A multi-threaded frame that used less than this share of its threads' time ran on contended cores (measured:
# 0.95-0.99 on idle cores for frames of 40 ms and more, 0.54 with one of two cores busy).
PARALLEL_EFFICIENCY = 0.65
# Shorter frames leave the choice as it is: small frames use threads less well even on idle cores (a 63 ms one
# used 72 % of two), and contention that matters makes frames slower than this anyway.
MEASURABLE_FRAME_S = 0.1
# After a contended frame, one thread for this long, then a frame on all cores again. By time, not by frames:
# contention that passes (a thumbnail, an export) should not outlast itself by a drag's worth of slow frames.
FIRST_RETRY_S = 5.0
LONGEST_RETRY_S = 60.0  # each retry that finds the cores still busy doubles the wait, up to this
DEFAULT_THREADS = torch.get_num_threads()  # torch's choice (or OMP_NUM_THREADS) before any render changed it


class RenderThreads:
    """The thread count for the next frame (`count`) and what each frame showed (`measured`)."""

    def __init__(self, most: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.most = most or DEFAULT_THREADS
        self._clock = clock
        self._single_until = 0.0  # the clock time until which frames run on one thread
        self._retry_s = FIRST_RETRY_S

    def count(self) -> int:
        return 1 if self._clock() < self._single_until else self.most

    def measured(self, threads: int, wall_s: float, cpu_s: float) -> None:
        """A frame rendered on `threads` threads took `wall_s` seconds and `cpu_s` of the process's CPU time."""
        if threads <= 1 or wall_s < MEASURABLE_FRAME_S:
            return
        efficiency = cpu_s / (wall_s * threads)
        if efficiency >= PARALLEL_EFFICIENCY:
            self._retry_s = FIRST_RETRY_S
            return
        log.info(
            "render threads: %d threads used %.0f%% of their time (cores busy elsewhere); one thread for %.0f s",
            threads, 100 * efficiency, self._retry_s,
        )
        self._single_until = self._clock() + self._retry_s
        self._retry_s = min(2 * self._retry_s, LONGEST_RETRY_S)

    def render(self, frame: Callable[[], object]) -> object:
        """Run `frame` (a CPU render) on `count()` threads and learn from its times."""
        threads = self.count()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return frame()
        finally:
            self.measured(threads, time.perf_counter() - wall, time.process_time() - cpu)
