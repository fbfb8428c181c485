"""Explore panel: seeds (spin box, random, a browsable grid), truncation and noise, latent directions,
favourites. Every control edits the controller's RenderState; nothing here renders on the GUI thread."""

from __future__ import annotations

import random

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.engine.mixing import layer_presets
from studio.engine.session import Direction
from studio.engine.state import NOISE_MODES, SEED_LIMIT, Edit, RenderState
from studio.ui.controller import StudioController
from studio.ui.panels.blend_box import BlendBox
from studio.ui.panels.project_box import ProjectBox
from studio.ui.widgets.camera_box import CameraBox
from studio.ui.widgets.direction_row import DirectionRow
from studio.ui.widgets.float_slider import FloatSlider
from studio.ui.widgets.scroll_column import scroll_column
from studio.ui.widgets.thumbnail_list import ThumbnailList
from studio.ui.workers import Task

GRID_PAGE = 12
GRID_ICON = 64
FAVOURITE_ICON = 64
GRID_REFRESH_MS = 300  # the seed browser redraws this long after the look (ψ, edits, noise…) last changed


def random_seed() -> int:
    return random.randrange(SEED_LIMIT)


def amount_range(direction: Direction) -> float:
    """Slider reach: ±3 standard deviations for GANSpace (strength is a variance), fixed reaches otherwise."""
    if direction.method == "ganspace":
        return max(round(3 * float(np.sqrt(direction.strength)), 1), 1.0)
    return 10.0 if direction.method == "sefa" else 2.0


def grid_look(state: RenderState) -> RenderState:
    """What the seed browser's thumbnails share with the image: everything but the latent they pick."""
    return state.replace(seed=0, w=None)


def presets_for(num_ws: int) -> dict[str, tuple[int, int]]:
    """The engine's coarse/middle/fine split plus every layer."""
    return {**{k: tuple(v) for k, v in layer_presets(num_ws).items()}, "all": (0, num_ws)}


