"""Read network pickles without running anything the file asks for.

A pickle is a small program: each GLOBAL names a callable that the reader looks up and calls. NVIDIA's
network pickles need only a handful of them, so this reader answers an exact list of (module, name) pairs
with stand-ins of our own (tensors are rebuilt through torch's weights-only loader, numpy values from raw
bytes, persistent network objects become inert `PersistentRecord`s whose `module_src` is never run) and
refuses everything else by name. Nothing from `dnnlib` or `torch_utils` is ever imported.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from models.checkpoints.errors import CheckpointError
from models.checkpoints.limits import check_extent


class UnsafeContent(Exception):
    """Raised while reading when the file asks for something a checkpoint never needs."""


class ForeignFormat(Exception):
    """Raised while reading when the pickle is recognisably a network of a kind GAN Studio does not read."""


# Globals that name a known network format we do not read, and what to tell the artist.
_FOREIGN_GLOBALS = {
    ("tfutil", "Network"): "it is a TensorFlow Progressive GAN (ProGAN) pickle (tfutil.Network), which GAN "
    "Studio does not read; it reads StyleGAN2 networks",
}


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict`: a dict subclass with no behaviour of its own."""


class PersistentRecord:
    """Inert stand-in for an object NVIDIA pickled through `torch_utils.persistence`.

    Holds the class name and the module's pickled `__dict__` (`state`); the accompanying source code is
    dropped unread.
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state

    def __setstate__(self, state: Any) -> None:
        raise UnsafeContent("it tries to modify a network record after building it")


class TFNetworkRecord:
    """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state (settings, variables, components)
    for `tensorflow_pkl`; its `build_module_src` is never run."""

    state: Any

    def __setstate__(self, state: Any) -> None:
        self.state = state


class NumpyDType:
    """Stand-in for `numpy.dtype(...)` in a pickle; `resolve()` gives the real dtype, for plain data only."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        if not isinstance(spec, str):
            raise UnsafeContent(f"it describes a numpy dtype with {type(spec).__name__}, not a type code")
        self.spec, self.byteorder = spec, "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        try:
            dtype = np.dtype(self.spec)
        except TypeError as exc:
            raise UnsafeContent(f"it uses an unknown numpy dtype {self.spec!r}") from exc
        if dtype.kind not in "biufcSU" or dtype.fields is not None:
            raise UnsafeContent(f"it holds numpy data of type {self.spec!r}; only plain numbers are allowed")
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


class NumpyArray:
    """Stand-in for a pickled `numpy.ndarray`; the array is rebuilt from raw bytes into `array`."""

    array: np.ndarray

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafeContent("it holds a numpy array in an unknown layout")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, NumpyDType) or not isinstance(raw, bytes):
            raise UnsafeContent("it holds a numpy array of objects; only plain numbers are allowed")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise UnsafeContent("it holds a numpy array with an invalid shape")
        flat = np.frombuffer(raw, dtype=dtype.resolve())
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy()


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> NumpyArray:
    if cls is not NumpyArray:
        raise UnsafeContent("it rebuilds a numpy array of a class other than numpy.ndarray")
    return NumpyArray()


def _numpy_scalar(dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, NumpyDType) or not isinstance(data, bytes):
        raise UnsafeContent("it holds a numpy scalar of objects; only plain numbers are allowed")
    resolved = dtype.resolve()
    if len(data) != resolved.itemsize:
        raise ValueError(f"a numpy {resolved} scalar has {len(data)} bytes")
    return np.frombuffer(data, dtype=resolved)[0].copy()


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it to store bytes; any other use is refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeContent(f"it calls _codecs.encode with {encoding!r}; pickles store bytes with 'latin1'")
    return text.encode("latin1")


