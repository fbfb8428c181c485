"""Checkpoints: NVIDIA pickles, rosinality `.pt` files and our `.safetensors` give the pixels of the networks
they were written from; bad and malicious files are refused with a specific message and no side effect.
(TensorFlow pickles: test_tensorflow_pkl.py.)"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from models.checkpoints import (
    CheckpointBundle,
    CheckpointError,
    ModelMeta,
    detect_format,
    load_checkpoint,
    save_checkpoint,
)
from tests.models import pickle_fixtures as fx

# What FORMATS.md lists, plus how protocol 2 spells bytes and sets.
PUBLISHED_GLOBALS = {
    "torch_utils.persistence._reconstruct_persistent_obj",
    "dnnlib.util.EasyDict",
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.storage._load_from_bytes",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy._core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "builtins.set",
    "__builtin__.set",
    "_codecs.encode",
}



@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """The file every payload in these tests would create if anything from a checkpoint were executed."""
    return tmp_path / "side-effect"


def assert_near(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> None:
    # torch.testing.assert_close would import torch.distributed (seconds); allclose says enough here.
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (actual - expected).abs().max()


def assert_nothing_ran(marker: Path) -> None:
    assert not marker.exists()
    assert not {"torch_utils", "dnnlib"} & {name.split(".")[0] for name in sys.modules}


def refusal(path: Path, *phrases: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert path.name in message
    for phrase in phrases:
        assert phrase in message
    return info.value


def snapshot(marker: Path, schema: str = "stylegan2-ada", conv_clamp=256, c_dim: int = 0, **kw) -> dict:
    G_ema, G = fx.make_generator(c_dim, 256, seed=0), fx.make_generator(c_dim, 256, seed=2)
    D = fx.make_discriminator(c_dim, 256)
    return fx.nvidia_snapshot(G_ema, G, D, schema=schema, conv_clamp=conv_clamp, marker=marker, **kw)


# --- NVIDIA network pickles


@pytest.mark.parametrize(
    "schema, written_clamp, clamp, protocol, views, c_dim",
    [
        pytest.param("stylegan2-ada", 256, 256, 4, False, 0, id="ada-clamp256-proto4"),
        pytest.param("stylegan2-ada", ..., None, 3, True, 0, id="ada-default-clamp-proto3-views"),
        pytest.param("stylegan3", ..., 256, 4, False, 3, id="sg3-default-clamp-proto4-cdim3"),
        pytest.param("stylegan3", None, None, 2, True, 2, id="sg3-no-clamp-proto2-views-cdim2"),
    ],
)
def test_nvidia_pickle_gives_the_same_pixels(
    tmp_path, marker, schema, written_clamp, clamp, protocol, views, c_dim
):
    G_ema = fx.make_generator(c_dim, clamp, seed=0, loud=True)
    G = fx.make_generator(c_dim, clamp, seed=2)
    D = fx.make_discriminator(c_dim, clamp, loud=True)
    data = fx.nvidia_snapshot(
        G_ema, G, D, schema=schema, conv_clamp=written_clamp, marker=marker, views=views
    )
    path = fx.write_pickle(tmp_path / "network-snapshot-000120.pkl", data, protocol)
    referenced = fx.pickle_globals(path)
    assert referenced <= PUBLISHED_GLOBALS
    assert "torch_utils.persistence._reconstruct_persistent_obj" in referenced
    assert "torch.storage._load_from_bytes" in referenced

    bundle = load_checkpoint(path)

    expected_pixels, expected_scores = fx.pixels(G_ema, c_dim), fx.scores(D, c_dim)
    assert torch.equal(fx.pixels(bundle.G_ema, c_dim), expected_pixels)
    assert torch.equal(fx.scores(bundle.D, c_dim), expected_scores)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in bundle.G.state_dict().items())
    if written_clamp is ...:
        # These weights make conv_clamp visible: the writer's default was applied, not just tolerated.
        other_clamp = None if clamp else 256
        other_G = fx.copy_weights(G_ema, fx.make_generator(c_dim, other_clamp))
        other_D = fx.copy_weights(D, fx.make_discriminator(c_dim, other_clamp))
        assert not torch.allclose(fx.pixels(other_G, c_dim), expected_pixels, atol=1)
        assert not torch.allclose(fx.scores(other_D, c_dim), expected_scores, atol=1)

    assert bundle.augment_p == pytest.approx(0.3)
    meta = bundle.meta
    assert (
        meta.family,
        meta.resolution,
        meta.z_dim,
        meta.w_dim,
        meta.num_ws,
        meta.c_dim,
        meta.img_channels,
    ) == ("stylegan2", 16, 32, 32, 6, c_dim, 3)
    assert (meta.source_format, meta.source_name) == ("nvidia-pkl", path.name)
    assert meta.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta.g_kwargs["synthesis_kwargs"]["conv_clamp"] == clamp
    assert meta.g_kwargs["mapping_kwargs"]["w_avg_beta"] == (0.995 if schema == "stylegan2-ada" else 0.998)
    assert meta.d_kwargs["conv_clamp"] == clamp
    assert meta.training["dataset"] == "cats-16.zip" and meta.training["kimg"] == 120
    assert meta.training["max_size"] == 120 and meta.training["use_labels"] == (c_dim > 0)
    json.dumps(meta.to_dict())
    assert not bundle.G_ema.training and not any(p.requires_grad for p in bundle.G_ema.parameters())
    assert not bundle.G.training and not bundle.D.training
    assert_nothing_ran(marker)


def test_nvidia_pickle_with_only_g_ema(tmp_path, marker):
    G_ema = fx.make_generator(seed=3)
    src = fx.module_src(marker)
    record = fx.record(G_ema, src, fx.generator_kwargs(G_ema, "stylegan3", None))
    path = fx.write_pickle(tmp_path / "ffhq.pkl", {"G_ema": record})
    bundle = load_checkpoint(path)
    assert torch.equal(fx.pixels(bundle.G_ema), fx.pixels(G_ema))
    assert (bundle.G, bundle.D, bundle.augment_p) == (None, None, None)
    assert "kimg" not in bundle.meta.training
    assert_nothing_ran(marker)


def test_nvidia_pickle_with_an_unsupported_discriminator_keeps_the_generator(tmp_path, marker):
    data = snapshot(marker)
    data["D"].meta["state"]["_init_kwargs"]["architecture"] = "orig"  # the ADA repo's cifar config
    bundle = load_checkpoint(fx.write_pickle(tmp_path / "cifar.pkl", data))
    assert bundle.D is None and bundle.G is not None
    assert "'orig' architecture" in bundle.meta.training["discriminator"]


def test_detect_format_sniffs_content_not_extension(tmp_path, marker):
    pkl = fx.write_pickle(tmp_path / "model.safetensors", snapshot(marker))
    assert detect_format(pkl) == "nvidia-pkl"
    bundle = load_checkpoint(pkl)
    native = tmp_path / "model.pkl"
    save_checkpoint(native, bundle)
    assert detect_format(native) == "native"
    assert torch.equal(fx.pixels(load_checkpoint(native).G_ema), fx.pixels(bundle.G_ema))
    G = fx.make_generator()
    pt = fx.torch_save(tmp_path / "model.pkl.safetensors", {"g_ema": fx.rosinality_generator(G)})
    assert detect_format(pt) == "rosinality"
    assert torch.equal(fx.pixels(load_checkpoint(pt).G_ema), fx.pixels(G))


# --- rosinality


def test_rosinality_converted_file(tmp_path):
    G = fx.make_generator(seed=4)
    weights = fx.rosinality_generator(G)
    path = fx.torch_save(
        tmp_path / "stylegan2-cats.pt", {"g_ema": weights, "latent_avg": G.mapping.w_avg.clone()}
    )
    bundle = load_checkpoint(path)
    assert torch.equal(fx.pixels(bundle.G_ema), fx.pixels(G))
    assert torch.equal(bundle.G_ema.mapping.w_avg, G.mapping.w_avg)
    # rosinality's own forward pass, written from its semantics, draws the same image.
    z = torch.randn([2, 32], generator=torch.Generator().manual_seed(5))
    assert_near(fx.rosinality_generate(weights, z), fx.pixels(bundle.G_ema), atol=1e-4, rtol=1e-4)
    meta = bundle.meta
    assert (meta.source_format, meta.resolution, meta.num_ws, meta.d_kwargs) == ("rosinality", 16, 6, None)
    assert meta.g_kwargs["synthesis_kwargs"] == dict(
        channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None
    )
    assert (bundle.G, bundle.D, bundle.augment_p) == (None, None, None)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-torch-save"])
def test_rosinality_training_snapshot(tmp_path, legacy):
    G_ema, G, D = fx.make_generator(seed=4), fx.make_generator(seed=5), fx.make_discriminator(seed=6)
    d_weights = fx.rosinality_discriminator(D)
    data = {
        "g": fx.rosinality_generator(G),
        "d": d_weights,
        "g_ema": fx.rosinality_generator(G_ema),
        "g_optim": fx.adam_state(G),
        "d_optim": fx.adam_state(D),
        "args": fx.rosinality_args(),
        "ada_aug_p": 0.25,
    }
    path = fx.torch_save(tmp_path / "010000.pt", data, legacy=legacy)
    bundle = load_checkpoint(path)
    assert torch.equal(fx.pixels(bundle.G_ema), fx.pixels(G_ema))
    assert torch.equal(fx.pixels(bundle.G), fx.pixels(G))
    assert torch.equal(fx.scores(bundle.D), fx.scores(D))
    img = torch.randn([4, 3, 16, 16], generator=torch.Generator().manual_seed(6))
    assert_near(fx.rosinality_discriminate(d_weights, img), fx.scores(bundle.D), atol=1e-4, rtol=1e-4)
    assert bundle.augment_p == 0.25
    # No latent_avg in training snapshots: w_avg is the mean w, as rosinality's mean_latent computes it.
    with torch.no_grad():
        ws = G_ema.z_to_w(torch.randn([20000, 32], generator=torch.Generator().manual_seed(9)))
    assert ((bundle.G_ema.mapping.w_avg - ws.mean(0)).abs() <= 0.1 * ws.std(0)).all()
    assert "w_avg" in bundle.meta.training and bundle.meta.training["dataset"] == "cats_lmdb"
    assert bundle.meta.d_kwargs["channel_base"] == 256
    json.dumps(bundle.meta.to_dict())


# --- our safetensors format


def test_native_round_trip_is_bit_exact(tmp_path, marker):
    imported = load_checkpoint(
        fx.write_pickle(tmp_path / "network-snapshot-000040.pkl", snapshot(marker, c_dim=2))
    )
    path = tmp_path / "library" / "cats.safetensors"
    path.parent.mkdir()
    save_checkpoint(path, imported)
    assert sorted(os.listdir(path.parent)) == ["cats.safetensors"]

    bundle = load_checkpoint(path)
    for name in ("G_ema", "G", "D"):
        ours, theirs = getattr(bundle, name).state_dict(), getattr(imported, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(fx.pixels(bundle.G_ema, 2), fx.pixels(imported.G_ema, 2))
    assert bundle.meta == imported.meta  # provenance stays that of the original pickle
    assert bundle.augment_p == imported.augment_p
    assert not any(p.requires_grad for p in bundle.G_ema.parameters())
    assert all(p.requires_grad for p in bundle.G.parameters())  # ready for fine-tuning
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata()
        assert (metadata["format"], metadata["format_version"]) == ("gan-studio", "1")
        assert json.loads(metadata["meta"]) == imported.meta.to_dict()
        assert {key.split(".")[0] for key in file.keys()} == {"G_ema", "G", "D"}


def test_native_float16_is_half_the_size_and_close(tmp_path):
    G = fx.make_generator(seed=7)
    bundle = load_checkpoint(fx.torch_save(tmp_path / "g.pt", {"g_ema": fx.rosinality_generator(G)}))
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_checkpoint(full, bundle)
    save_checkpoint(half, bundle, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half)
    assert all(t.dtype == torch.float32 for t in loaded.G_ema.state_dict().values())
    assert_near(fx.pixels(loaded.G_ema), fx.pixels(G), atol=0.05, rtol=0.01)
    assert (loaded.G, loaded.D) == (None, None)


def test_native_model_born_here_names_its_own_file(tmp_path):
    G = fx.make_generator(seed=8)
    meta = ModelMeta(
        family="stylegan2",
        resolution=16,
        z_dim=32,
        w_dim=32,
        num_ws=6,
        c_dim=0,
        img_channels=3,
        source_format="native",
        source_name="",
        source_sha256="",
        g_kwargs=G.init_kwargs,
        d_kwargs=None,
        training={"kimg": 12},
    )
    path = tmp_path / "mine.safetensors"
    save_checkpoint(path, CheckpointBundle(G_ema=G, G=None, D=None, augment_p=None, meta=meta))
    loaded = load_checkpoint(path)
    assert torch.equal(fx.pixels(loaded.G_ema), fx.pixels(G))
    assert (loaded.meta.source_format, loaded.meta.source_name) == ("native", "mine.safetensors")
    assert loaded.meta.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.meta.training == {"kimg": 12}


def test_native_save_is_atomic(tmp_path, monkeypatch):
    bundle = load_checkpoint(
        fx.torch_save(tmp_path / "g.pt", {"g_ema": fx.rosinality_generator(fx.make_generator())})
    )
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, bundle)
    before = path.read_bytes()

    def crash(tensors, filename, metadata):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("models.checkpoints.native.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, bundle)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["g.pt", "model.safetensors"]


# --- bad input


def test_missing_empty_and_folder(tmp_path):
    refusal(tmp_path / "nope.pkl", "does not exist")
    (tmp_path / "empty.pkl").write_bytes(b"")
    refusal(tmp_path / "empty.pkl", "empty")
    (tmp_path / "folder.pt").mkdir()
    refusal(tmp_path / "folder.pt", "folder")


def test_unrecognised_bytes(tmp_path):
    noise = np.random.RandomState(0).bytes(4096)
    (tmp_path / "random.pkl").write_bytes(b"\x00" + noise)
    refusal(tmp_path / "random.pkl", "not a checkpoint GAN Studio reads")
    (tmp_path / "lfs.pkl").write_bytes(
        b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 363\n"
    )
    refusal(tmp_path / "lfs.pkl", "Git LFS pointer")
    (tmp_path / "garbage.pkl").write_bytes(b"\x80\x04" + noise)
    refusal(tmp_path / "garbage.pkl", "corrupt")


def test_truncated_files(tmp_path, marker):
    whole = fx.write_pickle(tmp_path / "whole.pkl", snapshot(marker)).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(whole[: len(whole) // 2])
    refusal(tmp_path / "cut.pkl", "truncated")
    pt = fx.torch_save(
        tmp_path / "whole.pt", {"g_ema": fx.rosinality_generator(fx.make_generator())}
    ).read_bytes()
    (tmp_path / "cut.pt").write_bytes(pt[: len(pt) // 2])
    refusal(tmp_path / "cut.pt", "truncated or corrupt")
    native = tmp_path / "whole.safetensors"
    save_checkpoint(native, load_checkpoint(tmp_path / "whole.pt"))
    (tmp_path / "cut.safetensors").write_bytes(native.read_bytes()[:-1000])
    refusal(tmp_path / "cut.safetensors", "truncated or corrupt")
    assert_nothing_ran(marker)


def test_pickles_that_hold_no_network(tmp_path, marker):
    refusal(fx.write_pickle(tmp_path / "list.pkl", [1, 2, 3]), "pickle of a list")
    refusal(fx.write_pickle(tmp_path / "no_g.pkl", {"D": None, "epoch": 3}), "no G_ema", "epoch")
    refusal(fx.write_pickle(tmp_path / "dict_g.pkl", {"G_ema": {"w": 1}}), "G_ema is a dict")
    other = nn.Linear(2, 2)
    exploit = fx.record(other, fx.module_src(marker), class_name="Exploit")
    refusal(fx.write_pickle(tmp_path / "exploit.pkl", {"G_ema": exploit}), "'Exploit'", "not a Generator")
    assert_nothing_ran(marker)


def test_weights_that_do_not_fit(tmp_path, marker):
    data = snapshot(marker)
    data["G_ema"].meta["state"]["_init_kwargs"]["synthesis_kwargs"]["channel_max"] = 64
    refusal(
        fx.write_pickle(tmp_path / "shapes.pkl", data), "G_ema weights do not fit", "wrong shapes", "[32,"
    )
    data = snapshot(marker)
    b4 = data["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["b4"]
    del b4.meta["state"]["_modules"]["conv1"].meta["state"]["_parameters"]["weight"]
    refusal(fx.write_pickle(tmp_path / "missing.pkl", data), "missing synthesis.b4.conv1.weight")
    data = snapshot(marker)
    data["G_ema"].meta["state"]["_init_kwargs"]["synthesis_kwargs"]["architecture"] = "resnet"
    refusal(fx.write_pickle(tmp_path / "arch.pkl", data), "settings do not describe", "skip")
    G = fx.rosinality_generator(fx.make_generator())
    del G["noises.noise_2"]
    refusal(fx.torch_save(tmp_path / "ros.pt", {"g_ema": G}), "lacks the tensor noises.noise_2")
    refusal(
        fx.torch_save(tmp_path / "other.pt", {"model": {"w": torch.zeros(2)}}),
        "no rosinality generator",
        "model",
    )


def test_foreign_and_newer_safetensors(tmp_path):
    save_file({"w": torch.zeros(2)}, tmp_path / "sd-lora.safetensors")
    refusal(tmp_path / "sd-lora.safetensors", "not a GAN Studio checkpoint")
    save_file(
        {"G_ema.w": torch.zeros(2)},
        tmp_path / "future.safetensors",
        {"format": "gan-studio", "format_version": "9"},
    )
    refusal(tmp_path / "future.safetensors", "newer GAN Studio")
    save_file(
        {"G_ema.w": torch.zeros(2)},
        tmp_path / "bad.safetensors",
        {"format": "gan-studio", "format_version": "1"},
    )
    refusal(tmp_path / "bad.safetensors", "metadata is malformed")


# --- malicious files


class Payload:
    """Pickles as a call of `func(*args)`: what a malicious pickle asks the reader to run."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


