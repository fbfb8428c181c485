"""The Train panel's recipe choice: Auto (what `recommend_recipe` picks for this start and dataset, and
why) or one of the training presets by an artist-readable name."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel

from training.config import AUTO_PRESET, DEFAULT_FINETUNE_RECIPE, FEW_IMAGES, recommend_recipe

# Each preset's name in the panel, what it does in a line (the note under the combo), and more (its tooltip).
RECIPES: dict[str, tuple[str, str, str]] = {
    "scratch": (
        "From scratch",
        "StyleGAN2-ADA's recipe.",
        "StyleGAN discriminator, adaptive augmentation (ADA), R1 and path-length regularisation.",
    ),
    "finetune": (
        "Fine-tune",
        "The base model's own discriminator goes on learning, with adaptive augmentation.",
        "Learning rates lowered for a pretrained start; ADA raises augmentation as far as the dataset needs.",
    ),
    "finetune-fast": (
        "Fine-tune, projected D",
        "A fresh discriminator looking through a frozen image-recognition network.",
        "EfficientNet-Lite0 features, DiffAugment's translations, hinge loss: in our measurements it came closer "
        "to the data in the same CPU time than the model's own discriminator.",
    ),
    "finetune-gentle": (
        "Gentle fine-tune",
        "Lower rates; the discriminator's first two blocks frozen.",
        "A frozen discriminator cannot memorise a small dataset as fast.",
    ),
    "finetune-few": (
        "Few-image fine-tune",
        "Lower rates; the discriminator's first blocks and the generator's mapping frozen.",
        "The model keeps its latent space and changes how it draws; the discriminator cannot memorise the few "
        "images as fast; adaptive augmentation.",
    ),
}


class RecipeChoice:
    """A combo (Auto, which says what it picked, then the recipes that fit the start: from scratch or from a
    model) and a note under it: why Auto picked its recipe, or what the chosen one does (more in the tooltips)."""

    def __init__(self):
        self.combo = QComboBox()
        self.combo.currentIndexChanged.connect(lambda _i: self._explain())
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: palette(mid);")
        # Two lines, always: a form row measures a wrapped label at some narrower width and keeps that height.
        self.note.setFixedHeight(2 * self.note.fontMetrics().lineSpacing() + 6)
        self.note.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self._auto = recommend_recipe(True, 0)
        self._scratch: bool | None = None
        self._auto_note = ""

    def update(self, scratch: bool, images: int | None) -> None:
        """Re-decide Auto for this start and dataset size (None: no dataset chosen); list the recipes that fit,
        keeping the artist's choice where it still does."""
        self._auto = recommend_recipe(scratch, images or 0)
        if scratch != self._scratch:
            self._scratch = scratch
            chosen = self.combo.currentData()
            self.combo.blockSignals(True)
            self.combo.clear()
            self.combo.addItem("", AUTO_PRESET)
            for name, (label, line, more) in RECIPES.items():
                if (name == "scratch") == scratch:
                    self.combo.addItem(label, name)
                    self.combo.setItemData(self.combo.count() - 1, f"{line} {more}", Qt.ItemDataRole.ToolTipRole)
            self.combo.setCurrentIndex(max(self.combo.findData(chosen), 0))
            self.combo.blockSignals(False)
        label, line, more = RECIPES[self._auto.preset]
        if images is None and not scratch:  # a fine-tune's recipe depends on the dataset's size
            self.combo.setItemText(0, "Auto (by the dataset's size)")
            self._auto_note = (
                f"By the dataset's size: under {FEW_IMAGES} images the few-image fine-tune, else "
                f"\"{RECIPES[DEFAULT_FINETUNE_RECIPE][0]}\"."
            )
            tip = self._auto_note
        else:
            size = "" if scratch else f" ({images:,} images)"
            self.combo.setItemText(0, f"Auto: {label[0].lower()}{label[1:]}{size}")
            self._auto_note = f"Picked for {self._auto.reason}."
            tip = f"{self._auto_note}\n{line} {more}"
        self.combo.setItemData(0, tip, Qt.ItemDataRole.ToolTipRole)
        self._explain()

    def _auto_chosen(self) -> bool:
        return self.combo.currentData() in (None, AUTO_PRESET)

    def _explain(self) -> None:
        self.combo.setToolTip(self.combo.itemData(self.combo.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")
        self.note.setText(self._auto_note if self._auto_chosen() else RECIPES[self.combo.currentData()][1])

    def preset(self) -> str:
        """The chosen recipe: Auto's pick, or the artist's."""
        return self._auto.preset if self._auto_chosen() else self.combo.currentData()

    def reason(self) -> str:
        return self._auto.reason if self._auto_chosen() else "chosen in the Train panel"
