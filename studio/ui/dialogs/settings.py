"""Preferences: theme (applied at once) and the compute device and precision (applied on the next load)."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QWidget

from studio.ui import settings
from studio.ui.theme import THEMES, apply_theme

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class SettingsDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        store = settings.app_settings()
        self._initial = (
            str(store.value(settings.DEVICE, "auto")), str(store.value(settings.PRECISION, "auto"))
        )
        self.theme = self._combo(THEMES, str(store.value(settings.THEME, "dark")))
        self.device = self._combo(DEVICES, self._initial[0])
        self.precision = self._combo(PRECISIONS, self._initial[1])
        note = QLabel("Auto picks CUDA, then Apple MPS, then the CPU, and the precision each does fastest.")
        note.setObjectName("hint")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Theme", self.theme)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow(note)
        form.addRow(buttons)

    @staticmethod
    def _combo(choices: tuple[str, ...], current: str) -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(choices))
        combo.setCurrentIndex(max(combo.findText(current), 0))
        return combo

    def accept(self) -> None:
        store = settings.app_settings()
        store.setValue(settings.THEME, self.theme.currentText())
        store.setValue(settings.DEVICE, self.device.currentText())
        store.setValue(settings.PRECISION, self.precision.currentText())
        store.sync()
        apply_theme(QApplication.instance(), self.theme.currentText())
        super().accept()

    def engine_changed(self) -> bool:
        """Whether the open model must be reloaded for the new device or precision to take effect."""
        return (self.device.currentText(), self.precision.currentText()) != self._initial
