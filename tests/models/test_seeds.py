"""Seeds follow NVIDIA's convention, so a seed quoted anywhere in the community draws the same latent here."""

import numpy as np
import pytest
import torch

from models.seeds import parse_seeds, z_from_seed


def test_z_from_seed_is_nvidias_latent():
    z = z_from_seed(42, 512)
    assert z.shape == (1, 512) and z.dtype == torch.float32
    assert torch.equal(z, torch.from_numpy(np.random.RandomState(42).randn(1, 512)).float())
    assert torch.equal(z_from_seed(np.int64(42), 512), z)
    assert not torch.equal(z_from_seed(43, 512), z)
    assert z_from_seed(2**32 - 1, 8).shape == (1, 8)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "3"])
def test_z_from_seed_rejects_what_numpy_cannot_seed(seed):
    with pytest.raises(ValueError, match="whole number from 0 to 4294967295"):
        z_from_seed(seed, 8)


@pytest.mark.parametrize(
    "text, seeds",
    [("0-3,7", [0, 1, 2, 3, 7]), ("7", [7]), (" 5 , 2 - 3 ", [5, 2, 3]), ("4-4", [4]), ("1,1", [1, 1])],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no seeds given"),
        ("1,,2", "empty entry"),
        ("cat", "'cat' is not a seed"),
        ("-3", "'-3' is not a seed"),
        ("2-", "'2-' is not a seed"),
        ("1.5", "'1.5' is not a seed"),
        ("²", "is not a seed"),
        ("9-3", "runs backwards: write 3-9"),
        ("0-4294967296", "larger than 4294967295"),
        ("0-999999", "more than 100000 seeds"),
    ],
)
def test_parse_seeds_errors_name_the_entry(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)
