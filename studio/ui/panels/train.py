"""Train panel: fine-tune a library model (or start from scratch) on a saved dataset, watch it learn, pause,
resume, and take any snapshot to Explore or the library.

The run is `python -m training … --events jsonl` in a QProcess (the command headless users run); the
panel knows only its JSON events and its run folder, so a crash in training never takes the app down.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QProcess, QProcessEnvironment, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from models.device import select_device
from studio.engine.datasets import DatasetError, DatasetStore
from studio.engine.runs import (
    PRESETS,
    ConfigError,
    EventReader,
    RunInfo,
    cpu_finetune_images_per_s,
    cpu_training_precision,
    format_kimg,
    list_runs,
    new_run_dir,
    read_run,
    request_stop,
    rerun_options,
    resume_command,
    snapshot_name,
    train_command,
)
from studio.ui.controller import StudioController
from studio.ui.panels.train_recipe import RecipeChoice
from studio.ui.panels.train_width import WidthChoice
from studio.ui.widgets.charts import LineChart
from studio.ui.workers import TaskRunner
from training.config import PRESETS as RECIPE_VALUES
from training.config import TrainConfig
from training.pace import per_kimg, rate_text

SCRATCH = "scratch"
CUSTOM_LENGTH = "custom"  # the Length choice that takes kimg from Advanced instead of a time budget
SMALL_DATASET = 1000
LEAKING_P = 0.8
RESOLUTION_RATIO = 2  # base and dataset this many times apart: the dataset gets resampled a lot
STDERR_TAIL = 4000
RUN_LABELS = {"stopped": "paused"}  # run statuses as the past-runs list words them, where they differ
# The Advanced options a recipe sets: they show its values, and follow a change of recipe until the artist edits
# them (an edit wins over every recipe).
RECIPE_FIELDS = ("g_lr", "d_lr", "aug", "freeze_d")


def recipe_values(preset: str) -> dict[str, Any]:
    """The values of RECIPE_FIELDS a run of `preset` gets: the preset's own, else TrainConfig's defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in RECIPE_FIELDS}
    return {**defaults, **{k: v for k, v in RECIPE_VALUES[preset].items() if k in RECIPE_FIELDS}}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class TrainPanel(QWidget):
    open_checkpoint = Signal(object, str)  # Path of a network file to import and open in Explore, and its name
    library_changed = Signal()

    def __init__(self, controller: StudioController, datasets: DatasetStore, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.library = controller.library
        self.datasets = datasets
        self.tasks = TaskRunner(max_threads=1, parent=self)
        self.overrides: dict[str, Any] = {}  # TrainConfig fields applied last (network size: tests, experts)
        self.runs_root: Path | None = None  # where runs go and are listed from; None: the user data folder
        self.environment: dict[str, str] = {}  # added to the training process's environment
        self.process: QProcess | None = None
        self.run_dir: Path | None = None  # the run running or on show
        self.failure: str | None = None  # why the last run failed, as shown
        self.events: list[dict[str, Any]] = []  # of the run on show, since the panel showed it
        self._reader = EventReader()
        self._error: str | None = None
        self._stderr = ""
        self._pausing = False
        self._warned_p = False
        self._samples: list[tuple[float, Path]] = []
        self._checkpoints: list[tuple[float, Path]] = []
        self._choice_notes: list[str] = []  # warnings about the choices, until a run starts
        self._run_notes: list[str] = []  # warnings of the run on show (its own, and augment p)
        self._base_pick: str | None = None  # the base the artist chose; until then it follows Explore's model
        self._edited: set[str] = set()  # RECIPE_FIELDS the artist changed: they no longer follow the recipe
        # Measured CPU fine-tuning speeds of StyleGAN3 bases, by (library id, precision): img/s, or None while
        # measuring, or the error text of a measurement that failed.
        self._cpu_speeds: dict[tuple[str, str], float | str | None] = {}
        self.sample_image = QImage()

        # The content scrolls when the dock is shorter than it needs (a wrapped warning, five charts), instead
        # of squeezing the charts below their size; taller, the sample grid takes the extra height.
        content = QWidget()
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addWidget(self._setup_box())
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #e0a030;")
        layout.addWidget(self.warnings)
        # Offered when a resumed run's images changed at their source: the run goes on with its own copy.
        self.rerun_button = QPushButton("New run on the images as they are now")
        self.rerun_button.clicked.connect(self.rerun)
        self.rerun_button.setVisible(False)
        layout.addWidget(self.rerun_button)
        layout.addLayout(self._controls())
        layout.addWidget(self._progress_box())
        layout.addWidget(self._samples_box(), 1)
        layout.addWidget(self._snapshots_box())
        layout.addWidget(self._runs_box())

        controller.model_changed.connect(self.refresh_bases)
        self.refresh_bases()
        self.refresh_datasets()
        self.refresh_runs()
        self._update_buttons()

    # --- construction -----------------------------------------------------------------------------------

    def _setup_box(self) -> QGroupBox:
        self.base = QComboBox()
        self.base.currentIndexChanged.connect(lambda _i: self._base_picked())
        self.dataset = QComboBox()
        self.dataset.setPlaceholderText("Save a dataset in the Dataset panel first")
        self.dataset.currentIndexChanged.connect(lambda _i: self._choices_changed())
        self.preset = QComboBox()
        for name, seconds in PRESETS.items():
            self.preset.addItem(name, seconds)
        self.preset.addItem("Custom (kimg, in Advanced)", CUSTOM_LENGTH)
        self.preset.setCurrentIndex(1)
        self._length_tip = (
            "Time on this machine: the run measures its speed over its first seconds, then fixes its length in "
            "kimg (thousands of images shown to the discriminator)"
        )
        self.preset.setToolTip(self._length_tip)
        self.preset.currentIndexChanged.connect(lambda _i: self._length_changed())
        self.custom_kimg = QDoubleSpinBox(decimals=1, minimum=0.1, maximum=100_000, value=100, suffix=" kimg")
        self.custom_kimg.setEnabled(False)
        self.advanced_toggle = QToolButton(text="Advanced", checkable=True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced = QWidget()
        self.advanced_toggle.toggled.connect(self._toggle_advanced)

        self.g_lr = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=0.05, singleStep=0.0005, prefix="G ")
        self.d_lr = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=0.05, singleStep=0.0005, prefix="D ")
        rates = QWidget()
        rates_row = QHBoxLayout(rates)
        rates_row.setContentsMargins(0, 0, 0, 0)
        rates_row.addWidget(self.g_lr)
        rates_row.addWidget(self.d_lr)
        self.batch = QSpinBox(minimum=1, maximum=256, value=16)
        self.batch.valueChanged.connect(lambda _v: self._update_lengths())
        self.aug = QComboBox()
        for value, text in (("ada", "ADA (adaptive)"), ("diffaug", "DiffAugment"), ("none", "None")):
            self.aug.addItem(text, value)
        self.ada_target = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05, value=0.6)
        self.freeze_d = QSpinBox(minimum=0, maximum=8)
        self.r1_gamma = QDoubleSpinBox(decimals=4, minimum=-1, maximum=1000, singleStep=0.5, value=-1)
        self.r1_gamma.setSpecialValueText("auto")
        self.quality_every = QDoubleSpinBox(decimals=0, minimum=0, maximum=1000, singleStep=5, value=10, suffix=" kimg")
        self.quality_every.setSpecialValueText("never")
        self.quality_every.setToolTip(
            "How often to measure FD-EffNet, precision and recall against the dataset (up to 500 images a side; "
            "tens of seconds on a CPU each time)"
        )
        self.precision = QComboBox()
        self.precision.addItems(["auto", "fp32", "bf16", "fp16"])
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        form = QFormLayout(self.advanced)
        form.setContentsMargins(12, 0, 0, 0)
        for label, widget in (
            ("Custom length", self.custom_kimg),
            ("Learning rates", rates), ("Batch", self.batch), ("Augmentation", self.aug),
            ("ADA target", self.ada_target), ("Freeze D blocks", self.freeze_d), ("R1 gamma", self.r1_gamma),
            ("Quality check every", self.quality_every), ("Precision", self.precision), ("Device", self.device),
        ):
            form.addRow(label, widget)
        self.advanced.setVisible(False)
        # RECIPE_FIELDS → (the widget, its signal of a change, how the recipe sets it). The recipe sets them with
        # signals blocked: a signal is the artist's edit.
        self._recipe_inputs = {
            "g_lr": (self.g_lr, self.g_lr.valueChanged, self.g_lr.setValue),
            "d_lr": (self.d_lr, self.d_lr.valueChanged, self.d_lr.setValue),
            "aug": (self.aug, self.aug.currentIndexChanged, lambda v: self.aug.setCurrentIndex(self.aug.findData(v))),
            "freeze_d": (self.freeze_d, self.freeze_d.valueChanged, self.freeze_d.setValue),
        }
        for name, (_widget, changed, _set) in self._recipe_inputs.items():
            changed.connect(lambda _value, name=name: self._edited.add(name))

        box = QGroupBox("New run")
        form = QFormLayout(box)
        form.addRow("Start from", self.base)
        form.addRow("Dataset", self.dataset)
        self.recipe = RecipeChoice()
        self.recipe.combo.currentIndexChanged.connect(lambda _i: self._choices_changed())
        form.addRow("Recipe", self.recipe.combo)
        form.addRow("", self.recipe.note)
        form.addRow("Length", self.preset)
        self.width_choice = WidthChoice()  # from scratch only
        self.width_choice.combo.currentIndexChanged.connect(lambda _i: self._choices_changed())
        self.precision.currentIndexChanged.connect(lambda _i: self._choices_changed())
        self.device.currentIndexChanged.connect(lambda _i: self._choices_changed())
        form.addRow("Network", self.width_choice.combo)
        form.addRow(self.width_choice.note)
        form.addRow(self.advanced_toggle)
        form.addRow(self.advanced)
        return box

    def _controls(self) -> QHBoxLayout:
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.stop_button.clicked.connect(self.stop)
        row = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.stop_button):
            row.addWidget(button)
        return row

    def _progress_box(self) -> QWidget:
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setFormat("%p %")
        self.status = QLabel("No run yet.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.losses = LineChart("Losses")
        self.augment = LineChart("Augment p", y_range=(0.0, 1.0))
        self.fd = LineChart("FD-EffNet (lower is better)")
        self.fd.setToolTip("Fréchet distance on EfficientNet-Lite0 features; not the Inception FID of papers")
        self.precision_recall = LineChart("", y_range=(0.0, 1.0))  # its legend, precision and recall, is the title
        self.precision_recall.setToolTip(
            "Precision: how many generated images look like the data. Recall: how much of the data's variety "
            "the generator covers (low recall is mode collapse)"
        )
        self.c2st = LineChart("C2ST accuracy (0.5 is best)", y_range=(0.5, 1.0))
        self.c2st.setToolTip(
            "Classifier two-sample test: a small network trained from scratch (no ImageNet features) to tell "
            "generated images from the data, scored on images it did not train on. 0.5: it cannot tell them "
            "apart; 1.0: every generated image gives itself away"
        )
        charts = QGridLayout()
        for i, chart in enumerate(self._charts()):
            charts.addWidget(chart, i // 2, i % 2)
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addLayout(charts)
        return box

    def _charts(self) -> tuple[LineChart, ...]:
        return self.losses, self.augment, self.fd, self.precision_recall, self.c2st

    def _samples_box(self) -> QGroupBox:
        self.sample_view = QLabel("Sample grids appear here as the run goes.")
        self.sample_view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.sample_view.setMinimumHeight(120)
        self.sample_view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        self.timeline = QSlider(Qt.Orientation.Horizontal)
        self.timeline.setRange(0, 0)
        self.timeline.valueChanged.connect(self._show_sample)
        self.timeline_label = QLabel()
        row = QHBoxLayout()
        row.addWidget(self.timeline, 1)
        row.addWidget(self.timeline_label)
        box = QGroupBox("Samples")
        layout = QVBoxLayout(box)
        layout.addWidget(self.sample_view, 1)
        layout.addLayout(row)
        return box

    def _snapshots_box(self) -> QGroupBox:
        self.checkpoint = QComboBox()
        self.checkpoint.setPlaceholderText("No checkpoint yet")
        self.explore_button = QPushButton("Open in Explore")
        self.add_button = QPushButton("Add to library")
        self.explore_button.clicked.connect(self.open_selected_checkpoint)
        self.add_button.clicked.connect(self.add_selected_checkpoint)
        box = QGroupBox("Snapshots")
        layout = QHBoxLayout(box)
        layout.addWidget(self.checkpoint, 1)
        layout.addWidget(self.explore_button)
        layout.addWidget(self.add_button)
        return box

    def _runs_box(self) -> QGroupBox:
        self.runs = QComboBox()
        self.runs.setPlaceholderText("No past runs")
        self.runs.activated.connect(lambda _i: self.show_run(self.runs.currentData()))
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: self.resume())
        box = QGroupBox("Past runs")
        layout = QHBoxLayout(box)
        layout.addWidget(self.runs, 1)
        layout.addWidget(self.resume_button)
        return box

    def _toggle_advanced(self, shown: bool) -> None:
        self.advanced.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # --- choices ----------------------------------------------------------------------------------------

    def refresh_bases(self) -> None:
        """The library's models and "from scratch". The base is the one the artist picked; until they pick one,
        it follows the model open in Explore (else the bundled model)."""
        self.base.blockSignals(True)
        self.base.clear()
        entries = self.library.entries()
        for entry in entries:
            self.base.addItem(f"{entry.name} ({entry.meta.get('resolution', '?')} px)", entry.id)
        self.base.addItem("From scratch", SCRATCH)
        if self.base.findData(self._base_pick) < 0:
            self._base_pick = None  # the picked model left the library
        opened = self.controller.entry.id if self.controller.entry is not None else None
        bundled = next((e.id for e in entries if e.bundled), None)
        candidates = (self._base_pick, opened, bundled, SCRATCH)
        self.base.setCurrentIndex(next(i for i in map(self.base.findData, candidates) if i >= 0))
        self.base.blockSignals(False)
        self._choices_changed()

    def refresh_datasets(self) -> None:
        chosen = self.dataset.currentText()
        self.dataset.blockSignals(True)
        self.dataset.clear()
        for info in self.datasets.datasets():
            self.dataset.addItem(info.name)
        index = self.dataset.findText(chosen)
        self.dataset.setCurrentIndex(index if index >= 0 else self.dataset.count() - 1)
        self.dataset.blockSignals(False)
        self._choices_changed()

    def select(self, base: str | None = None, dataset: str | None = None) -> None:
        """Choose the base (a library id or "scratch") and the dataset by name, as a click would."""
        if base is not None:
            self.base.setCurrentIndex(self.base.findData(base))
        if dataset is not None:
            self.dataset.setCurrentIndex(self.dataset.findText(dataset))

    def _base_picked(self) -> None:
        self._base_pick = self.base.currentData()
        self._choices_changed()

    def _length_changed(self) -> None:
        custom = self.preset.currentData() == CUSTOM_LENGTH
        self.custom_kimg.setEnabled(custom)
        if custom:
            self.advanced_toggle.setChecked(True)
        self._choices_changed()

    def _choices_changed(self) -> None:
        self._update_recipe()
        self._update_width()
        self._update_lengths()
        self.update_warnings()
        self._update_buttons()

    def _base_resolution(self) -> int | None:
        base = self.base.currentData()
        if base in (None, SCRATCH):
            return None
        return int(self.library.get(base).meta.get("resolution", 0)) or None

    def _device_type(self, choice: str | None = None) -> str:
        """The kind of device `choice` (default: the one chosen in Advanced) trains on here."""
        choice = choice or self.device.currentText()
        try:
            return select_device(choice).type
        except ValueError:  # asked for a device this machine lacks: the run will say so
            return choice.split(":")[0]

    @staticmethod
    def _images(info: Any) -> int:
        """The images a run sees: mirrored datasets count twice, as in training."""
        return info.count * (2 if info.xflip else 1)

    def _dataset_info(self) -> Any:
        """The chosen saved dataset, or None (none chosen, or it is gone)."""
        try:
            return self.datasets.get(self.dataset.currentText()) if self.dataset.currentText() else None
        except DatasetError:
            return None

    def _update_recipe(self) -> None:
        """Auto's pick for the start and dataset; the Advanced options the artist left follow the recipe."""
        info = self._dataset_info()
        self.recipe.update(self.base.currentData() == SCRATCH, None if info is None else self._images(info))
        values = recipe_values(self.recipe.preset())
        for name, (widget, _changed, set_value) in self._recipe_inputs.items():
            if name not in self._edited:
                widget.blockSignals(True)
                set_value(values[name])
                widget.blockSignals(False)

    def _speed_setup(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """What a run's speed depends on, from its options: the start, the recipe, the batch and the device (from
        scratch also the resolution and width)."""
        scratch = config.get("base") == SCRATCH
        return (
            config.get("base"), config.get("preset"), config.get("batch"), self._device_type(config.get("device")),
            config.get("resolution") if scratch else None, config.get("channel_max") if scratch else None,
        )

    def _known_speed(self) -> float | None:
        """Images/s measured by the newest past run of the set-up chosen now, on this machine; None if none."""
        info = self._dataset_info()
        base = self.base.currentData()
        if info is None or base is None:
            return None
        chosen = {"base": SCRATCH if base == SCRATCH else str(self.library.get(base).path),
                  "preset": self.recipe.preset(), "batch": self.batch.value(), "device": self.device.currentText()}
        if base == SCRATCH:
            width = self.width_choice.width(info.resolution, self._images(info), self._device_type())
            chosen.update(resolution=info.resolution, channel_max=width.channel_max)
        for run in (self.runs.itemData(i) for i in range(self.runs.count())):
            speed = run.config.get("measured_images_per_s")
            if speed and self._speed_setup(run.config) == self._speed_setup(chosen):
                return float(speed)
        return None

    def _update_lengths(self) -> None:
        """The time budgets, with the kimg each holds here when a past run of this set-up measured its speed."""
        speed = self._known_speed()
        for index, (name, seconds) in enumerate(PRESETS.items()):
            known = f" (~{format_kimg(speed * seconds / 1000)} kimg here)" if speed else ""
            self.preset.setItemText(index, name + known)
        self.preset.setToolTip(self._length_tip + (
            f"\nA past run of this set-up measured {speed:.1f} images/s here." if speed else ""))

    def _update_width(self) -> None:
        """Show the width choice for a from-scratch run, with what it costs on the chosen device."""
        info = self._dataset_info()
        scratch = self.base.currentData() == SCRATCH and info is not None
        form = self.width_choice.combo.parentWidget().layout()
        for row in (self.width_choice.combo, self.width_choice.note):
            form.setRowVisible(row, scratch)
        if not scratch:
            return
        device_type = self._device_type()
        precision = cpu_training_precision(self.precision.currentText()) if device_type == "cpu" else "fp32"
        self.width_choice.update_note(info.resolution, self._images(info), device_type, precision)

    def update_warnings(self) -> None:
        notes = []
        info = self._dataset_info()
        if info is not None:
            if info.count < SMALL_DATASET:
                notes.append(f"Small dataset ({info.count} images): expect overfitting; keep augmentation on.")
            base_resolution = self._base_resolution()
            if base_resolution and max(base_resolution, info.resolution) >= RESOLUTION_RATIO * min(
                base_resolution, info.resolution
            ):
                notes.append(
                    f"The base model is {base_resolution} px and the dataset {info.resolution} px: the "
                    "images will be prepared again at the model's size, which changes them a lot."
                )
        speed = self._stylegan3_speed_note()
        if speed:
            notes.append(speed)
        self._choice_notes = notes
        self._show_warnings()

    def _stylegan3_speed_note(self) -> str | None:
        """For a StyleGAN3 base on a CPU, how slowly it trains here: measured once per model and precision on a
        worker thread (a training step of its own networks), as the run measures it again before it starts."""
        base = self.base.currentData()
        if base in (None, SCRATCH) or self._device_type() != "cpu":
            return None
        entry = self.library.get(base)
        if entry.meta.get("family") != "stylegan3":
            return None
        key = (base, cpu_training_precision(self.precision.currentText()))
        if key not in self._cpu_speeds:
            self._cpu_speeds[key] = None

            def measured(result: float | str) -> None:
                self._cpu_speeds[key] = result
                self.update_warnings()

            self.tasks.start(
                lambda _task: cpu_finetune_images_per_s(entry.path, key[1]),
                on_finished=measured,
                on_failed=lambda text: measured(f"its speed could not be measured ({text})"),
            )
        speed = self._cpu_speeds[key]
        if speed is None:
            return "StyleGAN3 trains slowly on a CPU: measuring a training step of this model…"
        if isinstance(speed, str):
            return f"StyleGAN3 trains slowly on a CPU; {speed}."
        return (
            f"StyleGAN3 trains slowly on a CPU: a measured step of this model gives about {rate_text(speed)} img/s "
            f"here ({key[1]}), so 1 kimg takes about {per_kimg(speed)}."
        )

    def _show_warnings(self) -> None:
        notes = self.warning_texts()
        self.warnings.setText("\n".join(f"⚠ {note}" for note in notes))
        self.warnings.setVisible(bool(notes))

    def warning_texts(self) -> list[str]:
        """What the panel warns about: the choices before a run, the run's own warnings during it."""
        return list(self._run_notes or self._choice_notes)

    def build_options(self) -> dict[str, Any]:
        """The run's TrainConfig fields from the panel's choices: the recipe's, the Advanced options (which show the
        recipe's values unless edited), then `overrides`."""
        name = self.dataset.currentText()
        if not name:
            raise DatasetError("choose a dataset (save one in the Dataset panel first)")
        info = self.datasets.get(name)
        base = self.base.currentData()
        preset = self.recipe.preset()
        options: dict[str, Any] = {
            **RECIPE_VALUES[preset],
            "preset": preset,
            "preset_reason": self.recipe.reason(),
            "data": str(info.path),
            "out": str(new_run_dir(name, self.runs_root)),
            "g_lr": self.g_lr.value(),
            "d_lr": self.d_lr.value(),
            "batch": self.batch.value(),
            "aug": self.aug.currentData(),
            "ada_target": self.ada_target.value(),
            "freeze_d": self.freeze_d.value(),
            "metrics_kimg": self.quality_every.value(),
            "precision": self.precision.currentText(),
            "device": self.device.currentText(),
        }
        length = self.preset.currentData()
        if length == CUSTOM_LENGTH:
            options["kimg"] = self.custom_kimg.value()
        else:
            options["time_budget_s"] = float(length)
        if self.r1_gamma.value() >= 0:
            options["r1_gamma"] = self.r1_gamma.value()
        if base == SCRATCH:
            options.update(base=SCRATCH, resolution=info.resolution)
            options.update(self.width_choice.options(info.resolution, self._images(info), self._device_type()))
        else:
            options["base"] = str(self.library.get(base).path)
        options.update(self.overrides)
        return options

    # --- running ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the choices, prepare the dataset at the base model's size if it differs, then launch."""
        if self.running():
            return
        try:
            options = self.build_options()
            train_command(options)  # validates: a bad option shows here, not as a failed process
        except (ConfigError, DatasetError, KeyError) as exc:
            self._fail(f"Cannot start: {exc}")
            return
        resolution, name = self._base_resolution(), self.dataset.currentText()
        if resolution is None or self.datasets.get(name).resolution == resolution:
            self._launch(train_command(options), Path(options["out"]))
            return
        self.status.setText(f"Preparing “{name}” again at {resolution} px…")
        self.start_button.setEnabled(False)

        def prepared(path: Path) -> None:
            options["data"] = str(path)
            self._launch(train_command(options), Path(options["out"]))

        self.tasks.start(
            lambda task: self.datasets.at_resolution(name, resolution, task.progress, task.cancelled),
            on_finished=prepared,
            on_failed=lambda text: self._fail(f"Cannot start: {text}"),
            on_progress=lambda done, total, _m: self._set_bar(done, max(total, 1)),
        )

    def resume(self, run_dir: Path | None = None) -> None:
        """Continue a paused, stopped or interrupted run from its last checkpoint."""
        run = read_run(run_dir) if run_dir is not None else self.runs.currentData()
        if self.running() or run is None:
            return
        if not run.resumable:
            why = {"completed": "it completed", "running": "a process is training it"}.get(
                run.status, "it has no checkpoint")
            self._fail(f"{run.name} cannot be resumed: {why}.")
            return
        self.show_run(run)
        self._launch(resume_command(run.path), run.path, keep_shown=True)

    def rerun(self) -> None:
        """A new run with the settings of the run on show, on its images as they are now."""
        if self.running() or self.run_dir is None:
            return
        try:
            options = rerun_options(self.run_dir, self.runs_root)
            command = train_command(options)
        except (ConfigError, OSError) as exc:
            self._fail(f"Cannot start: {exc}")
            return
        self._launch(command, Path(options["out"]))

    def _launch(self, command: list[str], run_dir: Path, keep_shown: bool = False) -> None:
        if not keep_shown:
            self._clear_run()
        self.run_dir = run_dir
        self.failure, self._error, self._stderr, self._pausing = None, None, "", False
        self._reader = EventReader()
        process = QProcess(self)
        if self.environment:
            environment = QProcessEnvironment.systemEnvironment()
            for key, value in self.environment.items():
                environment.insert(key, value)
            process.setProcessEnvironment(environment)
        process.setProgram(command[0])
        process.setArguments(command[1:])
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._process_finished)
        process.errorOccurred.connect(self._process_error)
        self.process = process
        self.status.setText("Starting the training process…")
        process.start()
        self._update_buttons()

    def running(self) -> bool:
        return self.process is not None

    def pause(self) -> None:
        """The run writes a checkpoint and exits; Resume continues exactly where it stopped."""
        if self.process is not None:
            self._pausing = True
            self.status.setText("Pausing: writing a checkpoint…")
            self._request_stop()

    def stop(self) -> None:
        """End the run (with a last checkpoint, so it stays resumable from Past runs)."""
        if self.process is not None:
            self.status.setText("Stopping: writing a checkpoint…")
            self._request_stop()

    def _request_stop(self) -> None:
        """The run's STOP file (every platform; Windows has no SIGTERM), and SIGTERM where there is one."""
        if self.run_dir is not None and self.run_dir.is_dir():
            request_stop(self.run_dir)
        if sys.platform != "win32":
            self.process.terminate()
        self._update_buttons()

    def _pause_or_resume(self) -> None:
        if self.running():
            self.pause()
        elif self.run_dir is not None:
            self.resume(self.run_dir)

    def _read_stdout(self) -> None:
        if self.process is None:
            return
        for event in self._reader.feed(bytes(self.process.readAllStandardOutput().data())):
            self.handle_event(event)

    def _read_stderr(self) -> None:
        if self.process is not None:
            text = bytes(self.process.readAllStandardError().data()).decode("utf-8", errors="replace")
            self._stderr = (self._stderr + text)[-STDERR_TAIL:]

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            reason = self.process.errorString()
            self._fail(f"The training process could not start ({reason}): {sys.executable}")
            self.process.deleteLater()
            self.process = None
            self._update_buttons()

    def _process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        self._read_remaining(process)
        crashed = status == QProcess.ExitStatus.CrashExit
        if crashed or code != 0:
            if self._error:
                reason = self._error
            elif crashed:
                reason = "the training process was killed or crashed"
            else:
                reason = f"the training process exited with code {code}"
            tail = self._stderr.strip().splitlines()[-3:] if not self._error else []
            self._fail(f"Training failed: {reason}." + (f"\n{chr(10).join(tail)}" if tail else "")
                       + ("\nResume continues from its last checkpoint." if self._resumable() else ""))
        process.deleteLater()
        self.refresh_runs()
        self._update_buttons()

    def _read_remaining(self, process: QProcess) -> None:
        for event in self._reader.feed(bytes(process.readAllStandardOutput().data()) + b"\n"):
            self.handle_event(event)
        self._stderr = (self._stderr + bytes(process.readAllStandardError().data()).decode(errors="replace"))[
            -STDERR_TAIL:
        ]

    def _resumable(self) -> bool:
        try:
            return self.run_dir is not None and read_run(self.run_dir).resumable
        except ConfigError:
            return False

    def _fail(self, text: str) -> None:
        self.failure = text
        self.status.setText(text)
        self.controller.message.emit("error", text)
        self._update_buttons()

    # --- events -----------------------------------------------------------------------------------------

    def handle_event(self, event: dict[str, Any]) -> None:
        """One JSON event of the run (see the README's table); unknown kinds are ignored."""
        self.events.append(event)
        kind = event.get("event")
        if kind == "import_progress":
            self._set_bar(event.get("done", 0), max(event.get("total", 1), 1))
            self.status.setText(f"Preparing the dataset: {event.get('done')} / {event.get('total')}")
        elif kind == "started":
            self._choice_notes = []  # the run warns about its dataset itself
            self._show_warnings()
            self.refresh_runs()
            self.status.setText(
                f"Training on {event.get('device')} · {event.get('dataset_size')} images at "
                f"{event.get('resolution')} px" + (" · resumed" if event.get("resumed") else "")
                + (" · measuring its speed first" if event.get("kimg") is None else "")
            )
        elif kind == "warning":
            self._run_notes.append(str(event.get("message", "")))
            self._show_warnings()
            if event.get("source_changed"):
                self.rerun_button.setVisible(True)
                self._update_buttons()
        elif kind == "compile" and event.get("status") == "compiling":
            self.status.setText(
                "Compiling the networks for this machine before the first step: a minute or two the first "
                "time, seconds after; they then train faster."
            )
        elif kind == "progress":
            self._progress(event)
        elif kind == "budget":
            self.controller.message.emit(
                "info", f"Measured {float(event.get('images_per_s') or 0):.1f} images per second on this "
                f"machine: the run will train {format_kimg(float(event.get('total_kimg') or 0))} kimg."
            )
        elif kind == "metrics":
            self._metrics(event)
        elif kind == "samples":
            self._add_sample(float(event.get("kimg", 0)), Path(event["path"]))
        elif kind == "checkpoint":
            self._add_checkpoint(float(event.get("kimg", 0)), Path(event["path"]))
        elif kind == "finished":
            kimg = float(event.get("kimg", 0))
            if event.get("status") == "completed":
                self.status.setText(f"Completed: {kimg:g} kimg in {duration(event.get('elapsed_s'))}.")
            else:
                verb = "Paused" if self._pausing else "Stopped"
                self.status.setText(f"{verb} at {kimg:g} kimg; the checkpoint is saved: Resume continues it.")
        elif kind == "error":
            self._error = str(event.get("message", "unknown error"))

    def _progress(self, event: dict[str, Any]) -> None:
        kimg, total = float(event.get("kimg", 0)), event.get("total_kimg")
        if total is None:  # a time budget measuring its speed: the length is not known yet
            self.bar.setValue(0)
            self.bar.setFormat("Measuring speed…")
        else:
            self.bar.setFormat("%p %")
            self._set_bar(kimg, float(total) or 1.0)
        losses = event.get("losses", {})
        for name in ("G", "D"):
            if name in losses:
                self.losses.add(name, kimg, float(losses[name]))
        p = event.get("augment_p")
        if p is not None:
            self.augment.add("p", kimg, float(p))
            if p > LEAKING_P and not self._warned_p:
                self._warned_p = True
                self._run_notes.append(
                    f"Augment p reached {p:.2f}: augmentations may leak into the images. Add images, or stop "
                    "and use an earlier snapshot."
                )
                self._show_warnings()
        length = "measuring speed…" if total is None else f"ETA {duration(event.get('eta_s'))}"
        self.status.setText(
            f"{kimg:.2f} / {'?' if total is None else format_kimg(float(total))} kimg · step {event.get('step')} · "
            f"{float(event.get('images_per_s') or 0):.1f} img/s · {length}"
        )

    def _metrics(self, event: dict[str, Any]) -> None:
        kimg = float(event.get("kimg", 0))
        if event.get("fd_effnet") is not None:
            self.fd.add("FD", kimg, float(event["fd_effnet"]))
        for name in ("precision", "recall"):
            if event.get(name) is not None:
                self.precision_recall.add(name, kimg, float(event[name]))
        if event.get("c2st") is not None:
            self.c2st.add("C2ST", kimg, float(event["c2st"]))

    def _set_bar(self, done: float, total: float) -> None:
        self.bar.setValue(int(1000 * min(done / total, 1.0)))

    def _add_sample(self, kimg: float, path: Path) -> None:
        following = self.timeline.value() == self.timeline.maximum()
        self._samples.append((kimg, path))
        self.timeline.setRange(0, len(self._samples) - 1)
        if following or len(self._samples) == 1:
            self.timeline.setValue(len(self._samples) - 1)
            self._show_sample(len(self._samples) - 1)

    def _show_sample(self, index: int) -> None:
        if not 0 <= index < len(self._samples):
            return
        kimg, path = self._samples[index]
        image = QImage(str(path))
        if image.isNull():
            self.sample_view.setText(f"{path.name} cannot be read")
            return
        self.sample_image = image
        self.timeline_label.setText(f"{kimg:g} kimg")
        size = self.sample_view.size()
        scale = min(size.width() / image.width(), size.height() / image.height())
        crisp = Qt.TransformationMode.FastTransformation  # enlarged small samples keep their pixels sharp
        self.sample_view.setPixmap(QPixmap.fromImage(image).scaled(
            size, Qt.AspectRatioMode.KeepAspectRatio,
            crisp if scale >= 2 else Qt.TransformationMode.SmoothTransformation))

    def samples(self) -> list[tuple[float, Path]]:
        return list(self._samples)

    def _add_checkpoint(self, kimg: float, path: Path) -> None:
        self._checkpoints = [c for c in self._checkpoints if c[1].exists() and c[1] != path] + [(kimg, path)]
        self.checkpoint.clear()
        for k, p in self._checkpoints:
            self.checkpoint.addItem(f"{format_kimg(k)} kimg", str(p))
        self.checkpoint.setCurrentIndex(self.checkpoint.count() - 1)
        self._update_buttons()

    # --- past runs ----------------------------------------------------------------------------------------

    def refresh_runs(self) -> None:
        shown = self.run_dir
        self.runs.clear()
        for run in list_runs(self.runs_root):
            label = "running" if self.running() and run.path == self.run_dir else run.status
            self.runs.addItem(f"{run.name} · {self._run_length(run)} · {RUN_LABELS.get(label, label)}", run)
            if run.error:
                self.runs.setItemData(self.runs.count() - 1, run.error, Qt.ItemDataRole.ToolTipRole)
        self._select_run(shown)
        self._update_lengths()  # a run may have measured its speed

    @staticmethod
    def _run_length(run: RunInfo) -> str:
        total = "?" if run.total_kimg is None else format_kimg(run.total_kimg)
        return f"{format_kimg(run.kimg)}/{total} kimg"

    def _select_run(self, path: Path | None) -> None:
        """The run on show, else the newest (the one a reopened app most likely continues)."""
        paths = [self.runs.itemData(i).path for i in range(self.runs.count())]
        self.runs.setCurrentIndex(paths.index(path) if path in paths else min(0, self.runs.count() - 1))
        self._update_buttons()

    def show_run(self, run: RunInfo | None) -> None:
        """Show a past run as it was: curves, sample timeline and checkpoints from its folder."""
        if run is None or self.running():
            return
        self._clear_run()
        self.run_dir = run.path
        for kimg, path in run.samples():
            self._add_sample(kimg, path)
        for event in run.events:
            if event.get("event") == "progress":
                self._progress(event)
            elif event.get("event") == "metrics":
                self._metrics(event)
        for kimg, path in run.checkpoints():
            self._add_checkpoint(kimg, path)
        if run.status == "failed":
            self.status.setText(f"{run.name} failed at {format_kimg(run.kimg)} kimg: {run.error}")
        else:
            self.status.setText(f"{run.name}: {run.status} at {self._run_length(run)}.")
        self._select_run(run.path)

    def _clear_run(self) -> None:
        self.events, self._samples, self._checkpoints, self._run_notes = [], [], [], []
        self._warned_p = False
        self.rerun_button.setVisible(False)
        for chart in self._charts():
            chart.clear()
        self.timeline.setRange(0, 0)
        self.timeline_label.clear()
        self.sample_view.clear()
        self.sample_image = QImage()
        self.checkpoint.clear()
        self.bar.setValue(0)
        self.bar.setFormat("%p %")
        self.update_warnings()

    # --- snapshots ----------------------------------------------------------------------------------------

    def selected_checkpoint(self) -> Path | None:
        data = self.checkpoint.currentData()
        return Path(data) if data else None

    def selected_snapshot_name(self) -> str:
        """The library name of the selected checkpoint: its run and kimg."""
        kimg = next((k for k, p in self._checkpoints if p == self.selected_checkpoint()), 0.0)
        return snapshot_name(self.run_dir, kimg)

    def open_selected_checkpoint(self) -> None:
        path = self.selected_checkpoint()
        if path is not None and self.run_dir is not None:
            self.open_checkpoint.emit(path, self.selected_snapshot_name())

    def add_selected_checkpoint(self) -> None:
        path = self.selected_checkpoint()
        if path is None or self.run_dir is None:
            return
        name = self.selected_snapshot_name()

        def added(entry: Any) -> None:
            self.library_changed.emit()
            self.refresh_bases()
            self.controller.message.emit("info", f"Added “{entry.name}” to your library.")

        self.tasks.start(lambda _task: self.library.import_model(path, name=name), on_finished=added,
                         on_failed=lambda text: self.controller.message.emit("error", text))

    def _update_buttons(self) -> None:
        running = self.running()
        self.start_button.setEnabled(not running and bool(self.dataset.currentText()))
        resumable = not running and self.run_dir is not None and self._resumable()
        self.pause_button.setText("Pause" if running or not resumable else "Resume")
        self.pause_button.setEnabled(running or resumable)
        self.stop_button.setEnabled(running)
        self.rerun_button.setEnabled(not running)
        run = self.runs.currentData()
        self.resume_button.setEnabled(not running and run is not None and run.resumable)
        has_checkpoint = self.checkpoint.count() > 0
        self.explore_button.setEnabled(has_checkpoint)
        self.add_button.setEnabled(has_checkpoint)

    def busy(self) -> bool:
        return self.tasks.busy()

    def shutdown(self) -> None:
        """Closing the app pauses a run (it checkpoints), so it can be resumed next time."""
        if self.process is not None:
            self.process.terminate()
            if not self.process.waitForFinished(30_000):
                self.process.kill()
                self.process.waitForFinished(5_000)
        self.tasks.shutdown()
