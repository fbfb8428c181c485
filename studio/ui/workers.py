"""Running engine work off the GUI thread: a cancellable QRunnable whose results arrive as Qt signals."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from studio.engine.renderer import error_message

log = logging.getLogger(__name__)


class TaskSignals(QObject):
    """Emitted from the worker thread; Qt queues them to receivers living on the GUI thread."""

    finished = Signal(object)
    failed = Signal(str)
    progress = Signal(int, int, str)
    item = Signal(object)


class Task(QRunnable):
    """Runs `fn(task)`; `fn` reports through `task.progress`/`task.emit_item` and polls `task.cancelled`."""

    def __init__(self, fn: Callable[[Task], Any]):
        super().__init__()
        self.setAutoDelete(False)
        self.signals = TaskSignals()
        self._fn = fn
        self._cancel = threading.Event()
        self.ended = False  # set on the GUI thread once `finished` or `failed` has been delivered there

    def run(self) -> None:
        try:
            result = self._fn(self)
        except Exception as exc:  # every failure becomes a message for the user, never a crash
            log.exception("background task failed")
            self.signals.failed.emit(error_message(exc))
        else:
            self.signals.finished.emit(result)

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.signals.progress.emit(done, total, message)

    def emit_item(self, item: object) -> None:
        self.signals.item.emit(item)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()


class TaskRunner(QObject):
    """Starts tasks on its own pool and keeps them alive until they end, so shutdown can cancel and wait."""

    def __init__(self, max_threads: int, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._tasks: set[Task] = set()
        self._closed = False

    def start(
        self,
        fn: Callable[[Task], Any],
        on_finished: Callable[[Any], None] | None = None,
        on_failed: Callable[[str], None] | None = None,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_item: Callable[[Any], None] | None = None,
    ) -> Task:
        """Connect before starting: a signal emitted before its connection would be lost."""
        task = Task(fn)
        # The end is one slot, so nobody can see the task ended before its result was handed over.
        task.signals.finished.connect(lambda result: self._deliver(task, on_finished, result))
        task.signals.failed.connect(lambda message: self._deliver(task, on_failed, message))
        for signal, slot in ((task.signals.progress, on_progress), (task.signals.item, on_item)):
            if slot is not None:
                signal.connect(self._guarded(task, slot))
        self._tasks.add(task)
        self._pool.start(task)
        return task

    def _guarded(self, task: Task, slot: Callable[..., None]) -> Callable[..., None]:
        """Progress and items still queued when their task was cancelled (a newer page of thumbnails replaced
        it) or the runner shut down (its widgets are being destroyed) are dropped."""

        def call(*args: Any) -> None:
            if not self._closed and not task.cancelled():
                slot(*args)

        return call

    def _deliver(self, task: Task, slot: Callable[[Any], None] | None, value: Any) -> None:
        task.ended = True
        self._tasks.discard(task)
        if slot is not None and not self._closed:
            slot(value)

    def busy(self) -> bool:
        """Whether a task has yet to deliver its result (its earlier progress and items arrived before)."""
        return bool(self._tasks)

    def shutdown(self, timeout_ms: int = 30_000) -> None:
        """Cancel everything and wait, so no task emits into widgets that are being destroyed."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._pool.clear()
        self._pool.waitForDone(timeout_ms)
        self._tasks.clear()
