"""The UI's one handle on the engine: the open model, the render state with its undo history, live renders,
favourites and background tasks. Panels read and change the state only through this object."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from studio.engine.library import ModelEntry, ModelLibrary
from studio.engine.renderer import Renderer, RenderResult
from studio.engine.session import Direction, Session
from studio.engine.state import History, RenderState
from studio.ui import settings
from studio.ui.images import thumbnail
from studio.ui.workers import Task, TaskRunner

log = logging.getLogger(__name__)

REST_MS = 150  # after the last live change, the full-resolution render follows this much later
STORE_MS = 1000  # the shown state is written to the settings this long after it last changed (and on close)


class StudioController(QObject):
    """Owns the Session and Renderer; every render happens on the renderer's or a task's thread."""

    model_changed = Signal()  # a model was opened or closed (`entry`/`session` may be None)
    loading_changed = Signal(bool)
    state_changed = Signal(object)  # RenderState, after every edit, undo or restore
    image_ready = Signal(object)  # RenderResult now on the canvas (preview or full)
    directions_changed = Signal(list)  # list[Direction]
    history_changed = Signal()
    favourites_changed = Signal()
    message = Signal(str, str)  # level ("info" | "error"), text
    _rendered = Signal(object)  # RenderResult from the renderer thread, queued to the GUI thread

    def __init__(self, library: ModelLibrary, parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.entry: ModelEntry | None = None
        self.session: Session | None = None
        self.state: RenderState | None = None
        self.history = History()
        self.result: RenderResult | None = None
        self.directions: list[Direction] = []
        self.favourites: list[RenderState] = []
        self.loading = False
        self._closed = False
        self.tasks = TaskRunner(max_threads=2, parent=self)
        self.renderer = Renderer()
        self._rendered.connect(self._on_rendered)
        self._rest = QTimer(self, singleShot=True, interval=REST_MS, timeout=self._settle)
        self._gesture = False  # a slider is held down: its drag becomes one undo step when it is let go
        self._last_request: tuple[RenderState, bool] | None = None
        self._store = QTimer(self, singleShot=True, interval=STORE_MS, timeout=self._store_state)
        self.state_changed.connect(lambda _state: self._store.start())

    # --- models -----------------------------------------------------------------------------------------

    def open_model(
        self,
        entry: ModelEntry,
        state: RenderState | None = None,
        session_factory: Callable[[str | None, str | None], Session] | None = None,
    ) -> Task:
        """Load `entry` off the GUI thread, then show `state` (default: the image this model showed last, so a
        restart or a switch of models comes back to it; seed 0 the first time). `session_factory(device,
        precision)` builds another kind of session (a blend) in place of `Session(entry)`."""
        state = state or self._stored_state(entry.id)
        store = settings.app_settings()
        device = str(store.value(settings.DEVICE, "auto"))
        precision = str(store.value(settings.PRECISION, "auto"))
        self._set_loading(True)

        def load(_task: Task) -> Session:
            build = session_factory or (lambda dev, prec: Session(entry, device=dev, precision=prec))
            return build(None if device == "auto" else device, None if precision == "auto" else precision)

        return self.tasks.start(
            load,
            on_finished=lambda session: self._session_loaded(session.entry, session, state),  # a blend names itself
            on_failed=self._load_failed,
        )

    def close_model(self) -> None:
        self._flush_store()
        self._rest.stop()
        self._gesture = False
        self.renderer.set_session(None)
        self.entry = self.session = self.state = self.result = None
        self.history = History()
        self.directions, self.favourites = [], []
        self.history_changed.emit()
        self.directions_changed.emit([])
        self.favourites_changed.emit()
        self.model_changed.emit()

    def _session_loaded(self, entry: ModelEntry, session: Session, state: RenderState | None) -> None:
        if self._closed:  # the window closed while the model was loading
            return
        self._flush_store()  # the model being left keeps its last image
        self._rest.stop()
        self._gesture = False
        self.entry, self.session, self.result = entry, session, None
        self.renderer.set_session(session)
        session.compile_in_background()  # renders go on eagerly until the compiled display path takes over
        settings.app_settings().setValue(settings.LAST_MODEL, entry.id)
        self.state = (state or RenderState(model_id=entry.id, seed=entry.cover_seed)).replace(model_id=entry.id)
        self.history = History()
        self.history.push(self.state)
        self.directions = []
        self.favourites = self._load_favourites(entry.id)
        self._request(self.state, False)
        self._set_loading(False)
        self.model_changed.emit()
        self.favourites_changed.emit()
        self.directions_changed.emit([])
        self.state_changed.emit(self.state)
        self.history_changed.emit()
        self.tasks.start(
            lambda _task: session.directions(),
            on_finished=lambda directions: self._directions_loaded(session, directions),
            on_failed=lambda text: self.message.emit("error", f"Latent directions unavailable: {text}"),
        )

    def _load_failed(self, text: str) -> None:
        self._set_loading(False)
        self.message.emit("error", text)

    def _set_loading(self, loading: bool) -> None:
        self.loading = loading
        self.loading_changed.emit(loading)

    def _directions_loaded(self, session: Session, directions: list[Direction]) -> None:
        if session is self.session:
            self.directions = list(directions)
            self.directions_changed.emit(self.directions)

    def change_directions(
        self, change: Callable[[Session], object], then: Callable[[object], None] | None = None
    ) -> Task | None:
        """Save, rename or reorder directions off the GUI thread (the session lock may be held by a render),
        then show the new list and hand `change`'s result to `then`."""
        session = self.session
        if session is None:
            return None

        def done(out: tuple[object, list[Direction]]) -> None:
            self._directions_loaded(session, out[1])
            if then is not None and session is self.session:
                then(out[0])

        return self.tasks.start(
            lambda _task: (change(session), session.directions()),
            on_finished=done,
            on_failed=lambda text: self.message.emit("error", text),
        )

    # --- state and rendering ----------------------------------------------------------------------------

    def edit(self, state: RenderState) -> None:
        """A live change (a slider moving): preview now, the full render once it rests. The undo step comes when
        a held slider is let go (`end_gesture`); changes without a held slider (keys, the wheel) become one step
        each time they rest."""
        if self.session is None or state == self.state:
            return
        self.state = state
        self.state_changed.emit(state)
        self._request(state, True)
        self._rest.start()

    def commit(self, state: RenderState) -> None:
        """A discrete change (seed, preset, restore): one undo step and a full render right away."""
        if self.session is None:
            return
        self._rest.stop()
        changed = state != self.state
        self.state = state
        if changed:
            self.state_changed.emit(state)
        self._push(state)
        self._request(state, False)

    def begin_gesture(self) -> None:
        """A slider was pressed: however long its drag pauses, it becomes one undo step at `end_gesture`."""
        if self._rest.isActive() and self.state is not None:
            self._push(self.state)  # a key or wheel change just before the press stays a step of its own
        self._gesture = True

    def end_gesture(self) -> None:
        """The slider was let go: its drag becomes one undo step and the full render follows right away."""
        if self._gesture:
            self._gesture = False
            self._rest.stop()
            self._settle()

    def _request(self, state: RenderState, preview: bool) -> None:
        if not self._closed:
            self._last_request = (state, preview)
            self.renderer.request(state, preview, self._rendered.emit)

    def rerender(self, preview: bool = False) -> None:
        """Render the current state again: the session's model changed under it (a blend's curve moved)."""
        if self.state is not None:
            self._request(self.state, preview)

    def _settle(self) -> None:
        if self.state is None:
            return
        if not self._gesture:
            self._push(self.state)
        if self._last_request != (self.state, False):  # a drag that rested before it was let go is drawn already
            self._request(self.state, False)

    def _push(self, state: RenderState) -> None:
        if self.history.current != state:
            self.history.push(state)
            self.history_changed.emit()

    def undo(self) -> None:
        self._step(self.history.undo)

    def redo(self) -> None:
        self._step(self.history.redo)

    def _step(self, move: Callable[[], RenderState | None]) -> None:
        if self._rest.isActive() or self._gesture:  # a pending live edit becomes its own step before leaving it
            self._rest.stop()
            self._gesture = False
            self._settle()
        state = move()
        self.history_changed.emit()
        if state is not None:
            self.state = state
            self.state_changed.emit(state)
            self._request(state, False)

    def _on_rendered(self, result: RenderResult) -> None:
        if self._closed:
            return
        if result.error:
            self.message.emit("error", f"Rendering failed: {result.error}")
            return
        if self.entry is None or result.state.model_id != self.entry.id:
            return  # a late frame of a model that is no longer open
        self.result = result
        self.image_ready.emit(result)

    def settled(self) -> bool:
        """True when the canvas shows the full render of the current state and nothing is pending."""
        return (
            not self.loading
            and self.result is not None
            and not self.result.preview
            and self.result.state == self.state
            and not self._rest.isActive()
        )

    # --- background renders for thumbnails and grids ----------------------------------------------------

    def render_thumbnails(
        self, states: Sequence[RenderState], size: int, on_item: Callable[[tuple[int, QImage]], None]
    ) -> Task | None:
        """Render `states` as previews off the GUI thread; `on_item((index, image))` as each one lands."""
        session = self.session
        if session is None:
            return None
        states = list(states)

        def work(task: Task) -> None:
            for index, state in enumerate(states):
                if task.cancelled():
                    return
                task.emit_item((index, thumbnail(session.render(state, preview=True, remember=False), size)))

        return self.tasks.start(
            work, on_item=on_item, on_failed=lambda text: self.message.emit("error", text)
        )

    def full_image(self, state: RenderState) -> np.ndarray | None:
        """The canvas image when it is the full render of `state` (exports then need no second render)."""
        result = self.result
        return result.image if result is not None and not result.preview and result.state == state else None

    # --- favourites -------------------------------------------------------------------------------------

    def add_favourite(self, state: RenderState | None = None) -> None:
        state = state or self.state
        if state is None or state in self.favourites:
            return
        self.favourites.append(state)
        self._save_favourites()

    def remove_favourite(self, index: int) -> None:
        del self.favourites[index]
        self._save_favourites()

    def _save_favourites(self) -> None:
        if self.entry is not None:
            data = json.dumps([state.to_json() for state in self.favourites])
            settings.app_settings().setValue(settings.favourites_key(self.entry.id), data)
        self.favourites_changed.emit()

    @staticmethod
    def _load_favourites(model_id: str) -> list[RenderState]:
        raw = settings.app_settings().value(settings.favourites_key(model_id), "[]")
        try:
            return [RenderState.from_json(item) for item in json.loads(str(raw))]
        except (ValueError, TypeError, KeyError) as exc:  # a hand-edited settings file must not stop the app
            log.warning("ignoring unreadable favourites of %s: %s", model_id, exc)
            return []

    # --- the last image of each model ---------------------------------------------------------------------

    def _store_state(self) -> None:
        if self.entry is not None and self.state is not None:
            settings.app_settings().setValue(settings.state_key(self.entry.id), self.state.to_json())

    def _flush_store(self) -> None:
        if self._store.isActive():
            self._store.stop()
            self._store_state()

    @staticmethod
    def _stored_state(model_id: str) -> RenderState | None:
        raw = settings.app_settings().value(settings.state_key(model_id))
        if raw is None:
            return None
        try:
            return RenderState.from_json(str(raw))
        except ValueError as exc:  # a hand-edited settings file must not stop the model from opening
            log.warning("ignoring the unreadable last image of %s: %s", model_id, exc)
            return None

    # --- lifetime ---------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop rendering and wait for background work, before the widgets it reports to go away."""
        self._flush_store()
        self._closed = True
        self._rest.stop()
        self.renderer.shutdown()
        self.tasks.shutdown()
