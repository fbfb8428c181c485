"""Help ▸ About and Help ▸ Licences: what this is, and whose work it stands on."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from studio.engine.paths import resources_dir
from studio.engine.recipe import app_version
from studio.ui.theme import app_icon

# (component, licence, what it does here); the app itself is MIT (pyproject.toml).
COMPONENTS = (
    ("GAN Studio", "MIT", "this application"),
    ("StyleGAN2 architecture", "NVIDIA Source Code License (network design; our implementation is MIT)",
     "the generator and discriminator"),
    ("PyTorch", "BSD-3-Clause", "tensor computation on CUDA, MPS and CPU"),
    ("Qt / PySide6", "LGPL-3.0", "the user interface"),
    ("QDarkStyle", "MIT", "the dark and light themes"),
    ("NumPy", "BSD-3-Clause", "image arrays"),
    ("Pillow", "MIT-CMU (HPND)", "image files"),
    ("safetensors", "Apache-2.0", "the model file format"),
    ("platformdirs", "MIT", "where user data lives"),
    ("imageio, imageio-ffmpeg", "BSD-2-Clause; FFmpeg is LGPL/GPL", "video export"),
)


def show_about(parent: QWidget) -> None:
    box = QMessageBox(parent)
    box.setWindowTitle("About GAN Studio")
    box.setIconPixmap(app_icon().pixmap(96, 96))
    box.setText(f"<h3>GAN Studio {app_version()}</h3>")
    box.setInformativeText(
        "Train, fine-tune and play with your own StyleGAN2 generators on CUDA, Apple MPS or the CPU.<br><br>"
        "Drop a checkpoint on the window to start; every exported PNG carries the recipe that made it."
    )
    box.exec()


def licences_html() -> str:
    rows = "".join(
        f"<tr><td><b>{name}</b></td><td>{licence}</td><td>{use}</td></tr>"
        for name, licence, use in COMPONENTS
    )
    text = f"<h3>Licences</h3><table cellspacing='6'>{rows}</table>"
    cards = sorted((resources_dir() / "models").glob("*.md"))
    for card in cards:  # the bundled model's card states its own licence and training data
        body = html.escape(card.read_text())
        text += f"<h3>Bundled model: {card.stem}</h3><pre style='white-space: pre-wrap'>{body}</pre>"
    return text


def show_licences(parent: QWidget) -> None:
    dialog = QDialog(parent)
    dialog.setWindowTitle("Licences")
    dialog.resize(640, 480)
    text = QTextBrowser()
    text.setOpenExternalLinks(True)
    text.setHtml(licences_html())
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.exec()

