"""Dataset panel: drop (or choose) folders, zips or images; see what was found (thumbnails, counts, refusals
with their reasons, duplicates, sizes); choose how to square them with a live preview; keep the prepared dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.engine.datasets import (
    DROP_SUFFIXES,
    FEW_IMAGES,
    FIT_MODES,
    DatasetError,
    DatasetStore,
    ImageRejected,
    PreparedImages,
    SourceImages,
    scan_sources,
)
from studio.ui.controller import StudioController
from studio.ui.images import to_qimage
from studio.ui.widgets.charts import Histogram
from studio.ui.widgets.lazy_grid import ThumbnailGrid
from studio.ui.workers import Task, TaskRunner

RESOLUTIONS = (16, 32, 64, 128, 256, 512, 1024)
THUMBNAIL = 72
PREVIEW_COUNT = 4
PREVIEW_SIZE = 88


class DatasetPanel(QWidget):
    datasets_changed = Signal()  # a dataset was saved, renamed or deleted (the Train panel lists them)

    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.store = DatasetStore()
        self.tasks = TaskRunner(max_threads=1, parent=self)
        self.sources: list[Path] = []  # what the last drop named: preparation scans these again
        self.report: dict[str, Any] | None = None  # ImportReport.to_dict() of the scan or the saved dataset
        self.dataset: str | None = None  # the saved dataset on show, when one is
        self._work: Task | None = None
        self._source_images: SourceImages | None = None
        self._resolution_chosen = False

        self.saved = QComboBox()
        self.saved.setPlaceholderText("No saved datasets")
        self.saved.activated.connect(lambda _i: self.open_dataset(self.saved.currentText()))
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Delete…")
        self.rename_button.clicked.connect(self._rename_dialog)
        self.delete_button.clicked.connect(self._delete_dialog)
        saved_row = QHBoxLayout()
        saved_row.addWidget(self.saved, 1)
        saved_row.addWidget(self.rename_button)
        saved_row.addWidget(self.delete_button)

        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("Scan a folder of images (its subfolders and zips too) for a new dataset")
        self.add_folder_button.clicked.connect(self.add_folder_dialog)
        self.add_images_button = QPushButton("Add images…")
        self.add_images_button.setToolTip("Scan chosen images or zips for a new dataset")
        self.add_images_button.clicked.connect(self.add_images_dialog)
        self.hint = QLabel("or drop folders, zips or images on the window.")
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_folder_button)
        add_row.addWidget(self.add_images_button)
        add_row.addWidget(self.hint, 1)
        self.busy_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumHeight(14)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        busy_row = QHBoxLayout()
        busy_row.addWidget(self.progress, 1)
        busy_row.addWidget(self.cancel_button)

        self.counts = QLabel()
        self.counts.setWordWrap(True)
        self.counts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.grid = ThumbnailGrid(THUMBNAIL)
        self.rejected = QListWidget()
        self.duplicates = QListWidget()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.grid, "Images")
        self.tabs.addTab(self.rejected, "Rejected")
        self.tabs.addTab(self.duplicates, "Duplicates")
        self.histogram = Histogram()
        self.histogram.setToolTip("Usable images by the length of their short side, in pixels")

        self.resolution = QComboBox()
        for side in RESOLUTIONS:
            self.resolution.addItem(f"{side} × {side}", side)
        self.resolution.activated.connect(self._resolution_picked)
        self.mode = QComboBox()
        for mode, text in zip(FIT_MODES, ("Crop the centre", "Pad the sides", "Stretch"), strict=True):
            self.mode.addItem(text, mode)
        self.xflip = QCheckBox("Add mirrored copies (x-flip)")
        self.previews = [QLabel() for _ in range(PREVIEW_COUNT)]
        preview_row = QHBoxLayout()
        for label in self.previews:
            label.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            preview_row.addWidget(label)
        preview_row.addStretch(1)
        self.name = QLineEdit()
        self.name.setPlaceholderText("Dataset name")
        self.save_button = QPushButton("Save dataset")
        self.save_button.clicked.connect(lambda: self.prepare())
        options = QGroupBox("Preparation")
        form = QFormLayout(options)
        form.addRow("Resolution", self.resolution)
        form.addRow("Squaring", self.mode)
        form.addRow("", self.xflip)
        form.addRow("Preview", preview_row)
        save_row = QHBoxLayout()
        save_row.addWidget(self.name, 1)
        save_row.addWidget(self.save_button)
        form.addRow(save_row)

        layout = QVBoxLayout(self)
        layout.addLayout(saved_row)
        layout.addLayout(add_row)
        layout.addWidget(self.busy_label)
        layout.addLayout(busy_row)
        layout.addWidget(self.counts)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.histogram)
        layout.addWidget(options)

        self._preview_timer = QTimer(self, singleShot=True, interval=120, timeout=self._update_preview)
        self.mode.currentIndexChanged.connect(lambda _i: self._preview_timer.start())
        self.resolution.currentIndexChanged.connect(lambda _i: self._preview_timer.start())
        controller.model_changed.connect(self._default_resolution)
        self._default_resolution()
        self._set_busy(None)
        self.refresh()

    # --- saved datasets ---------------------------------------------------------------------------------

    def refresh(self, select: str | None = None) -> None:
        select = select or self.dataset
        self.saved.clear()
        for info in self.store.datasets():
            self.saved.addItem(info.name)
            self.saved.setItemData(self.saved.count() - 1,
                                   f"{info.count} images at {info.resolution} px ({info.mode})",
                                   Qt.ItemDataRole.ToolTipRole)
        self.saved.setCurrentIndex(self.saved.findText(select) if select else -1)
        # Shown while none is open, as after a new scan: it must not deny the datasets in the list.
        count = self.saved.count()
        self.saved.setPlaceholderText(f"Open a saved dataset ({count})" if count else "No saved datasets")
        self._update_buttons()

    def open_dataset(self, name: str) -> None:
        """Show a saved dataset: its stored images, and the report of the import that made it."""
        try:
            info = self.store.get(name)
            images = PreparedImages(info.path)
        except DatasetError as exc:
            self.controller.message.emit("error", str(exc))
            return
        self._forget_sources()
        self.dataset = name
        self.grid.thumbnails.set_images(images)
        self.report = self.store.report(name)
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(info.resolution)))
        self.mode.setCurrentIndex(max(0, self.mode.findData(info.mode)))
        self.xflip.setChecked(info.xflip)
        self.name.setText(name)
        self._show_report(f"<b>{name}</b>: {info.count} images at {info.resolution} px")
        self.refresh(name)
        self._preview_timer.start()

    def rename(self, name: str, new_name: str) -> None:
        shown = self.dataset == name
        if shown:
            self._close_dataset()  # its shards are memory-mapped, and Windows renames no open file
        try:
            info = self.store.rename(name, new_name)
        except (DatasetError, OSError) as exc:
            self.controller.message.emit("error", str(exc))
            info = None
        if shown:
            self.open_dataset(info.name if info is not None else name)
        else:
            self.refresh()
        self.datasets_changed.emit()

    def delete(self, name: str) -> None:
        if self.dataset == name:
            self._close_dataset()
        try:
            self.store.delete(name)
        except (DatasetError, OSError) as exc:
            self.controller.message.emit("error", str(exc))
        self.refresh()
        self.datasets_changed.emit()

    def _close_dataset(self) -> None:
        self.dataset, self.report = None, None
        self.grid.thumbnails.set_images(None)
        self._show_report("")

    def _rename_dialog(self) -> None:
        name = self.saved.currentText()
        if name:
            new_name, ok = QInputDialog.getText(self, "Rename dataset", "Name:", text=name)
            if ok and new_name.strip() and new_name.strip() != name:
                self.rename(name, new_name)

    def _delete_dialog(self) -> None:
        name = self.saved.currentText()
        if name and QMessageBox.question(
            self, "Delete dataset",
            f"Delete the prepared dataset “{name}”?\n\nYour original images are not touched.",
        ) == QMessageBox.StandardButton.Yes:
            self.delete(name)

    # --- import: scan, then prepare -----------------------------------------------------------------------

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of images", self._dialog_folder())
        if folder:
            self.import_paths([Path(folder)])

    def add_images_dialog(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in sorted(DROP_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(
            self, "Add images or zips", self._dialog_folder(), f"Images and zips ({patterns});;All files (*)"
        )
        if files:
            self.import_paths([Path(f) for f in files])

    def _dialog_folder(self) -> str:
        """Where the last import came from: more pictures are often next to the last ones."""
        return str(self.sources[0].parent if self.sources else Path.home())

    def import_paths(self, paths: list[Path]) -> None:
        """Scan dropped folders, zips and images off the GUI thread; nothing is written until Save."""
        if self._work is not None:
            self.controller.message.emit("error", "An import is already running: wait for it or cancel it.")
            return
        self.sources = sources = list(paths)
        resolution = self.chosen_resolution()
        self._set_busy("Scanning…")

        def scan(task: Task) -> Any:
            return scan_sources(sources, resolution, progress=task.progress, cancel=task.cancelled)

        self._work = self.tasks.start(scan, on_finished=self._scanned, on_failed=self._failed,
                                      on_progress=self._progress)

    def _scanned(self, report: Any) -> None:
        self._work = None
        self._set_busy(None)
        self._forget_sources()
        self.dataset = None
        self.report = report.to_dict()
        self._source_images = SourceImages(report.images)
        self.grid.thumbnails.set_images(self._source_images)
        stem = self.sources[0].stem if len(self.sources) == 1 else "dataset"
        self.name.setText(self.store.unique_name(stem))
        self._show_report("Cancelled: showing what was scanned so far." if report.cancelled else "")
        nothing_but_reasons = not report.images and report.rejected
        self.tabs.setCurrentWidget(self.rejected if nothing_but_reasons else self.grid)
        self.refresh()  # no saved dataset is on show now
        self._preview_timer.start()

    def prepare(self, name: str | None = None) -> None:
        """Prepare the scanned sources as the dataset `name` (default: the name box), as the options say."""
        name = (name or self.name.text()).strip()
        if not self.sources or self._work is not None:
            return
        resolution, mode, xflip = self.chosen_resolution(), self.mode.currentData(), self.xflip.isChecked()
        self._set_busy(f"Preparing “{name}” at {resolution} px…")
        sources = list(self.sources)

        def run(task: Task) -> Any:
            return self.store.prepare(name, sources, resolution, mode, xflip,
                                      progress=task.progress, cancel=task.cancelled)

        def done(report: Any) -> None:
            self._work = None
            self._set_busy(None)
            if report.cancelled:
                self.controller.message.emit("info", f"Cancelled: “{name}” was left as it was.")
                return
            saved = f"Saved the dataset “{name}” ({report.dataset_size} images)."
            self.controller.message.emit("info", saved)
            self.open_dataset(name)
            self.datasets_changed.emit()

        self._work = self.tasks.start(
            run, on_finished=done, on_failed=self._failed, on_progress=self._progress
        )

    def cancel(self) -> None:
        if self._work is not None:
            self._work.cancel()
            self.busy_label.setText("Cancelling…")

    def _failed(self, text: str) -> None:
        self._work = None
        self._set_busy(None)
        self.controller.message.emit("error", text)

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if message:
            self.busy_label.setText(f"{done} / {total} · {Path(message).name}")

    def _set_busy(self, text: str | None) -> None:
        busy = text is not None
        for widget in (self.busy_label, self.progress, self.cancel_button):
            widget.setVisible(busy)
        if busy:
            self.busy_label.setText(text)
            self.progress.setRange(0, 0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = self._work is None
        usable = len(self._source_images) if self._source_images is not None else 0
        self.save_button.setEnabled(idle and bool(self.sources) and usable > 0)
        self.save_button.setToolTip(
            "" if usable or self._source_images is None else "The scan found no usable images to save"
        )
        self.add_folder_button.setEnabled(idle)
        self.add_images_button.setEnabled(idle)
        has_saved = bool(self.saved.currentText())
        self.rename_button.setEnabled(idle and has_saved)
        self.delete_button.setEnabled(idle and has_saved)

    def _forget_sources(self) -> None:
        if self._source_images is not None:
            self._source_images.close()
            self._source_images = None

    def busy(self) -> bool:
        return self.tasks.busy() or self.grid.thumbnails.busy()

    # --- report -------------------------------------------------------------------------------------------

    def _show_report(self, heading: str) -> None:
        self.rejected.clear()
        self.duplicates.clear()
        report = self.report or {}
        counts = report.get("counts", {})
        for item in report.get("rejected", []):
            self.rejected.addItem(f"{Path(item['name']).name} — {item['reason']}")
            self.rejected.item(self.rejected.count() - 1).setToolTip(item["name"])
        for kind, sign in (("duplicates", "="), ("near_duplicates", "≈")):
            for group in report.get(kind, []):
                for copy in group["copies"]:
                    original = Path(group["original"]).name
                    self.duplicates.addItem(f"{Path(copy).name} {sign} {original} (dropped)")
        self.tabs.setTabText(0, f"Images ({self.grid.model().rowCount()})")
        self.tabs.setTabText(1, f"Rejected ({self.rejected.count()})")
        self.tabs.setTabText(2, f"Duplicates ({self.duplicates.count()})")
        self.histogram.set_bins(list(report.get("size_histogram", {}).items()))
        parts = []
        if counts:
            parts.append(
                f"Scanned {counts['scanned']} files: <b>{counts['usable']} usable</b>, "
                f"{counts['rejected']} rejected, "
                f"{counts['duplicates'] + counts['near_duplicates']} duplicate(s) dropped, "
                f"{counts['small']} small"
            )
        usable = self.grid.model().rowCount()  # the scan's, or all the saved dataset's
        if report and not usable and self.dataset is None:
            why = "The Rejected tab says why." if counts.get("rejected") else "No files were found."
            parts.append(f"<b>No usable images: there is nothing to save.</b> {why}")
        elif report and usable < FEW_IMAGES:
            parts.append(f"<i>Only {usable} image(s): training will mostly learn to repeat them; "
                         "aim for a few hundred, with augmentation (ADA) on.</i>")
        elif report and usable < 1000:
            parts.append(f"<i>Only {usable} images: keep augmentation (ADA) on against overfitting.</i>")
        self.counts.setText("<br>".join([heading, *parts] if heading else parts))

    def counts_text(self) -> str:
        return self.counts.text()

    # --- options and preview --------------------------------------------------------------------------------

    def chosen_resolution(self) -> int:
        return int(self.resolution.currentData())

    def _resolution_picked(self, _index: int) -> None:
        self._resolution_chosen = True

    def _default_resolution(self) -> None:
        """Follow the open model's resolution until the artist picks one (datasets train at the model's)."""
        entry = self.controller.entry
        if entry is not None and not self._resolution_chosen and self.dataset is None:
            index = self.resolution.findData(int(entry.meta.get("resolution", 256)))
            if index >= 0:
                self.resolution.setCurrentIndex(index)
        elif entry is None and not self._resolution_chosen and self.dataset is None:
            self.resolution.setCurrentIndex(self.resolution.findData(256))

    def _update_preview(self) -> None:
        """Show the first few images as preparation will store them, off the GUI thread."""
        for label in self.previews:
            label.clear()
        images = self.grid.thumbnails.images()
        if images is None or not len(images):
            return
        resolution, mode = self.chosen_resolution(), self.mode.currentData()
        count = min(PREVIEW_COUNT, len(images))

        def render(task: Task) -> None:
            for i in range(count):
                if task.cancelled():
                    return
                try:
                    fitted = images.fitted(i, resolution, mode) if isinstance(images, SourceImages) else None
                    pixels = images.pixels(i) if fitted is None else fitted
                except (ImageRejected, OSError) as exc:  # changed on disk since the scan
                    task.emit_item((images, i, str(exc)))
                    continue
                task.emit_item((images, i, to_qimage(pixels)))

        def show(item: tuple[Any, int, Any]) -> None:
            owner, i, image = item
            if isinstance(image, str):
                self.previews[i].setText("unreadable")
                self.previews[i].setToolTip(f"{images.name(i)}: {image}")
            elif owner is self.grid.thumbnails.images():
                self.previews[i].setPixmap(QPixmap.fromImage(image).scaled(
                    PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.FastTransformation if resolution < PREVIEW_SIZE
                    else Qt.TransformationMode.SmoothTransformation))
                self.previews[i].setToolTip(f"{images.name(i)} as stored: {resolution} × {resolution}")

        self.tasks.start(
            render, on_item=show, on_failed=lambda text: self.controller.message.emit("error", text)
        )

    def preview_shown(self) -> int:
        return sum(1 for label in self.previews if not label.pixmap().isNull())

    def shutdown(self) -> None:
        self.tasks.shutdown()
        self.grid.thumbnails.shutdown()
        self._forget_sources()
