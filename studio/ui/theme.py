"""The look of the app: qdarkstyle's dark (default) or light theme, the app icon, and the palette our own
widgets paint with, so custom drawing follows the chosen theme."""

from __future__ import annotations

import qdarkstyle
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from studio.engine.paths import resources_dir

THEMES = ("dark", "light")

# A few additions to qdarkstyle: a roomier canvas background, the message bar, and muted hint text.
_EXTRA_QSS = """
QLabel#hint {{ color: {muted}; }}
QLabel#emptyTitle {{ font-size: 20pt; font-weight: 600; }}
QLabel#emptyBody {{ font-size: 11pt; color: {muted}; }}
QFrame#messageBar {{ border-radius: 4px; }}
QFrame#messageBar QLabel, QFrame#messageBar QToolButton {{ background: transparent; border: none; }}
QFrame#messageBar[level="error"] {{ background: {error_bg}; border: 1px solid {error_border}; }}
QFrame#messageBar[level="info"] {{ background: {info_bg}; border: 1px solid {info_border}; }}
QScrollArea#canvas, QScrollArea#canvas > QWidget > QWidget {{ background: {canvas}; }}
QDockWidget::title {{ padding-left: 8px; }}
"""


def theme_palette(name: str) -> type:
    """The qdarkstyle palette class for `name` ('dark' or 'light')."""
    return qdarkstyle.LightPalette if name == "light" else qdarkstyle.DarkPalette


def apply_theme(app: QApplication, name: str) -> None:
    """Style the whole application; unknown names fall back to dark."""
    palette = theme_palette(name)
    dark = palette is qdarkstyle.DarkPalette
    extra = _EXTRA_QSS.format(
        muted=palette.COLOR_TEXT_3,
        error_bg="#4a2024" if dark else "#fde2e1",
        error_border="#a4434b" if dark else "#e0898c",
        info_bg=palette.COLOR_ACCENT_1,
        info_border=palette.COLOR_ACCENT_3,
        canvas="#10161c" if dark else "#e9ebed",
    )
    app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6", palette=palette) + extra)
    app.setProperty("ganStudioTheme", name if name in THEMES else "dark")


def app_icon() -> QIcon:
    return QIcon(str(resources_dir() / "icons" / "gan-studio.svg"))