def _persistent_record(meta: Any) -> PersistentRecord:
    """Stand-in for `torch_utils.persistence._reconstruct_persistent_obj`: keeps the state, never the code."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafeContent("it holds a persistent object that is not a pickled class instance")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise UnsafeContent("it holds a persistent object without a class name and state")
    return PersistentRecord(class_name, state)


def _rebuild_tensor(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2` on checked arguments; backward hooks and metadata are dropped."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafeContent(f"it builds a tensor from a {type(storage).__name__} instead of a storage")
    ints = [offset, *size, *stride] if isinstance(size, tuple) and isinstance(stride, tuple) else None
    if ints is None or len(size) != len(stride) or not all(type(n) is int and n >= 0 for n in ints):
        raise ValueError("a tensor has an invalid offset, size or stride")
    # Checked here because torch would grow the storage to fit (uninitialised memory, of any size asked).
    check_extent("a tensor", storage._size(), offset, size, stride)  # _size: size() warns of TypedStorage
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafeContent(f"it builds a parameter from a {type(data).__name__} instead of a tensor")
    return data


def _load_storage(data: Any) -> torch.storage.TypedStorage:
    """`torch.storage._load_from_bytes`: the bytes are a legacy `torch.save` of one storage."""
    if not isinstance(data, bytes):
        raise UnsafeContent(f"it loads a storage from a {type(data).__name__} instead of bytes")
    claimed = _StorageClaims.bytes_claimed(data)
    if claimed > len(data):  # torch would allocate the claimed size before finding the bytes missing
        raise ValueError(f"a storage claims {claimed:,} bytes but only {len(data):,} are stored")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation: these files hold them
        storage = weights_only_load(io.BytesIO(data))
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafeContent(f"its storage bytes hold a {type(storage).__name__}, not a storage")
    return storage


class _Opcodes(dict):
    """An unpickler's opcode table that names an unknown opcode instead of raising a bare KeyError."""

    def __missing__(self, opcode: int) -> Callable[..., Any]:
        raise pickle.UnpicklingError(f"invalid opcode {bytes([opcode])!r}")


def _refuse_buffers(unpickler: pickle._Unpickler) -> None:
    raise UnsafeContent("it holds protocol-5 buffers (a bytearray or out-of-band data); network pickles never do")


class _PickleReader(pickle._Unpickler):
    """Python's unpickler without protocol 5's buffer opcodes (BYTEARRAY8, NEXT_BUFFER, READONLY_BUFFER).

    Network pickles never use them. With damaged pickles that did, CPython 3.11 printed "deallocated bytearray
    object has exported buffers" from a later garbage collection (the memoryview bugs of gh-77894, by all
    appearances): in 4 runs of 3000 fuzzed TensorFlow pickles out of 4, in none once they were refused. The C
    unpickler cannot refuse an opcode; the Python one costs per opcode, and weights are a few large ones (a
    186 MiB StyleGAN2 pickle: 0.28 s against the C one's 0.34 s).
    """

    _BUFFER_OPCODES = (pickle.BYTEARRAY8[0], pickle.NEXT_BUFFER[0], pickle.READONLY_BUFFER[0])
    dispatch = _Opcodes({**pickle._Unpickler.dispatch, **dict.fromkeys(_BUFFER_OPCODES, _refuse_buffers)})

    def __init__(self, file: IO[bytes]):
        super().__init__(_ExactReads(file))


class _ExactReads:
    """A file whose `read(n)` gives n bytes or raises EOFError, as the C unpickler treats a short read: the
    Python one would go on and fail later with a message about something else."""

    def __init__(self, file: IO[bytes]):
        self.file, self.readline = file, file.readline

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        if 0 < size and len(data) < size:
            raise EOFError
        return data


_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
}  # fmt: skip


