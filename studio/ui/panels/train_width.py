"""The Train panel's network-width choice for from-scratch runs: automatic (sized for the device) or StyleGAN2's
full width, with an honest estimate of what each costs on this machine."""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from training.config import CPU_REFERENCE_IMAGES_PER_S, NetworkWidth, auto_width, estimate_images_per_s, full_width

AUTO, FULL = "auto", "full"


def describe_width(width: NetworkWidth) -> str:
    return f"{width.channel_max} channels at most, z/w {width.z_dim}"


def per_kimg(images_per_s: float) -> str:
    minutes = 1000 / images_per_s / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


class WidthChoice(QWidget):
    """A combo (automatic or full width) and a note on what the choice costs on this device."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.addItem("Automatic (sized for this device)", AUTO)
        self.combo.addItem("Full (StyleGAN2)", FULL)
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.note)

    def width(self, resolution: int, dataset_size: int, device_type: str) -> NetworkWidth:
        if self.combo.currentData() == FULL:
            return full_width(resolution)
        return auto_width(resolution, dataset_size, device_type)

    def options(self, resolution: int, dataset_size: int, device_type: str) -> dict[str, Any]:
        """The TrainConfig fields for the choice: none for automatic (the run chooses and records it)."""
        if self.combo.currentData() != FULL:
            return {}
        return dataclasses.asdict(full_width(resolution))

    def update_note(self, resolution: int, dataset_size: int, device_type: str, precision: str) -> None:
        """Say what the chosen width is and, on a CPU, about how fast it trains (estimated from the speed measured
        at the bundled model's width, scaled by the work per image)."""
        width = self.width(resolution, dataset_size, device_type)
        text = describe_width(width)
        if device_type == "cpu":
            rate = estimate_images_per_s(width, resolution, precision)
            text += (
                f"; on a 2-core CPU about {rate:.2g} img/s, 1 kimg ≈ {per_kimg(rate)} (estimated from "
                f"{CPU_REFERENCE_IMAGES_PER_S[precision]:g} img/s measured at the bundled model's width, {precision})"
            )
        self.note.setText(text)
        full = self.combo.currentData() == FULL and device_type == "cpu"
        self.note.setStyleSheet("color: #e0a030;" if full else "")
