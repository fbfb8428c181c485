"""The StyleGAN2 networks: NVIDIA's parameter names and shapes, and the studio's rendering controls
(latent kinds, truncation, mixing, noise, early exit) doing exactly what they promise, on tiny networks."""

from __future__ import annotations

import math

import pytest
import torch

from models.stylegan2 import (
    SCHEMA_DEFAULTS,
    Discriminator,
    Generator,
    SynthesisLayer,
    discriminator_from_kwargs,
    generator_from_kwargs,
    truncate,
)

Z = W = 32
BASE, CMAX = 512, 64



def channels(res: int, base: int = BASE, cmax: int = CMAX) -> int:
    return min(base // res, cmax)


def make_G(res: int = 32, c_dim: int = 0, seed: int = 0, **synthesis) -> Generator:
    """A generator whose noise strengths, biases and w_avg are non-zero, so that every control shows."""
    torch.manual_seed(seed)
    G = Generator(
        Z, c_dim, W, res, 3, mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=BASE, channel_max=CMAX) | synthesis,
    ).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.normal_(0, 0.5)
        G.mapping.w_avg.normal_()
    return G.requires_grad_(False)


@pytest.fixture(scope="module")
def G() -> Generator:
    return make_G()


@pytest.fixture(scope="module")
def z() -> torch.Tensor:
    return torch.randn(3, Z, generator=torch.Generator().manual_seed(1))


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# --- shapes and names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [4, 8, 32, 64])
def test_generator_shapes(res):
    G = make_G(res, channel_base=256 if res == 64 else BASE, channel_max=32 if res == 64 else CMAX)
    assert G.num_ws == G.synthesis.num_ws == 2 * int(math.log2(res)) - 2
    assert G.synthesis.block_resolutions == [2**i for i in range(2, int(math.log2(res)) + 1)]
    with torch.no_grad():
        img = G(torch.randn(2, Z), None, noise_mode="const")
    assert img.shape == (2, 3, res, res) and img.dtype == torch.float32 and img.is_contiguous()
    assert torch.isfinite(img).all()


