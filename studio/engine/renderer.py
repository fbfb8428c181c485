"""Live rendering on one worker thread, so the UI never waits on the generator.

Requests coalesce: while a render runs, newer requests replace the one pending, so a slider dragged faster
than the model renders shows the newest state as soon as possible and never a queue of stale ones. The
newest request is always rendered. A render already running stops early (between blocks of the network) when a
request of the other kind for another state is waiting: a full render that a drag has made stale, or a stale
preview in front of the full render that the resting slider asks for. Two of a kind never stop each other, so a
stream of them still shows every render it lets finish. Callbacks run on the worker thread (the UI hands them
to its own thread); every failure comes back in `RenderResult.error`, never as an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.fast_synthesis import RenderCancelled
from studio.engine.render_threads import RenderThreads
from studio.engine.session import Session
from studio.engine.state import RenderState

log = logging.getLogger(__name__)


@dataclass
class RenderResult:
    """The image of `state` (None when `error` says why it could not be rendered)."""

    state: RenderState
    image: np.ndarray | None
    preview: bool
    elapsed_ms: float
    error: str | None = None


Callback = Callable[[RenderResult], None]


class Renderer:
    """One render thread; `session_factory` (if given) builds the session on that thread at the first request
    that finds none set, so loading a model never blocks the caller either."""

    def __init__(self, session_factory: Callable[[], Session] | None = None):
        self._factory = session_factory
        self._session: Session | None = None
        self._pending: tuple[RenderState, bool, Callback] | None = None
        self._busy = False
        self._stopping = False
        self._wake = threading.Condition()
        self.renders = 0  # how many requests were rendered (the rest were coalesced away or stopped early)
        self.threads = RenderThreads()  # CPU renders: all cores, or one while other work holds some of them
        self._thread = threading.Thread(target=self._run, name="gan-studio-renderer", daemon=True)
        self._thread.start()

    def set_session(self, session: Session | None) -> None:
        """Render later requests with `session` (a render already running finishes with the old one)."""
        with self._wake:
            self._session = session

    def request(self, state: RenderState, preview: bool, callback: Callback) -> None:
        """Render `state` soon; replaces any request still waiting (whose callback is then never called)."""
        with self._wake:
            if self._stopping:
                raise RuntimeError("the renderer has been shut down")
            self._pending = (state, preview, callback)
            self._wake.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; False if `timeout` seconds passed first."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Drop what is pending, let a running render finish (its callback still runs) and stop the thread."""
        with self._wake:
            self._stopping = True
            self._pending = None
            self._wake.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    self._wake.notify_all()
                    return
                (state, preview, callback), self._pending = self._pending, None
                self._busy = True
                session = self._session
            result = self._render(session, state, preview)
            try:
                if result is not None:
                    callback(result)
            except Exception:
                log.exception("render callback failed")
            finally:
                with self._wake:
                    self._busy = False
                    self.renders += result is not None
                    self._wake.notify_all()

    def _superseded(self, state: RenderState, preview: bool) -> bool:
        pending = self._pending  # read without the lock: a stale answer only delays the stop by one block
        return pending is not None and pending[1] != preview and pending[0] != state

    def _render(self, session: Session | None, state: RenderState, preview: bool) -> RenderResult | None:
        start = time.perf_counter()
        try:
            if session is None:
                if self._factory is None:
                    raise RuntimeError("no model is open")
                session = self._factory()
                with self._wake:
                    if self._session is None:
                        self._session = session
            def frame() -> np.ndarray:
                return session.render(state, preview, cancel=lambda: self._superseded(state, preview))

            image = self.threads.render(frame) if session.device.type == "cpu" else frame()
            error = None
        except RenderCancelled:
            return None
        except Exception as exc:  # the UI shows the message; the thread lives on
            log.exception("rendering failed")
            image, error = None, error_message(exc)
        return RenderResult(state, image, preview, (time.perf_counter() - start) * 1000, error)


def error_message(exc: BaseException) -> str:
    """The text to show for `exc` (KeyError's str() would add quotes around its message)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(text) or type(exc).__name__
