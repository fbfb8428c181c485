"""GANSpace and SeFa recover directions planted in tiny synthetic generators."""

import numpy as np
import pytest
import torch

from models.directions import ganspace, principal_components, sefa, style_affines
from models.stylegan2 import Generator


def tiny_generator(**mapping: object) -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=32,
        c_dim=0,
        w_dim=32,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs={"num_layers": 2, **mapping},
        synthesis_kwargs={"channel_base": 512, "channel_max": 64},
    ).eval()


def unit(seed: int, dim: int = 32) -> torch.Tensor:
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_ganspace_recovers_planted_anisotropy():
    G = tiny_generator(activation="linear")  # linear mapping: scaling its output along u is exact
    u = unit(1)
    stretch = torch.eye(32) + 9 * torch.outer(u, u)  # 10x the spread along u
    with torch.no_grad():
        G.mapping.fc1.weight.copy_(stretch @ G.mapping.fc1.weight)
        G.mapping.fc1.bias.copy_(stretch @ G.mapping.fc1.bias)
    vectors, variances = ganspace(G, num_components=5, num_samples=2000)
    assert vectors.shape == (5, 32) and variances.shape == (5,)
    assert abs(float(np.dot(vectors[0], u.numpy()))) > 0.95
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(variances) <= 0) and variances[0] > 10 * variances[1]


def test_ganspace_is_deterministic():
    G = tiny_generator()
    a, b = ganspace(G, 3, 500), ganspace(G, 3, 500)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.strengths, b.strengths)


def test_principal_components_of_known_data():
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=rng) * torch.tensor([1.0, 5.0, 2.0])
    vectors, variances = principal_components(x, 3)
    assert np.allclose(np.abs(vectors), np.eye(3)[[1, 2, 0]], atol=0.05)
    assert np.allclose(variances, [25, 4, 1], rtol=0.1)
    with pytest.raises(ValueError, match="at least two samples"):
        principal_components(x[:1], 1)


def test_style_affines_follow_ws_order():
    G = tiny_generator()
    layers = style_affines(G, include_torgb=True)
    convs = [(i, n) for i, n, _ in layers if "conv" in n]
    assert convs[:3] == [
        (0, "synthesis.b4.conv1.affine.weight"),
        (1, "synthesis.b8.conv0.affine.weight"),
        (2, "synthesis.b8.conv1.affine.weight"),
    ]
    assert [i for i, _ in convs] == list(range(G.num_ws - 1))
    assert (1, "synthesis.b4.torgb.affine.weight") in [(i, n) for i, n, _ in layers]
    assert (G.num_ws - 1, "synthesis.b32.torgb.affine.weight") in [(i, n) for i, n, _ in layers]


def plant(G: Generator, direction: torch.Tensor, indices: range) -> None:
    """Make every style channel of the conv layers reading `indices` mostly respond to `direction`."""
    rng = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for idx, _name, weight in style_affines(G):
            if idx in indices:
                scale = torch.randn(weight.shape[0], 1, generator=rng)
                noise = 0.05 * torch.randn(weight.shape, generator=rng)
                weight.copy_(scale * direction + noise)


def test_sefa_recovers_planted_singular_direction():
    G = tiny_generator()
    v = unit(2)
    plant(G, v, range(G.num_ws))
    vectors, eigenvalues = sefa(G, num_components=4)
    assert abs(float(np.dot(vectors[0], v.numpy()))) > 0.95
    assert np.all(np.diff(eigenvalues) <= 0) and eigenvalues[0] > 10 * eigenvalues[1]


def test_sefa_restricted_to_layers():
    G = tiny_generator()
    coarse, fine = unit(4), unit(5)
    plant(G, coarse, range(0, 3))
    plant(G, fine, range(3, G.num_ws))
    assert abs(float(np.dot(sefa(G, 1, layers=[0, 1, 2]).vectors[0], coarse.numpy()))) > 0.95
    assert abs(float(np.dot(sefa(G, 1, layers=range(3, G.num_ws)).vectors[0], fine.numpy()))) > 0.95
    with pytest.raises(ValueError, match="no style layers"):
        sefa(G, layers=[99])
