"""TensorFlow StyleGAN2 pickles: (G, D, Gs) tuples of `dnnlib.tflib.network.Network`, written here in the
published layout from our own tiny networks turned into TensorFlow's variables, give those networks' pixels
and scores; earlier generations are refused by name, and nothing in the file is ever run."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from models.checkpoints import CheckpointError, load_checkpoint
from models.stylegan2 import Generator
from tests.models import pickle_fixtures as fx
from tests.models.test_checkpoints import PAYLOADS, assert_nothing_ran, refusal


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The file every payload in these tests would create if anything from a checkpoint were executed."""
    return tmp_path / "side-effect"


def test_config_f_pickle_gives_the_pixels_and_scores_of_its_networks(tmp_path, marker):
    G, Gs, D = fx.make_generator(seed=2), fx.make_generator(seed=0), fx.make_discriminator()
    # Settings that change nothing in a render: the run's truncation default, the fused-modconv choice.
    data = fx.tensorflow_pickle(G, D, Gs, marker, fused_modconv=True, truncation_psi=0.5)
    path = fx.write_pickle(tmp_path / "network-snapshot-000120.pkl", data, protocol=3)
    assert "dnnlib.tflib.network.Network" in fx.pickle_globals(path)
    bundle = load_checkpoint(path)
    assert torch.equal(fx.pixels(bundle.G_ema), fx.pixels(Gs))
    assert torch.equal(fx.pixels(bundle.G), fx.pixels(G))
    assert torch.equal(fx.scores(bundle.D), fx.scores(D))
    meta = bundle.meta
    assert (meta.source_format, meta.resolution, meta.num_ws, meta.z_dim) == ("tensorflow-pkl", 16, 6, 32)
    assert meta.training == {"writer": "NVIDIA stylegan2 (TensorFlow)", "kimg": 120}
    assert meta.g_kwargs["synthesis_kwargs"]["channel_base"] == fx.CHANNELS["channel_base"]
    assert_nothing_ran(marker)


def test_stylegan2_ada_conditional_pickle_with_clamp_own_filter_and_no_noise(tmp_path, marker):
    """The TensorFlow ADA repository's options: labels through LabelEmbed, conv_clamp, a resample kernel of
    its own, no noise inputs. D is conditional, which fine-tuning does not take: it is left out, saying why."""
    ours = dict(conv_clamp=256, resample_filter=[1, 2, 1], use_noise=False)

    def generator(seed: int, **options) -> Generator:
        G = Generator(
            **fx.TINY, c_dim=3, mapping_kwargs=dict(num_layers=fx.MAPPING_LAYERS),
            synthesis_kwargs=dict(**fx.CHANNELS, **{**ours, **options}),
        )
        fx.randomize(G, seed)
        with torch.no_grad():
            G.synthesis.b4.torgb.bias.add_(400)  # beyond the clamp, so that a missing clamp shows
        return G

    G, Gs = generator(2), generator(0)
    tf_settings = fx.tf_generator_settings(
        Gs, num_fp16_res=4, conv_clamp=256, resample_kernel=[1, 2, 1], use_noise=False
    )
    data = (
        fx.tf_generator(G, marker, "G", tf_settings, synthesis_func="G_synthesis"),
        fx.tf_discriminator(fx.make_discriminator(c_dim=3), marker, func="D_main", conv_clamp=256),
        fx.tf_generator(Gs, marker, "Gs", tf_settings, synthesis_func="G_synthesis"),
    )
    bundle = load_checkpoint(fx.write_pickle(tmp_path / "ada-cond.pkl", data, protocol=4))
    assert torch.equal(fx.pixels(bundle.G_ema, c_dim=3), fx.pixels(Gs, c_dim=3))
    assert torch.equal(fx.pixels(bundle.G, c_dim=3), fx.pixels(G, c_dim=3))
    unclamped = generator(0, conv_clamp=None)
    assert not torch.allclose(fx.pixels(unclamped, c_dim=3), fx.pixels(Gs, c_dim=3))  # the clamp shows
    assert bundle.D is None and "conditional" in bundle.meta.training["discriminator"]
    assert bundle.meta.training["writer"] == "NVIDIA stylegan2-ada (TensorFlow)"


