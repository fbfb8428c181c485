"""The main window: canvas in the middle, panels as docks, menus, status bar, drops, persisted layout."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.engine.datasets import DROP_SUFFIXES
from studio.engine.library import ModelEntry, ModelLibrary
from studio.engine.paths import user_data_dir
from studio.engine.recipe import read_recipe
from studio.engine.renderer import RenderResult
from studio.engine.state import RenderState
from studio.ui import settings
from studio.ui.controller import StudioController
from studio.ui.dialogs.about import show_about, show_licences
from studio.ui.dialogs.settings import SettingsDialog
from studio.ui.images import to_qimage
from studio.ui.key_routing import KeyRouter
from studio.ui.panels.dataset import DatasetPanel
from studio.ui.panels.explore import ExplorePanel
from studio.ui.panels.export import ExportPanel
from studio.ui.panels.mask import MaskPanel
from studio.ui.panels.mix import MixPanel
from studio.ui.panels.models import MODEL_SUFFIXES, ModelsPanel
from studio.ui.panels.timeline import TimelinePanel
from studio.ui.panels.train import TrainPanel
from studio.ui.theme import app_icon
from studio.ui.widgets.canvas import Canvas
from studio.ui.widgets.empty_state import EmptyState
from studio.ui.widgets.message_bar import MessageBar

log = logging.getLogger(__name__)

# Exported images carry their recipe (PNG text chunk, or EXIF in the others); dropping one restores it.
RECIPE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
# Timeline projects, and MP4s exported from one (they carry it in their metadata), reopen the timeline.
TIMELINE_SUFFIXES = (".json", ".mp4")


class MainWindow(QMainWindow):
    """Thin shell: panels do the work through the shared StudioController."""

    def __init__(self, library: ModelLibrary | None = None, persist_layout: bool = True):
        super().__init__()
        self._persist_layout = persist_layout
        self.setWindowTitle("GAN Studio")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks
            | QMainWindow.DockOption.AllowTabbedDocks
            | QMainWindow.DockOption.AllowNestedDocks
        )
        self.library = library or ModelLibrary(user_data_dir() / "library")
        self.controller = StudioController(self.library, self)

        self.messages = MessageBar()
        self.canvas = Canvas()
        self.empty = EmptyState()
        self.empty.open_requested.connect(self.open_model_dialog)
        self._stack = QStackedWidget()
        self._stack.addWidget(self.empty)
        self._stack.addWidget(self._canvas_page())
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.messages)
        layout.addWidget(self._stack, 1)
        self.setCentralWidget(central)

        self.models_panel = ModelsPanel(self.controller)
        self.models_panel.import_requested.connect(self.open_model_dialog)
        self.explore_panel = ExplorePanel(self.controller)
        self.mix_panel = MixPanel(self.controller)
        self.mask_panel = MaskPanel(self.controller, self.canvas)
        self.export_panel = ExportPanel(self.controller)
        self.dataset_panel = DatasetPanel(self.controller)
        self.train_panel = TrainPanel(self.controller, self.dataset_panel.store)
        self.dataset_panel.datasets_changed.connect(self.train_panel.refresh_datasets)
        self.train_panel.library_changed.connect(self.models_panel.refresh)
        self.models_panel.library_changed.connect(self.train_panel.refresh_bases)
        self.train_panel.open_checkpoint.connect(self._open_checkpoint)
        self.timeline_panel = TimelinePanel(self.controller)
        self.timeline_panel.frame_ready.connect(self._on_timeline_frame)
        self.explore_panel.blend.library_changed.connect(self.models_panel.refresh)
        self.docks: dict[str, QDockWidget] = {}
        self._add_dock("Models", self.models_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        for name, panel in (
            ("Explore", self.explore_panel), ("Mix", self.mix_panel), ("Export", self.export_panel)
        ):
            self._add_dock(name, panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.docks["Explore"], self.docks["Mix"])
        self.tabifyDockWidget(self.docks["Mix"], self.docks["Export"])
        self._add_dock("Dataset", self.dataset_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._add_dock("Train", self.train_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.docks["Export"], self.docks["Dataset"])
        self.tabifyDockWidget(self.docks["Dataset"], self.docks["Train"])
        self._add_dock("Mask", self.mask_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.docks["Mix"], self.docks["Mask"])
        self._add_dock("Timeline", self.timeline_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.docks["Explore"].raise_()
        self.resizeDocks([self.docks["Models"], self.docks["Explore"]], [290, 400], Qt.Orientation.Horizontal)

        self._build_menus()
        self._build_status_bar()

        c = self.controller
        c.message.connect(self._show_message)
        c.model_changed.connect(self._on_model_changed)
        c.image_ready.connect(self._on_image)
        c.history_changed.connect(self._update_undo_actions)
        c.loading_changed.connect(
            lambda loading: self._render_label.setText("Loading the model…" if loading else "")
        )
        self._on_model_changed()
        self._restore_layout()
        self._keys = KeyRouter(self, (self.undo_action, self.redo_action), self.explore_panel.step_seed)

    # --- construction -----------------------------------------------------------------------------------

    def _canvas_page(self) -> QWidget:
        fit = QToolButton(text="Fit", checkable=True, checked=True, toolTip="Fit the image to the view")
        actual = QToolButton(text="100 %", checkable=True, toolTip="Show the image at its real size")
        fit.clicked.connect(lambda: self._set_zoom(True))
        actual.clicked.connect(lambda: self._set_zoom(False))
        self._zoom_buttons = (fit, actual)
        self._image_info = QLabel()
        self._image_info.setObjectName("hint")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self._image_info, 1)
        bar.addWidget(fit)
        bar.addWidget(actual)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        return page

    def _set_zoom(self, fit: bool) -> None:
        self.canvas.set_fit(fit)
        self._zoom_buttons[0].setChecked(fit)
        self._zoom_buttons[1].setChecked(not fit)

    def _set_show_pixels(self, shown: bool) -> None:
        self.canvas.set_smooth(not shown)
        settings.app_settings().setValue(settings.SHOW_PIXELS, shown)

    def _add_dock(self, name: str, panel: QWidget, area: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(name, self)
        dock.setObjectName(f"dock_{name.lower()}")  # saveState() keys docks by object name
        dock.setWidget(panel)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        self.docks[name] = dock

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open/Import model…", self.open_model_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "&Export image…", self.export_panel.export_current_dialog, "Ctrl+E")
        file_menu.addSeparator()
        dataset = self.dataset_panel
        self._action(file_menu, "Add dataset &folder…", lambda: self._add_dataset(dataset.add_folder_dialog))
        self._action(file_menu, "Add dataset &images…", lambda: self._add_dataset(dataset.add_images_dialog))
        file_menu.addSeparator()
        self._action(file_menu, "&Settings…", self.open_settings, QKeySequence.StandardKey.Preferences)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit_menu = bar.addMenu("&Edit")
        undo, redo = self.controller.undo, self.controller.redo
        self.undo_action = self._action(edit_menu, "&Undo", undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action(edit_menu, "&Redo", redo, "Ctrl+Shift+Z")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for action in (self.undo_action, self.redo_action):  # floating docks too (see key_routing)
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self._update_undo_actions()

        view_menu = bar.addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        self._action(view_menu, "Zoom to &fit", lambda: self._set_zoom(True), "Ctrl+0")
        self._action(view_menu, "&Actual size (100 %)", lambda: self._set_zoom(False), "Ctrl+1")
        self.show_pixels_action = self._action(view_menu, "Show &pixels", self._set_show_pixels)
        self.show_pixels_action.setCheckable(True)
        self.show_pixels_action.setToolTip("Draw an enlarged image as its square pixels instead of smoothly")
        self.show_pixels_action.setChecked(settings.app_settings().value(settings.SHOW_PIXELS, False, bool))
        self.canvas.set_smooth(not self.show_pixels_action.isChecked())

        image_menu = bar.addMenu("&Image")
        self._action(image_menu, "&Random seed", self.explore_panel.random, "R")
        self._action(image_menu, "&Add to favourites", self.explore_panel.add_favourite, "F")
        self._action(image_menu, "Re&set", self.explore_panel.reset)
        hint = image_menu.addAction("Previous / next seed: ← / →")
        hint.setEnabled(False)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About GAN Studio", lambda: show_about(self))
        self._action(help_menu, "&Licences", lambda: show_licences(self))

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        self._device_label = QLabel()
        self._model_label = QLabel()
        self._render_label = QLabel()
        status = self.statusBar()
        for label in (self._device_label, self._model_label, self._render_label):
            label.setContentsMargins(6, 0, 6, 0)
            status.addPermanentWidget(label)

    # --- reactions --------------------------------------------------------------------------------------

    def _on_model_changed(self) -> None:
        c = self.controller
        has_model = c.session is not None
        self._stack.setCurrentIndex(1 if has_model else 0)
        self._device_label.setText(c.session.device_label if has_model else "")
        self._model_label.setText(f"Model: {c.entry.name}" if c.entry is not None else "No model")
        self.setWindowTitle(f"{c.entry.name} — GAN Studio" if c.entry is not None else "GAN Studio")
        if not has_model:
            self.canvas.set_image(QImage())
            self._image_info.clear()

    def _on_image(self, result: RenderResult) -> None:
        self.canvas.set_image(to_qimage(result.image))
        height, width = result.image.shape[:2]
        state = result.state
        parts = [f"seed {state.seed}" if state.w is None else "latent from a recipe"]
        parts += [f"{len(state.edits)} edit(s)"] if state.edits else []
        parts += [f"mixed from {len(state.mix)} source(s)"] if state.mix else []
        parts += [f"ψ {state.psi:.2f}"] if state.psi != 1 else []
        parts.append("preview" if result.preview else f"{width}×{height}")
        self._image_info.setText(" · ".join(parts))
        suffix = " (preview)" if result.preview else ""
        self._render_label.setText(f"Render: {result.elapsed_ms:.0f} ms{suffix}")

    def _on_timeline_frame(self, image, caption: str) -> None:
        self.canvas.set_image(to_qimage(image))
        self._image_info.setText(caption)

    def _update_undo_actions(self) -> None:
        self.undo_action.setEnabled(self.controller.history.can_undo)
        self.redo_action.setEnabled(self.controller.history.can_redo)

    def _show_message(self, level: str, text: str) -> None:
        (self.messages.show_error if level == "error" else self.messages.show_info)(text)
        (log.warning if level == "error" else log.info)("%s", text)

    # --- opening things ---------------------------------------------------------------------------------

    def open_initial_model(self) -> None:
        """The last used model if it is still in the library, else the bundled one, else the newest import;
        with an empty library the window shows how to open a model. Registering the bundled model hashes it
        and draws its thumbnail the first time, so that runs off the GUI thread."""
        last = str(settings.app_settings().value(settings.LAST_MODEL, ""))

        def choose(bundled: ModelEntry | None) -> None:
            entries = {entry.id: entry for entry in self.library.entries()}
            entry = entries.get(last) or bundled or next(reversed(entries.values()), None)
            self.models_panel.refresh()
            self.models_panel.library_changed.emit()  # the bundled model may have just been registered
            if entry is not None and self.controller.entry is None and not self.controller.loading:
                self.controller.open_model(entry)

        def failed(text: str) -> None:  # a damaged bundled file must not keep the app from starting
            self._show_message("error", f"The bundled model could not be registered: {text}")
            choose(None)

        self.controller.tasks.start(
            lambda _task: self.library.ensure_bundled(), on_finished=choose, on_failed=failed
        )

    def open_model_dialog(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in MODEL_SUFFIXES)
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open or import a model", str(Path.home()),
            f"StyleGAN checkpoints ({patterns});;All files (*)",
        )
        if paths:
            self.open_paths([Path(p) for p in paths])

    def open_paths(self, paths: list[Path]) -> None:
        """Models are imported into the library; exported images restore their model and state; folders,
        zips and other images are scanned for a dataset in the Dataset panel."""
        models = [p for p in paths if p.suffix.lower() in MODEL_SUFFIXES]
        recipes = [p for p in paths if p.suffix.lower() in RECIPE_SUFFIXES and read_recipe(p) is not None]
        timelines = [p for p in paths if p.suffix.lower() in TIMELINE_SUFFIXES]
        data = [p for p in paths if p not in recipes and (p.is_dir() or p.suffix.lower() in DROP_SUFFIXES)]
        ignored = [p.name for p in paths if p not in models + recipes + data + timelines]
        if models:
            self.models_panel.import_files(models)
        for image in recipes[-1:]:  # restoring several states at once has no meaning: the last drop wins
            self.restore_recipe(image)
        for timeline in timelines[-1:]:
            self.docks["Timeline"].show()
            self.timeline_panel.open_file(timeline)
        if data:
            self._show_dataset_panel()
            self.dataset_panel.import_paths(data)
        if ignored:
            self._show_message(
                "error",
                f"Ignored {', '.join(ignored)}: drop a model (.pkl, .pt, .safetensors), an image exported by "
                "GAN Studio, a timeline (.json, or its .mp4), or folders, zips and images for a dataset.",
            )

    def _add_dataset(self, dialog) -> None:
        """The File menu's dataset entries: the panel comes into sight, then its own file dialog."""
        self._show_dataset_panel()
        dialog()

    def _show_dataset_panel(self) -> None:
        self.docks["Dataset"].show()
        self.docks["Dataset"].raise_()

    def _open_checkpoint(self, path: Path, name: str) -> None:
        """A training snapshot goes through the library like any model, then opens in Explore."""
        self.models_panel.import_files([path], [name])
        self.docks["Explore"].raise_()

    def restore_recipe(self, path: Path) -> None:
        recipe = read_recipe(path)
        if recipe is None:
            self._show_message(
                "error",
                f"{path.name} has no GAN Studio recipe: only images exported by GAN Studio can be restored.",
            )
            return
        try:
            state = RenderState.from_dict(recipe["state"])
        except (KeyError, TypeError, ValueError) as exc:
            self._show_message("error", f"The recipe in {path.name} is damaged ({exc}).")
            return
        if "blend" in recipe:  # a blend of two library models, rebuilt from its parents
            problem = self.explore_panel.blend.restore(recipe["blend"], state)
            if problem is None:
                self._show_message("info", f"Restored the blend and image of {path.name}.")
            else:
                self._show_message("error", f"{path.name} cannot be restored: {problem}.")
            return
        entry = next((e for e in self.library.entries() if e.id == recipe.get("model_id")), None)
        if entry is None:
            name = recipe.get("model_name") or recipe.get("model_id")
            self._show_message(
                "error",
                f"{path.name} was made with the model “{name}”, which is not in your library: "
                "import that model first.",
            )
            return
        c = self.controller
        if c.session is not None and c.entry is not None and c.entry.id == entry.id:
            c.commit(state)
        else:
            self.controller.open_model(entry, state)
        self._show_message("info", f"Restored the image of {path.name}.")

    def open_settings(self) -> None:
        dialog = SettingsDialog(self)
        if dialog.exec() and dialog.engine_changed() and self.controller.entry is not None:
            self.controller.open_model(self.controller.entry, self.controller.state)

    # --- drag and drop ----------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if any(_accepted(url.toLocalFile()) for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt override)
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def busy(self) -> bool:
        """Whether any background work is still running (imports, thumbnails, grids, exports)."""
        return (
            self.controller.tasks.busy()
            or self.models_panel.importing()
            or self.export_panel.busy()
            or self.dataset_panel.busy()
            or self.train_panel.busy()
            or self.timeline_panel.busy()
        )

    # --- layout persistence and shutdown ----------------------------------------------------------------

    def _restore_layout(self) -> None:
        if not self._persist_layout:
            self.resize(1440, 900)
            return
        store = settings.app_settings()
        geometry, state = store.value(settings.GEOMETRY), store.value(settings.WINDOW_STATE)
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1440, 900)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if self._persist_layout:
            store = settings.app_settings()
            store.setValue(settings.GEOMETRY, self.saveGeometry())
            store.setValue(settings.WINDOW_STATE, self.saveState())
            store.sync()
        self.models_panel.shutdown()
        self.export_panel.shutdown()
        self.dataset_panel.shutdown()
        self.train_panel.shutdown()
        self.timeline_panel.shutdown()
        self.controller.shutdown()
        super().closeEvent(event)


def _accepted(path: str) -> bool:
    suffix = Path(path).suffix.lower()
    known = suffix in MODEL_SUFFIXES or suffix in RECIPE_SUFFIXES or suffix in DROP_SUFFIXES
    known = known or suffix in TIMELINE_SUFFIXES
    return known or Path(path).is_dir()

