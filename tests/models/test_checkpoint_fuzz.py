"""Hostile and broken checkpoint files: real files of every format, mutated by hypothesis, through `load_checkpoint`.

Every mutated file must load, or be refused with a `CheckpointError` that names it. Never another exception,
never a hang (a per-case deadline and an alarm), never memory the file does not bring (the address space is
capped, an allocation failure counts as a failure, and the peak resident memory is checked), and never code
from the file run (the seeds carry payloads that would create a marker file).

Mutations: truncation, byte flips, spliced ranges, integers of the top-level pickle rewritten (sizes, strides,
offsets, network settings), safetensors headers with absurd lengths, shapes, offsets and settings. The
outcomes are tallied per seed and printed by the last test (run with -s to see them).
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import signal
import struct
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from tests.models import pickle_fixtures as fx

CASE_SECONDS = 10.0  # a tiny checkpoint loads in tens of milliseconds; a case this slow is a failure
HANG_SECONDS = 30  # the alarm that turns a hang into a failure instead of a stuck suite
RSS_GROWTH = 1 << 30  # peak resident memory may not grow more than this while fuzzing
ALLOCATION_FAILURES = ("can't allocate memory", "not enough memory to load")
# CPython 3.11's unpickler allocates what a length field declares before reading it; under the cap that ends
# as a clean refusal naming the cause, which is counted apart.
DECLARED_TOO_MUCH = "asks for more memory than there is"
EXAMPLES = int(os.environ.get("GAN_STUDIO_FUZZ_EXAMPLES", "150"))  # per seed; about 30 s of CPU in all

TALLY: Counter = Counter()
SLOWEST: dict[str, float] = {}


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no loader's `except Exception` turns it into a refusal."""


# --- the seed files, built once


def _rosinality_snapshot(legacy: bool, tmp: Path, marker: Path | None = None) -> bytes:
    ckpt = {
        "g_ema": fx.rosinality_generator(fx.make_generator(seed=3)),
        "latent_avg": torch.randn(32),
        "args": fx.rosinality_args(size=16, latent=32, n_mlp=2),
    }
    if not legacy:
        ckpt["d"] = fx.rosinality_discriminator(fx.make_discriminator(seed=4))
    if marker is not None:
        ckpt["hook"] = Payload(os.system, f"touch {marker}")
    return fx.torch_save(tmp / "seed.pt", ckpt, legacy=legacy).read_bytes()