@pytest.mark.parametrize(
    "func, settings, reason",
    [
        ("D_stylegan2", dict(architecture="skip"), "architecture = 'skip'"),
        ("D_stylegan", {}, "'D_stylegan'"),  # configs a-d
        ("D_stylegan2", dict(fmap_decay=1.0), "does not know: fmap_decay"),
    ],
)
def test_a_discriminator_we_do_not_build_is_left_out_with_its_reason(tmp_path, marker, func, settings, reason):
    G, D = fx.make_generator(), fx.make_discriminator()
    data = (fx.tf_generator(G, marker, "G"), fx.tf_discriminator(D, marker, func=func, **settings),
            fx.tf_generator(G, marker))  # fmt: skip
    bundle = load_checkpoint(fx.write_pickle(tmp_path / "d.pkl", data))
    assert bundle.D is None and torch.equal(fx.pixels(bundle.G_ema), fx.pixels(G))
    note = bundle.meta.training["discriminator"]
    assert reason in note and "fine-tuning starts a fresh one" in note


@pytest.mark.parametrize(
    "change, phrases",
    [
        (dict(settings=dict(architecture="resnet")), ("architecture = 'resnet'", "'skip'")),
        (dict(settings=dict(nonlinearity="relu")), ("nonlinearity = 'relu'",)),
        (dict(settings=dict(fmap_min=4)), ("does not know: fmap_min",)),
        (dict(synthesis_func="G_synthesis_stylegan_revised"), ("configs a-d", "configs e and f")),
        (dict(drop="synthesis/16x16/Conv1/mod_bias"), ("lacks the TensorFlow variable synthesis/16x16/Conv1",)),
        (dict(settings=dict(resolution=12)), ("resolution 12 is not a power of two",)),
        (dict(settings=dict(fmap_base=1 << 40)), ("channel_base",)),
    ],
)
def test_generators_we_cannot_build_are_refused_by_name(tmp_path, marker, change, phrases):
    G = fx.make_generator()
    settings = fx.tf_generator_settings(G, **change.get("settings", {}))
    synthesis_func = change.get("synthesis_func", "G_synthesis_stylegan2")
    Gs = fx.tf_generator(G, marker, settings=settings, synthesis_func=synthesis_func)
    if "drop" in change:
        component, _, name = change["drop"].partition("/")
        state = Gs._state["components"][component]._state
        state["variables"] = [(k, v) for k, v in state["variables"] if k != name]
    data = (Gs, fx.tf_discriminator(fx.make_discriminator(), marker), Gs)
    refusal(fx.write_pickle(tmp_path / "odd.pkl", data), *phrases)
    assert_nothing_ran(marker)


def test_a_tensorflow_pickle_that_is_not_a_training_tuple(tmp_path, marker):
    Gs = fx.tf_generator(fx.make_generator(), marker)
    refusal(fx.write_pickle(tmp_path / "gs-only.pkl", (Gs,)), "not the (G, D, Gs) tuple")
    state = Gs._state["components"]["synthesis"]._state
    state["variables"] = [("4x4/Const/const", "not numbers")]
    refusal(fx.write_pickle(tmp_path / "text.pkl", (Gs, Gs, Gs)), "variable 4x4/Const/const is not an array")
    Gs._state["components"]["synthesis"] = Gs  # a component that contains itself
    refusal(fx.write_pickle(tmp_path / "loop.pkl", (Gs, Gs, Gs)), "in a loop")


def _older_generation(marker: Path, generation: str) -> tuple:
    """G, D, Gs as StyleGAN (1) and ProGAN pickle them through dnnlib: other build functions and variables."""
    if generation == "stylegan1":
        ones = lambda *shape: fx._np(torch.ones(shape))  # noqa: E731
        style = {"4x4/Const/StyleMod/weight": ones(32, 64), "4x4/Const/const": ones(1, 32, 4, 4)}
        mapping = fx.tf_network("G_mapping", "G_mapping", {}, {"Dense0/weight": ones(32, 32)}, marker)
        synthesis = fx.tf_network("G_synthesis", "G_synthesis", {}, style, marker)
        top = {"lod": fx._np(torch.zeros([]))}
        G = fx.tf_network("G", "G_style", {}, top, marker, mapping=mapping, synthesis=synthesis)
        return G, fx.tf_network("D", "D_basic", {}, {}, marker), G
    G = fx.tf_network("G", "G_paper", {}, {"4x4/Dense/weight": fx._np(torch.ones(32, 512))}, marker)
    return G, fx.tf_network("D", "D_paper", {}, {}, marker), G


