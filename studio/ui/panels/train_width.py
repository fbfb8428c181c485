"""The Train panel's network-width choice for from-scratch runs: automatic (sized for the device) or StyleGAN2's
full width, with an honest estimate of what each costs on this machine."""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtWidgets import QComboBox, QLabel

from training.config import CPU_REFERENCE_IMAGES_PER_S, NetworkWidth, auto_width, estimate_images_per_s, full_width
from training.pace import per_kimg, rate_text

AUTO, FULL = "auto", "full"


def describe_width(width: NetworkWidth) -> str:
    return f"{width.channel_max} channels at most, z/w {width.z_dim}"


class WidthChoice:
    """A combo (automatic or full width) and a note on what the choice costs on this device: two rows of the
    panel's form, the note spanning it so that it wraps."""

    def __init__(self):
        self.combo = QComboBox()
        self.combo.addItem("Automatic (sized for this device)", AUTO)
        self.combo.addItem("Full (StyleGAN2)", FULL)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setMinimumHeight(2 * self.note.fontMetrics().lineSpacing() + 4)  # a form row won't grow for a wrap

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
            text += f" · about {rate_text(rate)} img/s on 2 CPU cores: 1 kimg ≈ {per_kimg(rate)}"
        self.note.setText(text)
        self.note.setToolTip(
            f"Estimated from {CPU_REFERENCE_IMAGES_PER_S[precision]:g} img/s measured at the bundled model's width "
            f"({precision}, 64 px, 2 cores), scaled by each width's work per image"
            if device_type == "cpu"
            else ""
        )
        full = self.combo.currentData() == FULL and device_type == "cpu"
        self.note.setStyleSheet("color: #e0a030;" if full else "")
