"""Fixtures shared by every test."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """The tests use tiny networks, which run fastest on one thread; on a busy two-core machine two intra-op
    threads spin against each other and make a 32 px render ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def no_compiling() -> Iterator[None]:
    """Every window opening a model would compile its display path in the background (a minute of both cores
    for each); the tests of compiling turn it back on."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GAN_STUDIO_COMPILE", "0")
        yield