@pytest.mark.parametrize(
    "generation, phrases",
    [
        ("stylegan1", ("StyleGAN (the first version)", "'G_style'")),
        ("progan", ("Progressive GAN (ProGAN)", "'G_paper'")),
    ],
)
def test_stylegan1_and_progan_pickles_are_refused_by_name(tmp_path, marker, generation, phrases):
    error = refusal(fx.write_pickle(tmp_path / "old.pkl", _older_generation(marker, generation)), *phrases)
    assert "reads TensorFlow StyleGAN2 pickles" in str(error) and not error.refused
    assert_nothing_ran(marker)


def test_a_stylegan1_network_is_known_by_its_variables_alone(tmp_path, marker):
    G, D, _ = _older_generation(marker, "stylegan1")
    G._state["build_func_name"] = "G_main"  # a renamed build function: the AdaIN style layers still tell
    refusal(fx.write_pickle(tmp_path / "renamed.pkl", (G, D, G)), "StyleGAN (the first version)")


def test_original_progan_pickles_are_refused_by_name(tmp_path, marker, monkeypatch):
    class Network:
        """Pickles as ProGAN's own `tfutil.Network`."""

        __module__, __qualname__ = "tfutil", "Network"

        def __getstate__(self) -> dict:
            return {"build_module_src": fx.module_src(marker), "variables": []}

    monkeypatch.setitem(sys.modules, "tfutil", types.SimpleNamespace(Network=Network))
    path = tmp_path / "karras2018iclr-celebahq-1024x1024.pkl"
    path.write_bytes(pickle.dumps((Network(), Network(), Network()), protocol=2))
    error = refusal(path, "Progressive GAN (ProGAN)", "tfutil.Network")
    assert not error.refused
    assert_nothing_ran(marker)


@pytest.mark.parametrize("kind", ["os.system", "eval"])
@pytest.mark.parametrize("where", ["static_kwargs", "variables"])
def test_malicious_globals_inside_a_network_are_refused(tmp_path, marker, kind, where):
    make, name = PAYLOADS[kind]
    G, Gs, D = fx.make_generator(seed=2), fx.make_generator(seed=0), fx.make_discriminator()
    data = fx.tensorflow_pickle(G, D, Gs, marker)
    mapping = data[2]._state["components"]["mapping"]._state
    if where == "static_kwargs":
        mapping["static_kwargs"] = {**mapping["static_kwargs"], "resolution": make(marker)}
    else:
        mapping["variables"] = [*mapping["variables"], ("Dense0/weight", make(marker))]
    error = refusal(fx.write_pickle(tmp_path / "evil.pkl", data), name, "never needs")
    assert error.refused
    assert_nothing_ran(marker)


def test_build_module_src_is_never_run(tmp_path, marker):
    G, Gs, D = fx.make_generator(seed=2), fx.make_generator(seed=0), fx.make_discriminator()
    data = fx.tensorflow_pickle(G, D, Gs, marker)
    for net in data:
        net._state["build_module_src"] = f"import os\nos.system('touch {marker}')\ndef G_main(): pass\n"
    bundle = load_checkpoint(fx.write_pickle(tmp_path / "src.pkl", data))
    assert torch.equal(fx.pixels(bundle.G_ema), fx.pixels(Gs))
    assert_nothing_ran(marker)


def test_errors_name_the_file(tmp_path, marker):
    G, D = fx.make_generator(), fx.make_discriminator()
    data = fx.tensorflow_pickle(G, D, G, marker, architecture="orig")
    path = fx.write_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", data)
    with pytest.raises(CheckpointError, match=r"cannot load stylegan2-tiny-config-f\.pkl: its Gs has architecture"):
        load_checkpoint(path)
