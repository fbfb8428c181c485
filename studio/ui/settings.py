"""Persistent UI settings: an INI file under the engine's user data folder, so GAN_STUDIO_HOME isolates it."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from studio.engine.paths import user_data_dir

THEME = "ui/theme"
GEOMETRY = "ui/geometry"
WINDOW_STATE = "ui/window_state"
SHOW_PIXELS = "ui/show_pixels"
LAST_MODEL = "library/last_model"
DEVICE = "engine/device"
PRECISION = "engine/precision"


def app_settings() -> QSettings:
    """A fresh handle on the settings file (cheap; QSettings caches and syncs the file itself)."""
    return QSettings(str(user_data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def favourites_key(model_id: str) -> str:
    return f"favourites/{model_id}"


def state_key(model_id: str) -> str:
    """The render state a model showed last, restored when it is opened again."""
    return f"last_state/{model_id}"