def expected_generator_keys(res: int, c_dim: int = 0, layers: int = 2) -> dict[str, tuple[int, ...]]:
    """FORMATS.md's naming, written out by rule."""
    keys: dict[str, tuple[int, ...]] = {"mapping.w_avg": (W,)}
    features = [Z + (W if c_dim else 0)] + [W] * layers
    for i in range(layers):
        keys[f"mapping.fc{i}.weight"] = (features[i + 1], features[i])
        keys[f"mapping.fc{i}.bias"] = (features[i + 1],)
    if c_dim:
        keys["mapping.embed.weight"], keys["mapping.embed.bias"] = (W, c_dim), (W,)
    r = 4
    while r <= res:
        c, prefix = channels(r), f"synthesis.b{r}"
        keys[f"{prefix}.resample_filter"] = (4, 4)
        convs = {"conv1": c}
        if r == 4:
            keys[f"{prefix}.const"] = (c, 4, 4)
        else:
            convs = {"conv0": channels(r // 2), "conv1": c}
        for name, cin in convs.items():
            keys |= {
                f"{prefix}.{name}.weight": (c, cin, 3, 3),
                f"{prefix}.{name}.bias": (c,),
                f"{prefix}.{name}.noise_strength": (),
                f"{prefix}.{name}.noise_const": (r, r),
                f"{prefix}.{name}.resample_filter": (4, 4),
                f"{prefix}.{name}.affine.weight": (cin, W),
                f"{prefix}.{name}.affine.bias": (cin,),
            }
        keys |= {
            f"{prefix}.torgb.weight": (3, c, 1, 1),
            f"{prefix}.torgb.bias": (3,),
            f"{prefix}.torgb.affine.weight": (c, W),
            f"{prefix}.torgb.affine.bias": (c,),
        }
        r *= 2
    return keys


def shapes(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("c_dim", [0, 5])
def test_generator_state_dict_is_nvidias(c_dim):
    assert shapes(make_G(32, c_dim)) == expected_generator_keys(32, c_dim)


def expected_discriminator_keys(res: int) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    r = res
    while r > 4:
        c, c_next, prefix = channels(r), channels(r // 2), f"b{r}"
        if r == res:
            keys |= {f"{prefix}.fromrgb.weight": (c, 3, 1, 1), f"{prefix}.fromrgb.bias": (c,)}
            keys[f"{prefix}.fromrgb.resample_filter"] = (4, 4)
        keys |= {
            f"{prefix}.resample_filter": (4, 4),
            f"{prefix}.conv0.weight": (c, c, 3, 3),
            f"{prefix}.conv0.bias": (c,),
            f"{prefix}.conv0.resample_filter": (4, 4),
            f"{prefix}.conv1.weight": (c_next, c, 3, 3),
            f"{prefix}.conv1.bias": (c_next,),
            f"{prefix}.conv1.resample_filter": (4, 4),
            f"{prefix}.skip.weight": (c_next, c, 1, 1),  # no bias
            f"{prefix}.skip.resample_filter": (4, 4),
        }
        r //= 2
    c4 = channels(4)
    keys |= {  # the minibatch-stddev layer has no parameters: it adds one input channel to b4.conv
        "b4.conv.weight": (c4, c4 + 1, 3, 3),
        "b4.conv.bias": (c4,),
        "b4.conv.resample_filter": (4, 4),
        "b4.fc.weight": (c4, c4 * 16),
        "b4.fc.bias": (c4,),
        "b4.out.weight": (1, c4),
        "b4.out.bias": (1,),
    }
    return keys


def test_discriminator_state_dict_is_nvidias():
    D = Discriminator(0, 32, 3, channel_base=BASE, channel_max=CMAX)
    assert shapes(D) == expected_discriminator_keys(32)
    # Conditioning adds the label mapping (8 layers by default) and a projection output of cmap_dim.
    Dc = shapes(Discriminator(5, 32, 3, channel_base=BASE, channel_max=CMAX))
    c4 = channels(4)
    added = {k: v for k, v in Dc.items() if k.startswith("mapping.")}
    assert added == {"mapping.embed.weight": (c4, 5), "mapping.embed.bias": (c4,)} | {
        f"mapping.fc{i}.{p}": (c4, c4) if p == "weight" else (c4,) for i in range(8) for p in ("weight", "bias")
    }
    assert {k: v for k, v in Dc.items() if k not in added} == expected_discriminator_keys(32) | {
        "b4.out.weight": (c4, c4),
        "b4.out.bias": (c4,),
    }


def test_discriminator_blocks_and_odd_batches():
    torch.manual_seed(0)
    D = Discriminator(0, 16, 3, channel_base=256, channel_max=32)
    assert [b.resolution for b in D.blocks()] == [16, 8]
    for n in (1, 3, 5, 6):  # the minibatch-stddev group of 4 does not divide these
        scores = D(torch.randn(n, 3, 16, 16))
        assert scores.shape == (n, 1) and torch.isfinite(scores).all()


def test_bad_resolution_and_latent_shapes(G):
    with pytest.raises(ValueError, match="power of two"):
        Generator(Z, 0, W, 24, 3)
    with pytest.raises(ValueError, match=r"expected w \[N, 32\] or w\+ \[N, 8, 32\]"):
        G.to_ws(torch.zeros(1, 7, W))
    with pytest.raises(ValueError, match="stop_at must be one of"):
        G.render(torch.zeros(1, Z), stop_at=12)


# --- rendering controls --------------------------------------------------------------------------------------


def test_const_noise_is_deterministic_and_random_noise_follows_its_seed(G, z):
    assert torch.equal(G.render(z), G.render(z))

    def seeded(seed: int) -> torch.Tensor:
        return G.render(z, noise_mode="random", generator=torch.Generator().manual_seed(seed))

    assert torch.equal(seeded(3), seeded(3))
    assert not torch.allclose(seeded(3), seeded(4), atol=1e-3)


def test_noise_modes(G, z):
    const, none = G.render(z, noise_mode="const"), G.render(z, noise_mode="none")
    assert not torch.allclose(const, none, atol=1e-3)
    assert torch.equal(G.render(z, noise_mode="const", noise_scale=0), none)
    silent = make_G()
    for layer in silent.modules():
        if isinstance(layer, SynthesisLayer):
            layer.noise_strength.zero_()
    assert torch.equal(silent.render(z, noise_mode="const"), silent.render(z, noise_mode="none"))


def test_z_w_and_w_plus_inputs_agree(G, z):
    w = G.z_to_w(z)
    assert w.shape == (3, W)
    ws = G.to_ws(w)
    assert ws.shape == (3, G.num_ws, W) and torch.equal(ws[:, 0], ws[:, -1])
    image = G.render(z)
    assert torch.equal(G.render(w, "w"), image)
    assert torch.equal(G.render(ws, "ws"), image)
    assert torch.equal(G(z, None, noise_mode="const"), image)


def test_psi_zero_renders_the_average_latent(G, z):
    images = G.render(z, psi=0)
    average = G.render(G.mapping.w_avg[None], "w")
    for image in images:
        close(image, average[0])


def test_truncation_cutoff_touches_only_the_first_layers(G, z):
    ws, cutoff, psi = G.to_ws(G.z_to_w(z)), 3, 0.5
    by_hand = ws.clone()
    by_hand[:, :cutoff] = G.mapping.w_avg + psi * (ws[:, :cutoff] - G.mapping.w_avg)
    truncated = truncate(ws, G.mapping.w_avg, psi, cutoff)
    close(truncated, by_hand)
    assert torch.equal(truncated[:, cutoff:], ws[:, cutoff:])
    close(G.mapping(z, None, truncation_psi=psi, truncation_cutoff=cutoff), by_hand)
    close(G.render(z, psi=psi, cutoff=cutoff), G.render(by_hand, "ws"))
    centre = torch.randn(W)  # a custom centre (e.g. a class average) instead of w_avg
    close(G.render(z, psi=0, centre=centre), G.render(centre.expand(3, W), "w"))


def test_style_mixing(G, z):
    w_a, w_b = G.z_to_w(z), G.z_to_w(torch.randn(1, Z))
    everything = G.render(w_a, "w", mix=[(w_b, range(G.num_ws))])
    assert torch.equal(everything, G.render(w_b.expand(3, W), "w"))
    k = 4
    by_hand = G.to_ws(w_a).clone()
    by_hand[:, k:] = w_b[:, None]
    assert torch.equal(G.render(w_a, "w", mix=[(w_b, range(k, G.num_ws))]), G.render(by_hand, "ws"))


def test_stop_at_returns_the_rgb_accumulated_so_far(G, z):
    ws = G.to_ws(G.z_to_w(z))
    slices = G.synthesis.w_slices()
    assert slices == {4: (0, 2), 8: (1, 3), 16: (3, 3), 32: (5, 3)}  # torgb shares the next conv0's w
    x = img = None
    for res in (4, 8, 16):
        start, count = slices[res]
        block = getattr(G.synthesis, f"b{res}")
        x, img = block(x, img, ws[:, start : start + count], noise_mode="const")
        preview = G.render(ws, "ws", stop_at=res)
        assert preview.shape == (3, 3, res, res)
        close(preview, img)
    assert torch.equal(G.render(ws, "ws", stop_at=32), G.render(ws, "ws"))


@pytest.mark.parametrize("n", [1, 3])
def test_fused_and_plain_modulation_render_alike(G, n):
    z = torch.randn(n, Z, generator=torch.Generator().manual_seed(n))
    close(G.render(z, fused=True), G.render(z, fused=False), tol=1e-4)


def test_channels_last_and_contiguous_layouts_render_alike(z):
    G = make_G()
    G.synthesis.channels_last = True
    cl = G.render(z)
    G.synthesis.channels_last = False
    close(G.render(z), cl, tol=1e-4)


def test_conv_clamp_clamps(z):
    outputs: list[torch.Tensor] = []
    G = make_G(16, conv_clamp=0.5)
    for layer in G.synthesis.modules():
        if isinstance(layer, SynthesisLayer):
            layer.register_forward_hook(lambda m, i, out: outputs.append(out))
    G.render(z)
    assert len(outputs) == 5 and all(out.abs().max() <= 0.5 for out in outputs)
    assert any(out.abs().max() == 0.5 for out in outputs)
    assert G.synthesis.b16.torgb(outputs[-1], torch.randn(3, W)).abs().max() <= 0.5
    unclamped = make_G(16)
    assert unclamped.render(z).abs().max() > 1  # the same weights overshoot the clamp without it


def test_autograd_paths_give_the_inference_pixels_and_second_derivatives(z):
    """Training runs the same layers with autograd on (no in-place shortcuts) and differentiates twice."""
    G = make_G(16).requires_grad_(True)
    G.synthesis.channels_last = False  # the same layout both ways: only the in-place shortcuts differ
    ws = G.to_ws(G.z_to_w(z)).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    with torch.inference_mode():
        assert torch.equal(G.synthesis(ws, noise_mode="const"), img.detach())
    (grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    grad.square().sum().backward()  # path-length regularisation
    assert G.synthesis.b16.conv0.weight.grad.abs().sum() > 0  # through the up-sampling layer, twice

    torch.manual_seed(0)
    D = Discriminator(0, 16, 3, channel_base=256, channel_max=32)
    real = torch.randn(3, 3, 16, 16, requires_grad=True)
    scores = D(real)
    with torch.no_grad():
        assert torch.equal(D(real), scores.detach())
    (grad,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    grad.square().sum().backward()  # R1
    assert D.b16.fromrgb.weight.grad is not None


def test_bf16_autocast_stays_close_to_fp32(z):
    G = make_G(8)
    with torch.inference_mode():
        full = G.render(z[:1])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = G.render(z[:1])
    assert half.dtype == torch.float32
    assert (half - full).abs().max() <= 0.05 * full.abs().max()


# --- building from recorded kwargs --------------------------------------------------------------------------


def test_generator_from_kwargs_applies_the_writers_defaults():
    nested = dict(
        z_dim=Z, c_dim=0, w_dim=W, img_resolution=8, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=BASE, channel_max=CMAX),
    )
    ada = generator_from_kwargs(nested, "stylegan2-ada")
    assert ada.synthesis.b8.conv1.conv_clamp is None and ada.mapping.w_avg_beta == 0.995
    assert ada.init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 0
    flat = dict(
        z_dim=Z, c_dim=0, w_dim=W, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=2),
        channel_base=BASE, channel_max=CMAX, magnitude_ema_beta=0.999, fused_modconv_default="inference_only",
    )
    sg3 = generator_from_kwargs(flat, "stylegan3")
    assert sg3.synthesis.b8.conv1.conv_clamp == SCHEMA_DEFAULTS["stylegan3"]["conv_clamp"] == 256
    assert sg3.synthesis.b8.torgb.conv_clamp == 256 and sg3.mapping.w_avg_beta == 0.998
    assert sg3.init_kwargs["synthesis_kwargs"]["num_fp16_res"] == 4
    assert shapes(sg3) == shapes(ada)
    explicit = generator_from_kwargs({**flat, "conv_clamp": None}, "stylegan3")
    assert explicit.synthesis.b8.conv1.conv_clamp is None  # what the file says wins over the default

    d_kwargs = dict(c_dim=0, img_resolution=8, img_channels=3, channel_base=BASE, channel_max=CMAX)
    assert discriminator_from_kwargs(d_kwargs, "stylegan2-ada").b8.conv0.conv_clamp is None
    assert discriminator_from_kwargs(d_kwargs, "stylegan3").b8.conv0.conv_clamp == 256