PAYLOADS = {
    "os.system": (lambda m: Payload(os.system, f"touch {m}"), f"{os.system.__module__}.system"),
    "eval": (lambda m: Payload(eval, f"open({str(m)!r}, 'w')"), "builtins.eval"),
    "exec": (lambda m: Payload(exec, f"open({str(m)!r}, 'w')"), "builtins.exec"),
    "subprocess.Popen": (lambda m: Payload(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
}


@pytest.mark.parametrize("kind", PAYLOADS)
def test_malicious_global_is_refused(tmp_path, marker, kind):
    make, name = PAYLOADS[kind]
    data = snapshot(marker)
    data["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]["payload"] = make(marker)
    error = refusal(fx.write_pickle(tmp_path / "evil.pkl", data), name, "never needs")
    assert str(error).startswith("refused to load evil.pkl")
    refusal(fx.write_pickle(tmp_path / "bare.pkl", make(marker)), name)
    assert_nothing_ran(marker)


def test_persistent_id_is_refused(tmp_path, marker):
    class ExternalTensors(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "0") if isinstance(obj, torch.Tensor) else None

    buffer = io.BytesIO()
    with fx.nvidia_names():
        ExternalTensors(buffer, protocol=4).dump(snapshot(marker))
    (tmp_path / "pid.pkl").write_bytes(buffer.getvalue())
    refusal(tmp_path / "pid.pkl", "persistent id")
    assert_nothing_ran(marker)


@pytest.mark.parametrize("out_of_band", [False, True], ids=["bytearray", "out-of-band"])
def test_protocol_5_buffers_are_refused(tmp_path, marker, out_of_band):
    """A network pickle never holds them; a damaged one that did tripped a CPython 3.11 garbage-collector bug
    ("deallocated bytearray object has exported buffers", in the fuzz tests)."""
    data = {"extra": pickle.PickleBuffer(bytearray(b"weights")), **snapshot(marker)}
    with fx.nvidia_names():
        raw = pickle.dumps(data, protocol=5, buffer_callback=(lambda buffer: False) if out_of_band else None)
    opcode = pickle.NEXT_BUFFER if out_of_band else pickle.BYTEARRAY8
    assert opcode in {op.code.encode("latin1") for op, _, _ in pickletools.genops(raw)}
    (tmp_path / "buffers.pkl").write_bytes(raw)
    assert refusal(tmp_path / "buffers.pkl", "protocol-5 buffers").refused
    assert_nothing_ran(marker)


def test_an_unknown_opcode_is_named(tmp_path):
    (tmp_path / "opcode.pkl").write_bytes(b"\x80\x04\xff.")
    refusal(tmp_path / "opcode.pkl", "pickle is corrupt", "invalid opcode b'\\xff'")


def test_malicious_storage_bytes_are_refused(tmp_path, marker):
    evil = io.BytesIO()
    torch.save(Payload(os.system, f"touch {marker}"), evil, _use_new_zipfile_serialization=False)
    data = {"G_ema": Payload(torch.storage._load_from_bytes, evil.getvalue())}
    refusal(fx.write_pickle(tmp_path / "storage.pkl", data), "system")
    assert_nothing_ran(marker)


def test_malicious_torch_file_is_refused(tmp_path, marker):
    data = {
        "g_ema": fx.rosinality_generator(fx.make_generator()),
        "hook": Payload(os.system, f"touch {marker}"),
    }
    error = refusal(fx.torch_save(tmp_path / "evil.pt", data), f"{os.system.__module__}.system")
    assert error.refused and "weights_only=False" not in str(error)
    copy = pickle.loads(pickle.dumps(error))  # errors cross process boundaries intact
    assert (str(copy), copy.refused, copy.path) == (str(error), True, str(tmp_path / "evil.pt"))
    assert_nothing_ran(marker)


def test_module_src_is_never_run(tmp_path, marker):
    data = snapshot(marker)
    data["G_ema"].meta["module_src"] = f"import os\nos.system('touch {marker}')\n"
    bundle = load_checkpoint(fx.write_pickle(tmp_path / "src.pkl", data))
    assert bundle.G_ema is not None
    assert_nothing_ran(marker)


def test_numpy_objects_are_refused(tmp_path, marker):
    data = snapshot(marker)
    data["training_set_kwargs"]["labels"] = np.array([OrderedDict(), "x"], dtype=object)
    refusal(fx.write_pickle(tmp_path / "objects.pkl", data), "numpy array of objects")


# --- files that ask for more than they hold


def g_ema_state(data: dict, *modules: str) -> dict:
    """The pickled `__dict__` of a G_ema submodule, e.g. ("mapping", "fc0")."""
    state = data["G_ema"].meta["state"]
    for name in modules:
        state = state["_modules"][name].meta["state"]
    return state


def rebuild(storage_numel: int, offset: int, size: tuple, stride: tuple) -> Payload:
    """A pickled tensor view with these extents over a real storage of `storage_numel` floats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated, but pickles hold them
        storage = torch.arange(float(storage_numel)).storage()
    return Payload(torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, OrderedDict())


@pytest.mark.parametrize(
    "storage_numel, offset, size, stride",
    [
        pytest.param(4, 0, (32, 32), (32, 1), id="past-the-end"),  # torch would grow the storage: garbage
        pytest.param(1024, 1000, (32, 32), (32, 1), id="offset"),
        pytest.param(1, 0, (32, 32), (0, 0), id="stride-0"),  # 1 stored number, 1024 once copied
        pytest.param(4, 0, (1 << 20, 1 << 20), (1 << 20, 1), id="terabytes"),
    ],
)
def test_pickled_tensor_outside_its_storage_is_refused(
    tmp_path, marker, memory_cap, storage_numel, offset, size, stride
):
    data = snapshot(marker)
    g_ema_state(data, "mapping", "fc0")["_parameters"]["weight"] = rebuild(storage_numel, offset, size, stride)
    refusal(fx.write_pickle(tmp_path / "extent.pkl", data), "pickle is corrupt", "reaches beyond its storage")


def test_storage_bytes_claiming_more_than_they_hold_are_refused(tmp_path, marker, memory_cap):
    legacy = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.save(torch.zeros(4).storage(), legacy, _use_new_zipfile_serialization=False)
    numel = legacy.getvalue().index(b"K\x04Nt")  # the storage's element count in its persistent id
    claim = b"\x8a\x05" + (1 << 36).to_bytes(5, "little")  # 2**36 floats: 256 GiB
    patched = legacy.getvalue()[:numel] + claim + legacy.getvalue()[numel + 2 :]
    data = snapshot(marker)
    g_ema_state(data, "mapping", "fc0")["_parameters"]["weight"] = Payload(torch.storage._load_from_bytes, patched)
    refusal(fx.write_pickle(tmp_path / "claim.pkl", data), "claims 274,877,906,944 bytes but only")


ABSURD_SETTINGS = [  # (where in the G_ema or D settings, value, what the refusal names)
    (("synthesis_kwargs", "channel_max"), 1 << 20, "channel_max = 1,048,576 is outside"),
    (("z_dim",), 10**9, "z_dim = 1,000,000,000 is outside"),
    (("mapping_kwargs", "num_layers"), 10**6, "num_layers = 1,000,000 is outside"),
    (("img_channels",), "3", "img_channels is '3' (str), not a whole number"),
    (("synthesis_kwargs", "resample_filter"), [1.0] * 10**4, "resample_filter is not a list of 1 to 16"),
    (("D", "img_resolution"), 1 << 40, "img_resolution = 1,099,511,627,776 is outside"),
    (("D", "epilogue_kwargs"), {"mbstd_num_channels": 10**5}, "mbstd_num_channels = 100,000 is outside"),
]


@pytest.mark.parametrize("keys, value, phrase", ABSURD_SETTINGS, ids=[k[-1] for k, _, _ in ABSURD_SETTINGS])
def test_absurd_network_settings_are_refused_by_name(tmp_path, marker, memory_cap, keys, value, phrase):
    data = snapshot(marker)
    network, keys = ("D", keys[1:]) if keys[0] == "D" else ("G_ema", keys)
    settings = data[network].meta["state"]["_init_kwargs"]
    for key in keys[:-1]:
        settings = settings[key]
    settings[keys[-1]] = value
    refusal(fx.write_pickle(tmp_path / "absurd.pkl", data), f"its {network} setting", phrase)
    assert_nothing_ran(marker)


def test_settings_within_range_but_terabytes_in_total_are_refused(tmp_path, marker, memory_cap):
    data = snapshot(marker)
    settings = data["G_ema"].meta["state"]["_init_kwargs"]
    settings.update(img_resolution=4096)
    settings["synthesis_kwargs"].update(channel_base=1 << 21, channel_max=4096)
    refusal(fx.write_pickle(tmp_path / "big.pkl", data), "G_ema settings describe a network of about", "million")


@pytest.mark.timeout(60)
def test_settings_unfolding_into_billions_of_values_are_refused(tmp_path, marker):
    bomb: list = [0]
    for _ in range(64):  # 64 levels of a list holding itself twice: 2**64 values, a few hundred bytes pickled
        bomb = [bomb, bomb]
    data = snapshot(marker)
    data["G_ema"].meta["state"]["_init_kwargs"]["synthesis_kwargs"]["bomb"] = bomb
    refusal(fx.write_pickle(tmp_path / "bomb.pkl", data), "holds more values, or nests deeper, than settings")


def test_native_file_with_absurd_settings_is_refused(tmp_path, memory_cap):
    G = fx.make_generator(seed=7)
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, load_checkpoint(fx.torch_save(tmp_path / "g.pt", {"g_ema": fx.rosinality_generator(G)})))
    with safe_open(good, framework="pt") as file:
        metadata = file.metadata()
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    meta = json.loads(metadata["meta"])
    meta["g_kwargs"]["synthesis_kwargs"].update(channel_base=1 << 40, channel_max=1 << 30)
    save_file(tensors, tmp_path / "absurd.safetensors", {**metadata, "meta": json.dumps(meta)})
    refusal(tmp_path / "absurd.safetensors", "G_ema setting channel_base", "outside")


@pytest.mark.parametrize(
    "key, view",
    [
        ("noises.noise_0", lambda t: t.flatten()[:1].clone().expand(t.shape)),  # 1 stored number, 16 once copied
        ("input.input", lambda t: t.flatten()[:1].clone().expand(1, 1 << 16, 4, 4)),  # and 65 536 channels
    ],
)
def test_rosinality_stride_0_views_are_refused(tmp_path, memory_cap, key, view):
    G = fx.rosinality_generator(fx.make_generator())
    G[key] = view(G[key])
    refusal(fx.torch_save(tmp_path / "view.pt", {"g_ema": G}), f"its tensor g_ema.{key}", "reaches beyond")


def test_a_legacy_torch_file_declaring_a_3_gib_string_is_refused_without_allocating_it(tmp_path, memory_cap):
    G = fx.rosinality_generator(fx.make_generator())
    data = bytearray(fx.torch_save(tmp_path / "g.pt", {"g_ema": G}, legacy=True).read_bytes())
    length = data.index(b"g_ema") - 1  # the high byte of the key's 4-byte length
    data[length] ^= 0xC0  # found by the fuzz suite: a buffered read allocated the declared size up front
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    error = refusal(tmp_path / "bad.pt")
    assert "memory" not in str(error)
