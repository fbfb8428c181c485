"""Models panel: the library with thumbnails and metadata; import (dialog or drop), rename, delete, reveal."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont, QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.engine.library import ModelEntry
from studio.ui.controller import StudioController
from studio.ui.workers import TaskRunner

MODEL_SUFFIXES = (".pkl", ".pt", ".safetensors")
ENTRY_ID = Qt.ItemDataRole.UserRole


class ModelsPanel(QWidget):
    import_requested = Signal()  # the window owns the file dialog (the panel may float in its own window)
    library_changed = Signal()  # a model was imported, renamed or deleted (the Train panel lists them)

    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.library = controller.library
        # One import at a time: the library index is read, changed and written back by each import.
        self._imports = TaskRunner(max_threads=1, parent=self)
        self._pending = 0

        self.list = QListWidget()
        self.list.setIconSize(QSize(64, 64))
        self.list.setSpacing(2)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setAcceptDrops(False)  # drops belong to the window, which imports them
        self.list.itemDoubleClicked.connect(lambda _item: self.open_selected())
        self.list.currentItemChanged.connect(lambda *_: self._show_details())
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.busy_label = QLabel()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(8)
        self.hint = QLabel("Drop .pkl, .pt or .safetensors files on the window to import them.")
        self.hint.setObjectName("hint")
        self.hint.setWordWrap(True)

        self.import_button = QPushButton("Import…")
        self.open_button = QPushButton("Open")
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Delete…")
        self.reveal_button = QPushButton("Show file")
        self.import_button.clicked.connect(self.import_requested)
        self.open_button.clicked.connect(self.open_selected)
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.reveal_button.clicked.connect(self.reveal_selected)
        buttons = QGridLayout()
        for index, button in enumerate(
            (self.import_button, self.open_button, self.rename_button, self.delete_button, self.reveal_button)
        ):
            buttons.addWidget(button, index // 3, index % 3)

        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 3)
        layout.addLayout(buttons)
        layout.addWidget(self.busy_label)
        layout.addWidget(self.busy)
        layout.addWidget(self.details, 1)
        layout.addWidget(self.hint)
        self._set_busy(None)
        controller.model_changed.connect(self.refresh)
        self.refresh()

    # --- list ---------------------------------------------------------------------------------------------

    def refresh(self, select_id: str | None = None) -> None:
        current = self.controller.entry.id if self.controller.entry is not None else None
        select_id = select_id or self.selected_id() or current
        self.list.clear()
        for entry in self.library.entries():
            item = QListWidgetItem(self._item_text(entry))
            item.setData(ENTRY_ID, entry.id)
            item.setToolTip(str(entry.path))
            if entry.thumbnail and Path(entry.thumbnail).is_file():
                item.setIcon(QIcon(str(entry.thumbnail)))
            if entry.id == current:
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
            self.list.addItem(item)
            if entry.id == select_id:
                self.list.setCurrentItem(item)
        self._show_details()

    @staticmethod
    def _item_text(entry: ModelEntry) -> str:
        meta = entry.meta
        kind = "bundled" if entry.bundled else meta.get("source_format", "")
        return f"{entry.name}\n{meta.get('resolution', '?')} px · {kind}"

    def names(self) -> list[str]:
        return [self.list.item(i).text().split("\n")[0] for i in range(self.list.count())]

    def selected_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(ENTRY_ID) if item is not None else None

    def selected_entry(self) -> ModelEntry | None:
        entry_id = self.selected_id()
        return self.library.get(entry_id) if entry_id else None

    def _show_details(self) -> None:
        entry = self.selected_entry()
        for button in (self.open_button, self.rename_button, self.delete_button, self.reveal_button):
            button.setEnabled(entry is not None)
        if entry is None:
            self.details.setText("")
            return
        meta = entry.meta
        rows = [
            ("Family", meta.get("family", "?")),
            ("Resolution", f"{meta.get('resolution', '?')} × {meta.get('resolution', '?')}"),
            ("Latents", f"z {meta.get('z_dim', '?')} · w {meta.get('w_dim', '?')}"),
            ("Layers", f"{meta.get('num_ws', '?')} w inputs"),
            ("Source", f"{meta.get('source_name', '?')} ({meta.get('source_format', '?')})"),
            ("Added", entry.added[:10]),
            ("Id", entry.id),
        ]
        self.details.setText(
            "<table>"
            + "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
            + "</table>"
        )

    # --- actions ----------------------------------------------------------------------------------------

    def import_files(self, paths: list[Path], names: list[str] | None = None) -> None:
        """Import off the GUI thread, one after another, named `names` (default: the files' names); each
        refusal shows the importer's own message."""
        for path, name in zip(paths, names or [None] * len(paths), strict=True):
            self._pending += 1
            self._set_busy(f"Importing {path.name}…")
            self._imports.start(
                lambda task, path=path, name=name: self.library.import_model(path, task.progress, name),
                on_finished=self._imported,
                on_failed=self._import_failed,
                on_progress=lambda done, total, message: self._set_busy(message or None, done, total),
            )

    def _imported(self, entry: ModelEntry) -> None:
        self._import_ended()
        self.refresh(select_id=entry.id)
        self.library_changed.emit()
        self.controller.message.emit("info", f"Imported “{entry.name}” into your library.")
        self.controller.open_model(entry)

    def _import_failed(self, text: str) -> None:
        self._import_ended()
        self.controller.message.emit("error", text)

    def _import_ended(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._set_busy(None)

    def _set_busy(self, text: str | None, done: int = 0, total: int = 0) -> None:
        importing = self._pending > 0
        self.busy.setVisible(importing)
        self.busy_label.setVisible(importing)
        if importing:
            self.busy.setRange(0, total if total > 0 else 0)
            self.busy.setValue(done)
            if text:
                self.busy_label.setText(text)

    def importing(self) -> bool:
        return self._pending > 0

    def open_selected(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            self.controller.open_model(entry)

    def rename_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        name, ok = QInputDialog.getText(self, "Rename model", "Name:", text=entry.name)
        if ok and name.strip():
            self.rename(entry.id, name.strip())

    def rename(self, entry_id: str, name: str) -> None:
        self.library.rename(entry_id, name)
        if self.controller.entry is not None and self.controller.entry.id == entry_id:
            self.controller.entry = self.library.get(entry_id)
            self.controller.model_changed.emit()
        self.refresh(select_id=entry_id)
        self.library_changed.emit()

    def delete_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None:
            return
        answer = QMessageBox.question(
            self,
            "Delete model",
            f"Delete “{entry.name}” from your library?\n\nIts file in the library folder is removed; "
            "the file you imported it from is not touched.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(entry.id)

    def delete(self, entry_id: str) -> None:
        try:
            self.library.delete(entry_id)
        except (ValueError, OSError) as exc:
            self.controller.message.emit("error", str(exc))
            return
        if self.controller.entry is not None and self.controller.entry.id == entry_id:
            self.controller.close_model()
        self.refresh()
        self.library_changed.emit()

    def reveal_selected(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(entry.path).parent)))

    def shutdown(self) -> None:
        self._imports.shutdown()