class Payload:
    """Pickles as a call of `func(*args)`: what a malicious file asks the reader to run."""

    def __init__(self, func: Callable, *args: object):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Created only if anything from a checkpoint is ever executed."""
    return tmp_path_factory.mktemp("fuzz-marker") / "executed"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fuzz-seeds")
    G_ema, G, D = fx.make_generator(seed=0), fx.make_generator(seed=2), fx.make_discriminator()

    def nvidia(protocol: int, views: bool) -> bytes:
        data = fx.nvidia_snapshot(G_ema, G, D, schema="stylegan2-ada", conv_clamp=256, marker=marker, views=views)
        data["G"] = None  # G_ema alone (and D in one seed) keep each case fast: it is the same code
        if views:
            data["D"] = None
        return fx.write_pickle(tmp / "seed.pkl", data, protocol).read_bytes()

    malicious = fx.nvidia_snapshot(G_ema, G, D, schema="stylegan3", conv_clamp=256, marker=marker)
    malicious["training_set_kwargs"]["hook"] = Payload(exec, f"open({str(marker)!r}, 'w')")
    malicious["augment_pipe"].meta["state"]["hook"] = Payload(os.system, f"touch {marker}")
    malicious["G"] = malicious["D"] = None
    files = {
        "nvidia.pkl": nvidia(4, views=False),
        "nvidia-proto2-views.pkl": nvidia(2, views=True),
        "malicious.pkl": fx.write_pickle(tmp / "evil.pkl", malicious).read_bytes(),
        # G and Gs are one object here, pickled once: a TensorFlow pickle with the cost of one generator
        "tensorflow.pkl": fx.write_pickle(tmp / "tf.pkl", fx.tensorflow_pickle(G_ema, D, G_ema, marker)).read_bytes(),
        "rosinality.pt": _rosinality_snapshot(False, tmp),
        "rosinality-legacy.pt": _rosinality_snapshot(True, tmp),
        "malicious.pt": _rosinality_snapshot(False, tmp, marker),
    }
    (tmp / "ok.pkl").write_bytes(files["nvidia.pkl"])
    save_checkpoint(tmp / "seed.safetensors", load_checkpoint(tmp / "ok.pkl"))
    files["native.safetensors"] = (tmp / "seed.safetensors").read_bytes()
    return files


# --- mutations


INTERESTING = [
    0, 1, 2, 3, 4, 7, 255, 256, 4096, 65535, 1 << 20, (1 << 31) - 1, 1 << 31, 1 << 40, 1 << 62, -1, -(1 << 31),
]  # fmt: skip


def _int_opcodes(pickled: bytes) -> list[tuple[int, int]]:
    """(position, length) of every integer opcode of a top-level pickle."""
    spans, ops = [], list(pickletools.genops(pickled))
    for (op, _, pos), (_, _, end) in zip(ops, ops[1:], strict=False):
        if op.name in ("BININT", "BININT1", "BININT2", "LONG1", "INT", "LONG"):
            spans.append((pos, end - pos))
    return spans


def _encode_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(1 << 31) <= value < (1 << 31):
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def rewrite_int(pickled: bytes, draw: Callable) -> bytes:
    spans = _int_opcodes(pickled)
    pos, length = spans[draw(st.integers(0, len(spans) - 1))]
    value = draw(st.sampled_from(INTERESTING) | st.integers(-(1 << 63), 1 << 63))
    return pickled[:pos] + _encode_int(value) + pickled[pos + length :]


def rewrite_zip_pickle(data: bytes, draw: Callable) -> bytes:
    """A torch zip file whose data.pkl has one integer rewritten (sizes, strides, offsets, storage numels)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.endswith("data.pkl"):
                content = rewrite_int(content, draw)
            target.writestr(info.filename, content)
    return out.getvalue()


def rewrite_safetensors_header(data: bytes, draw: Callable) -> bytes:
    length = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8 : 8 + length]), data[8 + length :]
    edit = draw(st.sampled_from(["length", "shape", "offsets", "dtype", "setting"]))
    if edit == "length":
        claimed = draw(st.sampled_from(INTERESTING[1:15]) | st.integers(0, (1 << 64) - 1))
        return struct.pack("<Q", claimed) + data[8:]
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    absurd = st.sampled_from(INTERESTING[:15]) | st.integers(0, 1 << 40)
    if edit == "shape":
        header[name]["shape"] = draw(st.lists(absurd, max_size=6))
    elif edit == "offsets":
        header[name]["data_offsets"] = draw(st.lists(absurd, min_size=2, max_size=2))
    elif edit == "dtype":
        header[name]["dtype"] = draw(st.sampled_from(["F64", "F16", "I8", "BOOL", "U64", "X"]))
    else:  # a network setting of the metadata
        meta = json.loads(header["__metadata__"]["meta"])
        kwargs = meta["g_kwargs"] if draw(st.booleans()) else meta["d_kwargs"]
        key = draw(st.sampled_from(sorted(k for k, v in kwargs.items() if not isinstance(v, dict))))
        kwargs[key] = draw(absurd | st.sampled_from([None, "512", 1.5, [], {}]))
        header["__metadata__"]["meta"] = json.dumps(meta)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


