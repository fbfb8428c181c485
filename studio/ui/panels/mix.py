"""Mix panel: style mixing. Sources (the current image, seeds, favourites) are painted onto a strip of the
model's w layers; the result renders live on the canvas. A mixing grid shows every pair at once."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.engine.export import export_image
from studio.engine.mixing import mixing_grid
from studio.engine.state import SEED_LIMIT, MixSource, RenderState
from studio.ui.controller import StudioController
from studio.ui.images import to_qimage
from studio.ui.panels.explore import presets_for
from studio.ui.widgets.canvas import Canvas
from studio.ui.widgets.layer_strip import LayerStrip, source_colour
from studio.ui.widgets.scroll_column import scroll_column

SOURCE_ICON = 48


@dataclass(frozen=True)
class Source:
    """A mixing source: the current image (neither seed nor w), a seed, or a latent from a favourite."""

    label: str
    seed: int | None = None
    w: tuple[float, ...] | None = None

    def matches(self, mix: MixSource) -> bool:
        return self.seed == mix.seed and self.w == mix.w

    def state(self, base: RenderState) -> RenderState:
        """How this source looks on its own, with the base's truncation and noise."""
        if self.seed is None and self.w is None:
            return base.replace(mix=())
        return base.replace(seed=base.seed if self.seed is None else self.seed, w=self.w, edits=(), mix=())


CURRENT = Source("Current image")


