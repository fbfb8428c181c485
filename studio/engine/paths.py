"""Where per-user data and shipped resources live; the one place that knows those folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

HOME_ENV = "GAN_STUDIO_HOME"


def user_data_dir() -> Path:
    """`$GAN_STUDIO_HOME` if set (tests, portable installs), else the platform's per-user data folder."""
    override = os.environ.get(HOME_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir("GAN Studio", "GAN Studio"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Files that can be rebuilt, but at a cost (compiled code): `$GAN_STUDIO_HOME/cache` if set, else the
    platform's per-user cache folder, named without a space (e.g. ~/.cache/gan-studio): torch.compile hands the
    paths in it to the C++ compiler unquoted, and in "GAN Studio" every compile failed."""
    override = os.environ.get(HOME_ENV)
    path = Path(override) / "cache" if override else Path(platformdirs.user_cache_dir("gan-studio", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resources_dir() -> Path:
    """The shipped `resources/` folder: next to the packages in a checkout, inside the bundle when frozen."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    root = Path(frozen_root) if frozen_root else Path(__file__).resolve().parents[2]
    return root / "resources"


def bundled_model_path() -> Path | None:
    """The model shipped with the app (first `resources/models/*.safetensors`), or None when none is."""
    return next(iter(sorted((resources_dir() / "models").glob("*.safetensors"))), None)