@st.composite
def mutated(draw: Callable, seed: bytes, name: str) -> tuple[str, bytes]:
    kinds = ["truncate", "flip", "splice"]
    if name.endswith(".pkl"):
        kinds.append("int")
    elif name.endswith(".pt") and seed.startswith(b"PK"):
        kinds.append("zip-int")
    elif name.endswith(".safetensors"):
        kinds.append("header")
    kind = draw(st.sampled_from(kinds))
    if kind == "truncate":
        return kind, seed[: draw(st.integers(1, len(seed) - 1))]
    if kind == "flip":
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return kind, bytes(data)
    if kind == "splice":  # a range dropped or repeated
        start = draw(st.integers(0, len(seed) - 1))
        end = draw(st.integers(start, min(len(seed), start + 4096)))
        return kind, seed[:start] + (seed[start:end] * 2 if draw(st.booleans()) else b"") + seed[end:]
    if kind == "int":
        return kind, rewrite_int(seed, draw)
    if kind == "zip-int":
        return kind, rewrite_zip_pickle(seed, draw)
    return kind, rewrite_safetensors_header(seed, draw)


# --- the check every case goes through


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _alarm(signum: int, frame: object) -> None:
    raise Hang(f"a case ran longer than {HANG_SECONDS} s")


def check_case(path: Path, name: str, kind: str, marker: Path) -> None:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    start = time.perf_counter()
    try:
        load_checkpoint(path)
        outcome = "loaded"
    except CheckpointError as exc:
        message = str(exc)
        assert message and path.name in message, message
        assert not any(failure in message for failure in ALLOCATION_FAILURES), f"{kind}: {message}"
        outcome = "refused (unsafe)" if exc.refused else "refused"
        if DECLARED_TOO_MUCH in message:
            outcome = "refused (declared length beyond memory)"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    assert elapsed < CASE_SECONDS, f"{kind} case took {elapsed:.1f} s"
    assert not marker.exists(), "code from the file was executed"
    assert not {"torch_utils", "dnnlib"} & {module.split(".")[0] for module in sys.modules}
    TALLY[(name, outcome)] += 1
    TALLY[(name, "cases")] += 1
    SLOWEST[name] = max(SLOWEST.get(name, 0.0), elapsed)


SEED_NAMES = [
    "nvidia.pkl", "nvidia-proto2-views.pkl", "malicious.pkl", "tensorflow.pkl", "rosinality.pt", "rosinality-legacy.pt",
    "malicious.pt", "native.safetensors",
]  # fmt: skip


@pytest.fixture(scope="module")
def rss_baseline() -> int:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident size (VmHWM)
    except OSError:
        pytest.skip("needs Linux's /proc to measure peak memory")
    return _peak_rss()


@pytest.mark.parametrize("name", SEED_NAMES)
def test_mutated_checkpoints_load_or_are_refused(name, seeds, marker, tmp_path, memory_cap, rss_baseline):
    seed = seeds[name]
    path = tmp_path / name
    path.write_bytes(seed)
    check_case(path, name, "unmutated", marker)
    assert TALLY[(name, "loaded")] == (0 if name.startswith("malicious") else 1)

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip
    @given(case=mutated(seed, name))
    def fuzz(case: tuple[str, bytes]) -> None:
        kind, data = case
        path.write_bytes(data)
        check_case(path, name, kind, marker)

    fuzz()
    assert _peak_rss() - rss_baseline < RSS_GROWTH, f"peak memory grew by {(_peak_rss() - rss_baseline) >> 20} MiB"


def test_fuzz_tally(rss_baseline):
    """Prints the outcomes (pytest -s); each seed must have reached both outcomes' code paths."""
    lines = [f"{'seed':26} {'cases':>6} {'loaded':>7} {'refused':>8} {'unsafe':>7} {'declared':>9} {'slowest':>8}"]
    for name in SEED_NAMES:
        cases = TALLY[(name, "cases")]
        if not cases:
            pytest.skip("runs after the fuzz tests")
        outcomes = ("loaded", "refused", "refused (unsafe)", "refused (declared length beyond memory)")
        row = [TALLY[(name, outcome)] for outcome in outcomes]
        lines.append(f"{name:26} {cases:6} {row[0]:7} {row[1]:8} {row[2]:7} {row[3]:9} {SLOWEST[name]:7.2f}s")
        assert row[1] + row[2] + row[3] > 0
    lines.append(f"peak resident memory growth: {(_peak_rss() - rss_baseline) >> 20} MiB")
    print("\n" + "\n".join(lines))
