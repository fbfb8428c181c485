"""Fixtures for the checkpoint tests."""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CAP_HEADROOM = 3 << 30  # tiny networks need megabytes; a loader asked for terabytes is stopped at this


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@pytest.fixture
def memory_cap() -> Iterator[int]:
    """Caps this process's address space at its present size plus `CAP_HEADROOM` while the test runs, so that
    a loader which tries to allocate what a hostile file asks for fails at once (MemoryError) instead of
    exhausting the machine. Linux only (other systems do not enforce RLIMIT_AS); yields the cap in bytes."""
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS is enforced on Linux only")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + CAP_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