class MixPanel(QWidget):
    def __init__(self, controller: StudioController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.sources: list[Source] = [CURRENT]
        self._thumb_task = None
        self._grid_task = None
        self._thumb_base: RenderState | None = None
        self.grid_image: np.ndarray | None = None

        scroll = scroll_column(self._sources_box(), self._layers_box(), self._grid_box())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        controller.model_changed.connect(self._on_model_changed)
        controller.state_changed.connect(self._sync)
        self._on_model_changed()

    # --- construction -----------------------------------------------------------------------------------

    def _sources_box(self) -> QGroupBox:
        self.list = QListWidget()
        self.list.setIconSize(QSize(SOURCE_ICON, SOURCE_ICON))
        self.list.setMinimumHeight(4 * (SOURCE_ICON + 6))
        self.list.setAcceptDrops(False)
        self.list.currentRowChanged.connect(self._select_source)
        self.seed = QSpinBox(minimum=0, maximum=SEED_LIMIT, prefix="seed ")
        add_seed = QPushButton("Add seed", toolTip="Add this seed as a source")
        add_seed.clicked.connect(lambda: self.add_seed(self.seed.value()))
        add_random = QPushButton("Add random")
        add_random.clicked.connect(self._add_random)
        add_favourites = QPushButton("Add favourites", toolTip="Add every favourite as a source")
        add_favourites.clicked.connect(self.add_favourites)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(lambda: self.remove_source(self.list.currentRow()))
        buttons = QGridLayout()
        buttons.addWidget(self.seed, 0, 0)
        buttons.addWidget(add_seed, 0, 1)
        buttons.addWidget(add_random, 0, 2)
        buttons.addWidget(add_favourites, 1, 0, 1, 2)
        buttons.addWidget(self.remove_button, 1, 2)
        box = QGroupBox("Sources")
        layout = QVBoxLayout(box)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        return box

    def _layers_box(self) -> QGroupBox:
        self.strip = LayerStrip()
        self.strip.changed.connect(self._strip_painted)
        hint = QLabel("Select a source, then click or drag over the layers (coarse → fine) to give it.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        presets = QHBoxLayout()
        self.preset_buttons: dict[str, QPushButton] = {}
        for name in ("coarse", "middle", "fine", "all"):
            button = QPushButton(name.capitalize(), toolTip=f"Give the {name} layers to the selected source")
            button.clicked.connect(lambda _checked=False, name=name: self.assign_preset(name))
            presets.addWidget(button)
            self.preset_buttons[name] = button
        clear = QPushButton("Clear", toolTip="Every layer from the current image: no mixing")
        clear.clicked.connect(self.clear)
        presets.addWidget(clear)
        box = QGroupBox("Layers")
        layout = QVBoxLayout(box)
        layout.addWidget(self.strip)
        layout.addLayout(presets)
        layout.addWidget(hint)
        return box

    def _grid_box(self) -> QGroupBox:
        self.grid_layers = QComboBox()
        self.grid_layers.addItems(["coarse", "middle", "fine"])
        self.grid_layers.setToolTip("Which layers each column gives to each row")
        self.grid_button = QPushButton("Render grid")
        self.grid_button.clicked.connect(self.render_grid)
        self.grid_export = QPushButton("Export grid…")
        self.grid_export.setEnabled(False)
        self.grid_export.clicked.connect(self._export_grid_dialog)
        self.grid_canvas = Canvas()
        self.grid_canvas.setMinimumHeight(220)
        self.grid_status = QLabel("Rows keep their look; columns lend the chosen layers. Needs two sources.")
        self.grid_status.setObjectName("hint")
        self.grid_status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layers"))
        row.addWidget(self.grid_layers, 1)
        row.addWidget(self.grid_button)
        row.addWidget(self.grid_export)
        box = QGroupBox("Mixing grid")
        layout = QVBoxLayout(box)
        layout.addLayout(row)
        layout.addWidget(self.grid_status)
        layout.addWidget(self.grid_canvas)
        return box

    # --- sources ----------------------------------------------------------------------------------------

    def add_source(self, source: Source) -> int:
        """Add `source` unless it is already there; returns its index and selects it."""
        key = (source.seed, source.w)
        index = next((i for i, s in enumerate(self.sources) if (s.seed, s.w) == key), None)
        if index is None:
            self.sources.append(source)
            index = len(self.sources) - 1
            self._rebuild_list()
        self.list.setCurrentRow(index)
        return index

    def add_seed(self, seed: int) -> int:
        return self.add_source(Source(f"seed {seed}", seed=seed))

    def _add_random(self) -> None:
        self.add_seed(random.randrange(SEED_LIMIT))

    def add_favourites(self) -> None:
        """Favourites lend their edited, untruncated w+ (computed off the GUI thread), so edits carry over."""
        session, favourites = self.controller.session, list(self.controller.favourites)
        if session is None:
            return
        if not favourites:
            self.controller.message.emit("info", "No favourites yet: bookmark images in Explore with F or ★.")
            return

        def latents(_task) -> list[Source]:
            return [
                Source(f"★ seed {state.seed}", seed=state.seed)
                if not state.edits and not state.mix and state.w is None
                else Source(f"★ seed {state.seed} (edited)",
                            w=tuple(session.ws_for_state(state.replace(psi=1.0)).ravel().tolist()))
                for state in favourites
            ]

        self.controller.tasks.start(
            latents,
            on_finished=lambda sources: [self.add_source(source) for source in sources],
            on_failed=lambda text: self.controller.message.emit("error", text),
        )

    def show_example(self) -> None:
        """Two seeds lending their coarse and their fine layers, plus the grid: a first look at mixing."""
        for seed in (1, 2):
            self.add_seed(seed)
        self.list.setCurrentRow(1)
        self.assign_preset("coarse")
        self.list.setCurrentRow(2)
        self.assign_preset("fine")
        self.render_grid()

    def remove_source(self, index: int) -> None:
        if index <= 0:  # the current image is the base of every mix
            return
        del self.sources[index]
        assignment = [0 if a == index else a - (a > index) for a in self.strip.assignment]
        self._rebuild_list()
        self._apply(assignment, live=False)

    def _rebuild_list(self) -> None:
        current = max(self.list.currentRow(), 0)
        self.list.blockSignals(True)
        self.list.clear()
        for index, source in enumerate(self.sources):
            item = QListWidgetItem(_swatch(index), source.label)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.list.setCurrentRow(min(current, len(self.sources) - 1))
        self._refresh_thumbnails(force=True)

    def _select_source(self, index: int) -> None:
        self.strip.active = max(index, 0)
        self.remove_button.setEnabled(index > 0)

    def _refresh_thumbnails(self, force: bool = False) -> None:
        base = self.controller.state
        if base is None or not self.isVisible():
            return
        base = base.replace(mix=())
        if not force and base == self._thumb_base:
            return
        self._thumb_base = base
        if self._thumb_task is not None:
            self._thumb_task.cancel()
        self._thumb_task = self.controller.render_thumbnails(
            [source.state(base) for source in self.sources], SOURCE_ICON, self._set_thumbnail
        )

    def _set_thumbnail(self, item: tuple[int, QImage]) -> None:
        index, image = item
        if index < self.list.count():
            self.list.item(index).setIcon(QIcon(_framed(image, index)))

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        self._refresh_thumbnails()

    # --- layers -----------------------------------------------------------------------------------------

    def assign_preset(self, name: str) -> None:
        session = self.controller.session
        if session is None:
            return
        start, end = presets_for(session.num_ws)[name]
        active = max(self.list.currentRow(), 0)
        assignment = [active if start <= i < end else a for i, a in enumerate(self.strip.assignment)]
        self._apply(assignment, live=False)

    def clear(self) -> None:
        self._apply([0] * len(self.strip.assignment), live=False)

    def _strip_painted(self, assignment: list[int]) -> None:
        self._apply(assignment, live=True)

    def _apply(self, assignment: list[int], live: bool) -> None:
        state = self.controller.state
        if state is None:
            return
        self.strip.set_assignment(assignment)
        mix = tuple(
            MixSource(source.seed, source.w, tuple(i for i, a in enumerate(assignment) if a == k))
            for k, source in enumerate(self.sources)
            if k > 0 and k in assignment
        )
        (self.controller.edit if live else self.controller.commit)(state.replace(mix=mix))

    def _sync(self, state: RenderState) -> None:
        """Show the state's mix on the strip, adding sources it names that the list lacks (undo, recipes)."""
        session = self.controller.session
        if session is None:
            return
        assignment = [0] * session.num_ws
        added = False
        for mix in state.mix:
            index = next((i for i, s in enumerate(self.sources) if i > 0 and s.matches(mix)), None)
            if index is None:
                label = f"seed {mix.seed}" if mix.seed is not None else "latent from a recipe"
                self.sources.append(Source(label, seed=mix.seed, w=mix.w))
                index, added = len(self.sources) - 1, True
            for layer in mix.layers:
                if 0 <= layer < len(assignment):
                    assignment[layer] = index
        if added:
            self._rebuild_list()
        self.strip.set_assignment(assignment)
        self._refresh_thumbnails()

    def _on_model_changed(self) -> None:
        session = self.controller.session
        self.setEnabled(session is not None)
        self.sources = [CURRENT]
        self._thumb_base = None
        self.grid_image = None
        self.grid_canvas.set_image(QImage())
        self.grid_export.setEnabled(False)
        self._rebuild_list()
        self.strip.set_assignment([0] * session.num_ws if session is not None else [])
        if self.controller.state is not None:
            self._sync(self.controller.state)

    # --- mixing grid ------------------------------------------------------------------------------------

    def render_grid(self) -> None:
        session, state = self.controller.session, self.controller.state
        if session is None or state is None:
            return
        if len(self.sources) < 2:
            self.grid_status.setText("Add at least one more source (a seed or a favourite) to make a grid.")
            return
        base = state.replace(mix=())
        states = [source.state(base) for source in self.sources]
        start, end = presets_for(session.num_ws)[self.grid_layers.currentText()]
        layers = tuple(range(start, end))
        self.grid_button.setEnabled(False)
        self.grid_status.setText("Rendering the grid…")
        self._grid_task = self.controller.tasks.start(
            lambda _task: mixing_grid(session, states, states, layers),
            on_finished=self._grid_done,
            on_failed=self._grid_failed,
        )

    def _grid_done(self, image: np.ndarray) -> None:
        self.grid_image = image
        self.grid_canvas.set_image(to_qimage(image))
        self.grid_button.setEnabled(True)
        self.grid_export.setEnabled(True)
        self.grid_status.setText(
            f"{len(self.sources)} × {len(self.sources)} sources, {self.grid_layers.currentText()} layers "
            "from each column."
        )

    def _grid_failed(self, text: str) -> None:
        self.grid_button.setEnabled(True)
        self.grid_status.setText(text)
        self.controller.message.emit("error", text)

    def _export_grid_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export mixing grid", "mixing-grid.png", "PNG image (*.png)"
        )
        if path:
            self.export_grid(Path(path))

    def export_grid(self, path: Path) -> None:
        image, state, entry = self.grid_image, self.controller.state, self.controller.entry
        self.controller.tasks.start(
            lambda _task: export_image(image, path, "png", 1, state, entry),
            on_finished=lambda written: self.controller.message.emit("info", f"Saved the grid as {written}"),
            on_failed=lambda text: self.controller.message.emit("error", text),
        )

    def busy(self) -> bool:
        return any(t is not None and not t.ended for t in (self._thumb_task, self._grid_task))


def _swatch(index: int) -> QIcon:
    pixmap = QPixmap(SOURCE_ICON, SOURCE_ICON)
    pixmap.fill(source_colour(index))
    return QIcon(pixmap)


def _framed(image: QImage, index: int) -> QPixmap:
    """The thumbnail with a border in its source's strip colour, so list and strip read together."""
    pixmap = QPixmap.fromImage(image)
    painter = QPainter(pixmap)
    painter.setPen(QPen(source_colour(index), 6))
    painter.drawRect(pixmap.rect().adjusted(2, 2, -3, -3))
    painter.end()
    return pixmap