class _StorageClaims(_PickleReader):
    """Reads the pickles of a legacy `torch.save` stream only for the sizes its storages claim; builds nothing."""

    def __init__(self, file: IO[bytes]):
        super().__init__(file)
        self.nbytes = 0

    @classmethod
    def bytes_claimed(cls, data: bytes) -> int:
        reader = cls(io.BytesIO(data))
        for _ in range(4):  # magic number, protocol version, system info, then the storage itself
            reader.load()
        return reader.nbytes

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_ITEMSIZE:
            return name
        raise UnsafeContent(f"its storage bytes reference {module}.{name}, which a storage never needs")

    def persistent_load(self, pid: Any) -> Any:
        # ("storage", type, key, location, numel, view metadata)
        valid = isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[1] in _STORAGE_ITEMSIZE
        if not valid or type(pid[4]) is not int or pid[4] < 0:
            raise UnsafeContent("its storage bytes hold a record that is not a storage")
        self.nbytes += _STORAGE_ITEMSIZE[pid[1]] * pid[4]


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,  # the spelling of protocol-2 pickles
    ("_codecs", "encode"): _latin1_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): NumpyDType,
    ("numpy", "ndarray"): NumpyArray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class RestrictedUnpickler(_PickleReader):
    """An unpickler that resolves only `ALLOWED_GLOBALS` and refuses persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _FOREIGN_GLOBALS:
            raise ForeignFormat(_FOREIGN_GLOBALS[(module, name)])
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            reason = f"it references {module}.{name}, which a network pickle never needs"
            raise UnsafeContent(reason) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeContent("it asks for an external object (a persistent id); network pickles never do")


def restricted_load(path: Path, file: IO[bytes]) -> Any:
    """Unpickle `file` with `RestrictedUnpickler`; every failure becomes a `CheckpointError` naming `path`."""
    try:
        return RestrictedUnpickler(file).load()
    except UnsafeContent as exc:
        raise CheckpointError(path, str(exc), refused=True) from None
    except ForeignFormat as exc:
        raise CheckpointError(path, str(exc)) from None
    except EOFError:
        raise CheckpointError(path, "the pickle ends early: the file is truncated") from None
    except CheckpointError:
        raise
    except MemoryError:  # Python's unpickler allocates what a length field declares before reading it
        reason = "it asks for more memory than there is (a damaged length field, or too little memory)"
        raise CheckpointError(path, reason) from None
    except Exception as exc:
        raise CheckpointError(path, f"the pickle is corrupt ({type(exc).__name__}: {exc})") from None


class BoundedReader(io.BufferedReader):
    """A file whose reads never ask for more than the bytes left. Python-level unpicklers (torch's weights-only
    one) read what a length field declares, and a buffered read allocates the whole request before reading."""

    def __init__(self, path: Path):
        super().__init__(io.FileIO(path, "rb"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(self._size - self.tell(), 0))
        return super().read(size)


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def weights_only_load(file: IO[bytes] | Path, extra_globals: tuple[type, ...] = ()) -> Any:
    """`torch.load(weights_only=True)` on the CPU; a refusal becomes `UnsafeContent` naming the global."""
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise
        if found := _REFUSED_GLOBAL.search(text):
            raise UnsafeContent(f"it references {found.group(1)}, which a checkpoint never needs") from None
        detail = next((line.strip() for line in text.splitlines() if "Unsupported" in line), "")
        detail = detail or "weights-only load failed"
        raise UnsafeContent(f"it holds more than tensors and plain data ({detail})") from None


_MAX_SETTINGS_VALUES = 100_000  # far beyond any network's settings; a pickle's shared references could
_MAX_SETTINGS_DEPTH = 32  # otherwise unfold a few hundred bytes into 2**100 values


def to_plain(value: Any, where: str) -> Any:
    """Recorded settings as JSON-ready Python (dicts, lists, numbers, strings); anything else is refused."""
    budget = _MAX_SETTINGS_VALUES

    def plain(value: Any, where: str, depth: int) -> Any:
        nonlocal budget
        budget -= 1
        if budget < 0 or depth > _MAX_SETTINGS_DEPTH:
            raise ValueError(f"{where} holds more values, or nests deeper, than settings ever do")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ValueError(f"{where} has non-text keys")
            return {k: plain(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, where, depth + 1) for v in value]
        raise ValueError(f"{where} holds a {type(value).__name__}, where settings hold plain values")

    return plain(value, where, 0)
