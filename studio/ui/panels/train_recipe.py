"""The Train panel's recipe choice: Auto (what `recommend_recipe` picks for this start, dataset and device, and
why) or one of the training presets by an artist-readable name."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel

from training.config import AUTO_PRESET, recommend_recipe

# Each preset's name in the panel and what it does, in the artist's terms.
RECIPES: dict[str, tuple[str, str]] = {
    "scratch": (
        "From scratch",
        "StyleGAN2-ADA's recipe: StyleGAN discriminator, adaptive augmentation (ADA), R1 and path-length "
        "regularisation.",
    ),
    "finetune": (
        "Fine-tune",
        "The base model's own StyleGAN discriminator goes on learning with it; adaptive augmentation (ADA) "
        "against overfitting; rates lowered for a pretrained start.",
    ),
    "finetune-fast": (
        "Fine-tune, projected D",
        "A fresh discriminator judging the images through a frozen image-recognition network (EfficientNet-Lite0) "
        "with DiffAugment: moves further in the first minutes, but may drift in colour.",
    ),
    "finetune-gentle": (
        "Gentle fine-tune",
        "Lower rates and the discriminator's first two blocks frozen, so it cannot memorise a small dataset as "
        "fast.",
    ),
    "finetune-few": (
        "Few-image fine-tune",
        "Lower rates, the discriminator's first two blocks and the generator's "
        "mapping network frozen (the model keeps its latent space and changes how it draws), ADA.",
    ),
}


class RecipeChoice:
    """A combo (Auto, which says what it picked, then the recipes that fit the start: from scratch or from a
    model) and a note under it saying why Auto picked it, or what the chosen recipe does."""

    def __init__(self):
        self.combo = QComboBox()
        self.combo.currentIndexChanged.connect(lambda _i: self._explain())
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid);")
        self._auto = recommend_recipe(True, 0, "cpu", None)
        self._scratch: bool | None = None

    def update(self, scratch: bool, images: int | None, device_type: str, budget_s: float | None) -> None:
        """Re-decide Auto for this start, dataset size (None: no dataset chosen) and device; list the recipes that
        fit, keeping the artist's choice where it still does."""
        self._auto = recommend_recipe(scratch, images or 0, device_type, budget_s)
        if scratch != self._scratch:
            self._scratch = scratch
            chosen = self.combo.currentData()
            self.combo.blockSignals(True)
            self.combo.clear()
            self.combo.addItem("", AUTO_PRESET)
            for name, (label, tip) in RECIPES.items():
                if (name == "scratch") == scratch:
                    self.combo.addItem(label, name)
                    self.combo.setItemData(self.combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            self.combo.setCurrentIndex(max(self.combo.findData(chosen), 0))
            self.combo.blockSignals(False)
        label = RECIPES[self._auto.preset][0]
        if scratch:
            text = f"Auto: {label.lower()}"
        elif images is None:  # a fine-tune's recipe depends on the dataset's size
            text = "Auto (by the dataset's size)"
        else:
            text = f"Auto: {label[0].lower()}{label[1:]} ({images:,} images)"
        self.combo.setItemText(0, text)
        reason, what = self._auto.reason, RECIPES[self._auto.preset][1]
        self.combo.setItemData(
            0, f"Picked for {reason}. {what}" if scratch or images is not None else
            "Chosen by the dataset's size: the few-image recipe under 100 images, else the default fine-tune.",
            Qt.ItemDataRole.ToolTipRole,
        )
        self._explain()

    def _explain(self) -> None:
        text = self.combo.itemData(self.combo.currentIndex(), Qt.ItemDataRole.ToolTipRole) or ""
        self.combo.setToolTip(text)
        self.note.setText(text)

    def preset(self) -> str:
        """The chosen recipe: Auto's pick, or the artist's."""
        chosen = self.combo.currentData()
        return self._auto.preset if chosen in (None, AUTO_PRESET) else chosen

    def reason(self) -> str:
        return self._auto.reason if self.combo.currentData() in (None, AUTO_PRESET) else "chosen in the Train panel"
