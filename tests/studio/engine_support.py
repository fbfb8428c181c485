"""Fixtures of the engine tests (import them into a test module to use them).

`one_torch_thread` runs a module's tiny renders on one thread: on a busy 2-core machine two intra-op threads
spin against each other and make a 32 px render ten times slower, and one thread is as fast when idle.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from studio.engine.selftest import make_random_model


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny (32 px, w_dim 32, 8 ws) random GAN Studio checkpoint shared by a module's tests."""
    return make_random_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
