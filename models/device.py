"""One place that picks the compute device and precision (CUDA > MPS > CPU, overridable)."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import sys
from pathlib import Path

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# torch.compile, for the display path (studio.engine.session) and training (training.compiled): "0" never, "1"
# wherever a C++ compiler is found, unset where it was measured to pay.
COMPILE_ENV = "GAN_STUDIO_COMPILE"
CXX_COMPILERS = ("c++", "g++", "clang++", "cl")  # what inductor's C++ builder calls on Linux, macOS, Windows


def select_device(preference: str | None = None) -> torch.device:
    """`preference` is 'auto'/None, 'cpu', 'cuda', 'cuda:1', 'mps'; an unavailable choice is a clear error."""
    if preference in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but Apple's Metal (MPS) is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {preference!r}: use auto, cpu, cuda or mps")
    return device


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AMX or AVX-512 BF16); elsewhere bf16 is emulated and slow.

    Measured on an AMD EPYC without those units: a bf16-autocast 3×3 convolution ran 10-200× slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep the memory of freed tensors for the next step or frame instead of returning it to the system.

    By default glibc hands large blocks back when they are freed (unmapping them, or trimming the heap's top), so
    every training step or render page-faults its activations in again. Keeping them halved a CPU training
    process's page faults and sped the bundled model's projected-D (`finetune-fast`) step up 1.06× in bf16 and
    1.12× in fp32 (StyleGAN D's: 0.99×; benchmarks/train.py --compare), and the display path's 1024² frame 1.2×
    in both precisions (256²: 1.00-1.04×; benchmarks/render.py). The process's memory stays at its peak, which
    it reaches every step or frame anyway. False where this is not glibc (macOS, Windows, musl); process-wide,
    so it is done once."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def compiling_unavailable() -> str | None:
    """Why this process cannot use torch.compile at all (turned off, no C++ compiler), or None if it can try."""
    if os.environ.get(COMPILE_ENV) == "0":
        return f"turned off ({COMPILE_ENV}=0)"
    if getattr(sys, "frozen", False):  # the bundle leaves out torch's C++ headers, and ships no compiler
        return "the packaged app cannot compile C++"
    if not any(shutil.which(name) for name in CXX_COMPILERS):
        return "no C++ compiler found"
    return None


def select_precision(device: torch.device, preference: str | None = None) -> torch.dtype | None:
    """The autocast dtype for `device` (None means plain fp32); `preference` is auto/fp32/bf16/fp16."""
    if preference not in (None, "", "auto"):
        if preference not in PRECISIONS:
            raise ValueError(f"unknown precision {preference!r}: use auto, fp32, bf16 or fp16")
        dtype = PRECISIONS[preference]
        if dtype is torch.float16 and device.type == "cpu":
            raise ValueError("fp16 is not supported on the CPU: use bf16 or fp32")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """An autocast context for `dtype`, disabled for fp32."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """A short label for the status bar, e.g. 'CPU · fp32' or 'CUDA (NVIDIA H200) · bf16'."""
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    label = device.type.upper()
    if device.type == "cuda":
        label += f" ({torch.cuda.get_device_name(device)})"
    return f"{label} · {names.get(dtype, str(dtype))}"