class ExplorePanel(QWidget):
    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self._grid_task = None
        self._favourite_task = None
        self._grid_look: RenderState | None = None
        self._grid_refresh = QTimer(self, singleShot=True, interval=GRID_REFRESH_MS, timeout=self.render_grid)
        self.rows: dict[str, DirectionRow] = {}

        scroll = scroll_column(
            self._seed_box(), self._grid_box(), self._truncation_box(), self._camera_box(), self._directions_box(),
            self._favourites_box(), self._project_and_blend_boxes(),
        )
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        controller.model_changed.connect(self._on_model_changed)
        controller.state_changed.connect(self._sync)
        controller.directions_changed.connect(self._set_directions)
        controller.favourites_changed.connect(self._refresh_favourites)
        self._on_model_changed()

    # --- construction -----------------------------------------------------------------------------------

    def _seed_box(self) -> QGroupBox:
        self.seed = QSpinBox(minimum=0, maximum=SEED_LIMIT, keyboardTracking=False)
        self.seed.setToolTip("The random seed that picks the latent (← and → step through seeds)")
        self.seed.valueChanged.connect(lambda value: self._commit(seed=value, w=None))
        random_button = QPushButton("Random", toolTip="A random seed (R)")
        random_button.clicked.connect(self.random)
        favourite = QPushButton("★ Favourite", toolTip="Bookmark this image (F)")
        favourite.clicked.connect(self.add_favourite)
        reset = QPushButton("Reset", toolTip="Keep the seed, clear edits, truncation, noise and mixing")
        reset.clicked.connect(self.reset)
        self.latent_note = QLabel()
        self.latent_note.setObjectName("hint")
        row = QHBoxLayout()
        row.addWidget(QLabel("Seed"))
        row.addWidget(self.seed, 1)
        row.addWidget(random_button)
        row2 = QHBoxLayout()
        row2.addWidget(favourite)
        row2.addWidget(reset)
        row2.addWidget(self.latent_note, 1)
        box = QGroupBox("Seed")
        layout = QVBoxLayout(box)
        layout.addLayout(row)
        layout.addLayout(row2)
        return box

    def _grid_box(self) -> QGroupBox:
        self.grid = ThumbnailList(GRID_ICON, page_size=GRID_PAGE)
        self.grid.setMinimumHeight(3 * (GRID_ICON + 24) + 8)
        self.grid.picked.connect(lambda seed: self._commit(seed=int(seed), w=None))
        self.page = QSpinBox(
            minimum=0, maximum=SEED_LIMIT // GRID_PAGE, keyboardTracking=False, prefix="page "
        )
        self.page.valueChanged.connect(lambda _page: self.render_grid())
        previous = QToolButton(text="◀", toolTip="Previous page")
        following = QToolButton(text="▶", toolTip="Next page")
        shuffle = QToolButton(text="Random page", toolTip="Jump to a random page of seeds")
        previous.clicked.connect(lambda: self.page.setValue(self.page.value() - 1))
        following.clicked.connect(lambda: self.page.setValue(self.page.value() + 1))
        shuffle.clicked.connect(lambda: self.page.setValue(random.randrange(self.page.maximum())))
        nav = QHBoxLayout()
        nav.addWidget(previous)
        nav.addWidget(self.page, 1)
        nav.addWidget(following)
        nav.addWidget(shuffle)
        box = QGroupBox("Seed browser")
        layout = QVBoxLayout(box)
        layout.addLayout(nav)
        layout.addWidget(self.grid)
        return box

    def _truncation_box(self) -> QGroupBox:
        self.psi = FloatSlider(-1.0, 2.0, 0.01, 1.0)
        self.psi.setToolTip("Truncation ψ: 1 = the model as trained, lower = more typical, 0 = the mean")
        self.psi.value_changed.connect(lambda value: self._edit(psi=value))
        self._drag_is_one_step(self.psi)
        self.cutoff = QSpinBox(minimum=0, maximum=1, specialValueText="all layers")
        self.cutoff.setToolTip("Truncate only the first N layers")
        self.cutoff.valueChanged.connect(lambda value: self._commit(cutoff=value or None))
        self.noise_mode = QComboBox()
        self.noise_mode.addItems(list(NOISE_MODES))
        self.noise_mode.setToolTip("const: the model's fixed noise · random: fresh noise · none: no noise")
        self.noise_mode.currentTextChanged.connect(lambda mode: self._commit(noise_mode=mode))
        self.noise_strength = FloatSlider(0.0, 2.0, 0.01, 1.0)
        self.noise_strength.value_changed.connect(lambda value: self._edit(noise_strength=value))
        self._drag_is_one_step(self.noise_strength)
        reseed = QPushButton("Re-seed noise", toolTip="New random noise (random mode)")
        reseed.clicked.connect(lambda: self._commit(noise_seed=random_seed(), noise_mode="random"))
        noise = QHBoxLayout()
        noise.addWidget(self.noise_mode, 1)
        noise.addWidget(reseed)
        box = QGroupBox("Truncation and noise")
        form = QFormLayout(box)
        form.addRow("ψ", self.psi)
        form.addRow("Cutoff", self.cutoff)
        form.addRow("Noise", noise)
        form.addRow("Strength", self.noise_strength)
        return box

    def _camera_box(self) -> QGroupBox:
        self.camera = CameraBox()
        self.camera.changed.connect(lambda changes: self._edit(**changes))
        self.camera.centred.connect(lambda: self._commit(translate_x=0.0, translate_y=0.0, rotate=0.0))
        for slider in self.camera.fields().values():
            self._drag_is_one_step(slider)
        return self.camera

    def _directions_box(self) -> QGroupBox:
        self.directions_status = QLabel()
        self.directions_status.setObjectName("hint")
        self.directions_status.setWordWrap(True)
        self.method_filter = QComboBox()
        for label, method in (("GANSpace", "ganspace"), ("SeFa", "sefa"), ("Saved", "user"), ("All", "")):
            self.method_filter.addItem(label, method)
        self.method_filter.setToolTip("Which family of directions to show; hidden edits stay applied")
        self.method_filter.currentIndexChanged.connect(lambda _i: self._filter_rows())
        self.rows_layout = QVBoxLayout()
        self.rows_layout.setSpacing(4)
        save = QPushButton("Save edits as a direction…")
        save.setToolTip("Combine the current slider settings into one new, named direction")
        save.clicked.connect(self.save_direction_dialog)
        box = QGroupBox("Latent directions")
        layout = QVBoxLayout(box)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.method_filter, 1)
        layout.addLayout(top)
        layout.addWidget(self.directions_status)
        layout.addLayout(self.rows_layout)
        layout.addWidget(save)
        return box

    def _favourites_box(self) -> QGroupBox:
        self.favourites = ThumbnailList(FAVOURITE_ICON)
        self.favourites.setMinimumHeight(FAVOURITE_ICON + 40)
        self.favourites.picked.connect(lambda state: self.controller.commit(state))
        self.favourites.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        remove = QAction("Remove favourite", self.favourites)
        remove.setShortcut(QKeySequence.StandardKey.Delete)
        remove.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        remove.triggered.connect(self._remove_favourite)
        self.favourites.addAction(remove)
        self.favourites_hint = QLabel("Press F or ★ to bookmark an image; click a bookmark to return to it.")
        self.favourites_hint.setObjectName("hint")
        self.favourites_hint.setWordWrap(True)
        box = QGroupBox("Favourites")
        layout = QVBoxLayout(box)
        layout.addWidget(self.favourites)
        layout.addWidget(self.favourites_hint)
        return box

    def _project_and_blend_boxes(self) -> QWidget:
        self.project = ProjectBox(self.controller, drop_target=self)
        self.blend = BlendBox(self.controller)
        self.blend.curve_changed.connect(self._grid_refresh.start)  # the seed browser shows the new blend
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.project)
        layout.addWidget(self.blend)
        return box

    def _drag_is_one_step(self, slider: FloatSlider) -> None:
        slider.slider.sliderPressed.connect(self.controller.begin_gesture)
        slider.slider.sliderReleased.connect(self.controller.end_gesture)

    # --- edits ------------------------------------------------------------------------------------------

    def _commit(self, **changes) -> None:
        state = self.controller.state
        if state is not None:
            self.controller.commit(state.replace(**changes))

    def _edit(self, **changes) -> None:
        state = self.controller.state
        if state is not None:
            self.controller.edit(state.replace(**changes))

    def random(self) -> None:
        self._commit(seed=random_seed(), w=None)

    def step_seed(self, delta: int) -> None:
        state = self.controller.state
        if state is not None:
            self._commit(seed=min(max(state.seed + delta, 0), SEED_LIMIT), w=None)

    def reset(self) -> None:
        state = self.controller.state
        if state is not None:
            self.controller.commit(RenderState(model_id=state.model_id, seed=state.seed, w=state.w))

    def add_favourite(self) -> None:
        if self.controller.state is not None:
            self.controller.add_favourite()

    def _remove_favourite(self) -> None:
        row = self.favourites.currentRow()
        if row >= 0:
            self.controller.remove_favourite(row)

    def _direction_changed(self, direction_id: str, amount: float, layers: tuple[int, int]) -> None:
        state = self.controller.state
        if state is None:
            return
        edits, found = [], False
        for edit in state.edits:
            if edit.direction_id == direction_id:
                found = True
                if amount != 0:
                    edits.append(Edit(direction_id, amount, layers))
            else:
                edits.append(edit)
        if not found and amount != 0:
            edits.append(Edit(direction_id, amount, layers))
        self.controller.edit(state.replace(edits=tuple(edits)))

    # --- directions -------------------------------------------------------------------------------------

    def _set_directions(self, directions: list[Direction]) -> None:
        for row in self.rows.values():
            row.deleteLater()
        self.rows = {}
        session = self.controller.session
        if session is None:
            self.directions_status.setText("Open a model to edit its latent directions.")
            return
        if not directions:
            self.directions_status.setText("Finding the main directions of this model’s latent space…")
            return
        presets = presets_for(session.num_ws)
        for direction in directions:
            row = DirectionRow(direction, presets, session.num_ws, amount_range(direction))
            row.changed.connect(self._direction_changed)
            self._drag_is_one_step(row.slider)
            row.move_requested.connect(self.move_direction)
            row.rename_requested.connect(self.rename_direction_dialog)
            self.rows_layout.addWidget(row)
            self.rows[direction.id] = row
        self._filter_rows()
        if self.controller.state is not None:
            self._sync(self.controller.state)

    def _filter_rows(self) -> None:
        method = self.method_filter.currentData()
        for row in self.rows.values():
            row.setVisible(not method or row.method == method)
        self._update_directions_status()

    def _update_directions_status(self) -> None:
        if not self.rows:
            return
        state = self.controller.state
        hidden = [e for e in (state.edits if state else ()) if e.direction_id in self.rows
                  and self.rows[e.direction_id].isHidden()]
        text = "Drag a slider to move the image along a direction."
        if hidden:
            text += f" {len(hidden)} edit(s) in other families are applied too."
        self.directions_status.setText(text)

    def move_direction(self, direction_id: str, delta: int) -> None:
        ids = [d.id for d in self.controller.directions]
        index = ids.index(direction_id)
        target = min(max(index + delta, 0), len(ids) - 1)
        if target != index:
            ids.insert(target, ids.pop(index))
            self.controller.change_directions(lambda session: session.reorder_directions(ids))

    def rename_direction_dialog(self, direction_id: str) -> None:
        row = self.rows[direction_id]
        name, ok = QInputDialog.getText(self, "Rename direction", "Name:", text=row.name_label.text())
        if ok and name.strip():
            new_name = name.strip()
            self.controller.change_directions(lambda s: s.rename_direction(direction_id, new_name))

    def save_direction_dialog(self) -> None:
        state = self.controller.state
        if state is None or not state.edits:
            self.controller.message.emit("info", "Move direction sliders first, then save them as one.")
            return
        name, ok = QInputDialog.getText(self, "Save direction", "Name for the combined direction:")
        if ok and name.strip():
            self.save_direction(name.strip())

    def save_direction(self, name: str) -> Task | None:
        """The current edits summed into one direction; the image keeps its look with that slider at 1."""
        state = self.controller.state
        by_id = {d.id: d for d in self.controller.directions}
        vector = sum(edit.amount * np.asarray(by_id[edit.direction_id].vector) for edit in state.edits)
        layers = (min(e.layers[0] for e in state.edits), max(e.layers[1] for e in state.edits))

        def use(direction: Direction) -> None:
            self.method_filter.setCurrentIndex(self.method_filter.findData("user"))
            self.controller.commit(self.controller.state.replace(edits=(Edit(direction.id, 1.0, layers),)))

        return self.controller.change_directions(
            lambda session: session.save_direction(name, vector, layers), then=use
        )

    # --- reactions --------------------------------------------------------------------------------------

    def _on_model_changed(self) -> None:
        session = self.controller.session
        self.setEnabled(session is not None)
        if session is not None:
            self.cutoff.setMaximum(session.num_ws)
        self.camera.setVisible(session is not None and session.has_camera)
        self._set_directions(self.controller.directions)
        self.grid.clear()  # another model's thumbnails must not stand in for this one's
        self.render_grid()

    def _sync(self, state: RenderState) -> None:
        """Show `state` in every control without emitting edits (undo, redo, restore, favourites)."""
        for widget in (self.seed, self.cutoff, self.noise_mode):
            widget.blockSignals(True)
        self.seed.setValue(state.seed)
        self.cutoff.setValue(state.cutoff or 0)
        self.noise_mode.setCurrentText(state.noise_mode)
        for widget in (self.seed, self.cutoff, self.noise_mode):
            widget.blockSignals(False)
        self.psi.set_value(state.psi)
        self.noise_strength.set_value(state.noise_strength)
        self.camera.show_state(state)
        self.latent_note.setText("latent from a recipe (overrides the seed)" if state.w is not None else "")
        edits = {edit.direction_id: edit for edit in state.edits}
        for direction_id, row in self.rows.items():
            edit = edits.get(direction_id)
            row.set_edit(edit.amount if edit else 0.0, edit.layers if edit else row.layer_range())
        self._update_directions_status()
        if grid_look(state) != self._grid_look:
            self._grid_refresh.start()

    def render_grid(self) -> None:
        """Render one page of seeds off the GUI thread, each as a click on it would show it (only the seed
        differs from the image); a newer page or look cancels the one still rendering."""
        self._grid_refresh.stop()
        if self._grid_task is not None:
            self._grid_task.cancel()
        state = self.controller.state
        if self.controller.session is None or state is None:
            self._grid_look = None
            self.grid.clear()
            return
        self._grid_look = grid_look(state)
        first = self.page.value() * GRID_PAGE
        seeds = list(range(first, min(first + GRID_PAGE, SEED_LIMIT + 1)))
        if self.grid.payloads() != seeds:  # a new look keeps the old thumbnails until the new ones land
            self.grid.set_items([(str(seed), seed) for seed in seeds])
        states = [state.replace(seed=seed, w=None) for seed in seeds]
        self._grid_task = self.controller.render_thumbnails(
            states, GRID_ICON, lambda item: self.grid.set_image(*item)
        )

    def _refresh_favourites(self) -> None:
        if self._favourite_task is not None:
            self._favourite_task.cancel()
        favourites = self.controller.favourites
        self.favourites.set_items([(f"seed {s.seed}", s) for s in favourites])
        self.favourites_hint.setVisible(not favourites)
        self._favourite_task = self.controller.render_thumbnails(
            favourites, FAVOURITE_ICON, lambda item: self.favourites.set_image(*item)
        )

    def grid_busy(self) -> bool:
        tasks = (self._grid_task, self._favourite_task)
        return self._grid_refresh.isActive() or any(task is not None and not task.ended for task in tasks)
