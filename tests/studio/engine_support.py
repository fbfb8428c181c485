"""Fixtures of the engine tests (import them into a test module to use them)."""

from pathlib import Path

import pytest

from studio.engine.selftest import make_random_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny (32 px, w_dim 32, 8 ws) random GAN Studio checkpoint shared by a module's tests."""
    return make_random_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
