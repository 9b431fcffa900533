"""Run a generator off the GUI thread, with cancel, or inline for tests and debugging.

:func:`start_job` wraps a generator in napari's ``GeneratorWorker`` (``create_worker``): each
yielded value reaches ``on_yield`` on the GUI thread; the return value reaches ``on_return``;
an exception reaches ``on_error`` (``_ignore_errors=True``: no traceback dialog, the widget
shows a clear notification itself); ``on_finish`` always runs last, so buttons and progress
bars are reset on errors too. ``Job.cancel()`` sets the job's cancel event (checked by the
generator between steps, e.g. between slices) and asks the worker to quit at its next yield.

With ``NAPARI_CONSIGN_NOTHREADS=1`` the same generator runs inline on the calling thread, with
the same callbacks (``Job.cancel()`` from a callback stops it at the next yield).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator
from typing import Any

from ..conformal.errors import Cancelled

NOTHREADS_ENV = "NAPARI_CONSIGN_NOTHREADS"

Callback = Callable[..., Any] | None


def threads_disabled() -> bool:
    """True when ``NAPARI_CONSIGN_NOTHREADS`` asks to run work inline."""
    return os.environ.get(NOTHREADS_ENV, "").strip().lower() in ("1", "true", "yes")


class Job:
    """A running (or finished) generator job."""

    def __init__(self, cancel_event: threading.Event) -> None:
        self.cancel_event = cancel_event
        self.running = False
        self.cancelled = False
        self.worker: Any = None
        self._start: Callable[[], None] | None = None

    def start(self) -> None:
        """Start the job (inline jobs return when done); a second call does nothing."""
        start, self._start = self._start, None
        if start is not None:
            start()

    def cancel(self) -> None:
        """Stop at the next step; ``on_abort`` (not ``on_error``) reports it."""
        self.cancelled = True
        self.cancel_event.set()
        if self.worker is not None:
            self.worker.quit()


def start_job(
    make_generator: Callable[[threading.Event], Generator],
    *,
    on_yield: Callback = None,
    on_return: Callback = None,
    on_error: Callback = None,
    on_abort: Callback = None,
    on_finish: Callback = None,
    start: bool = True,
) -> Job:
    """Start ``make_generator(cancel_event)`` in a worker thread (or inline) and return a Job.

    With ``start=False`` the job is returned unstarted: keep it, then call ``Job.start()``
    (so callbacks of an inline job can already reach it, e.g. to cancel).

    A generator that raises :class:`Cancelled` (cancel event seen inside a long step) is
    reported through ``on_abort`` like a quit at a yield.
    """
    event = threading.Event()
    job = Job(event)
    state = {"aborted": False}

    def _yield(value: Any) -> None:
        if on_yield is not None and not state["aborted"]:
            on_yield(value)

    def _return(value: Any) -> None:
        if job.cancelled:
            _abort()
        elif on_return is not None:
            on_return(value)

    def _error(exc: BaseException) -> None:
        if isinstance(exc, Cancelled) or job.cancelled:
            _abort()
        elif on_error is not None:
            on_error(exc)

    def _abort() -> None:
        if state["aborted"]:
            return
        state["aborted"] = True
        if on_abort is not None:
            on_abort()

    def _finish() -> None:
        job.running = False
        if on_finish is not None:
            on_finish()

    gen = make_generator(event)
    job.running = True
    if threads_disabled():
        job._start = lambda: _run_inline(gen, job, _yield, _return, _error, _abort, _finish)
    else:
        from napari.qt.threading import create_worker

        def _work():
            return (yield from gen)

        worker = create_worker(_work, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(_yield)
        worker.returned.connect(_return)
        worker.errored.connect(_error)
        worker.aborted.connect(_abort)
        worker.finished.connect(_finish)
        job.worker = worker
        job._start = worker.start
    if start:
        job.start()
    return job


def _run_inline(gen, job, on_yield, on_return, on_error, on_abort, on_finish) -> None:
    try:
        while True:
            if job.cancelled:
                gen.close()
                on_abort()
                break
            try:
                value = next(gen)
            except StopIteration as stop:
                on_return(stop.value)
                break
            on_yield(value)
    except Exception as exc:  # reported to the widget, never raised into Qt
        on_error(exc)
    finally:
        on_finish()
