"""A dedicated thread that runs jobs one at a time and wakes the event loop when each is done.

Some work must always run on the same thread (a .NET runtime, a vendor library that keeps
thread-local state, an SQLite connection) or must not hold an anyio worker thread while it waits.
:class:`DedicatedThread` owns one daemon thread and a queue of :class:`Job`; a caller on the event
loop submits a job and awaits it, and the thread hands the result back with
``loop.call_soon_threadsafe`` (one thread switch per call, no worker thread waiting for it).

* ``await thread.call(fn, *args)``: the job runs to its end even if the caller is cancelled (the
  wait is shielded): for work that must not be lost half-way (a journal write).
* ``await thread.run(fn, *args)``: cancelling the wait drops the job if it has not started; a
  started job goes on and its result is discarded.
* ``thread.submit(fn, *args)``: the :class:`Job` itself, for callers that bound the wait themselves
  and then :meth:`Job.drop` it; ``thread.busy_for()`` says how long the current job has run, and
  :meth:`DedicatedThread.drop_pending` drops every job still queued (each waiter wakes at once).

The thread is a daemon: a job that never returns does not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["DedicatedThread", "Job", "JobDropped"]

T = TypeVar("T")


class JobDropped(Exception):
    """The job was dropped before it started (its caller gave up, or the thread stopped)."""


def _wakeup() -> Callable[[Callable[[], object]], object]:
    """A thread-safe, non-blocking "run this on the current event loop soon" (asyncio or trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        trio = importlib.import_module("trio")
        run_sync_soon: Callable[[Callable[[], object]], object] = trio.lowlevel.current_trio_token().run_sync_soon
        return run_sync_soon
    return loop.call_soon_threadsafe


class Job(Generic[T]):
    """One job for a :class:`DedicatedThread`: ``queued``, ``running``, ``done`` or ``dropped``.

    ``abandoned`` is set when its caller gave up on it (dropped, or stopped waiting while it ran).
    """

    QUEUED, RUNNING, DONE, DROPPED = "queued", "running", "done", "dropped"

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], *, asynchronous: bool = True) -> None:
        self._fn: Callable[..., T] | None = fn
        self._args: tuple[Any, ...] = args
        self._lock = threading.Lock()
        self._state = self.QUEUED
        self._result: Any = None
        self._error: BaseException | None = None
        # Only a blocking waiter needs a threading.Event; an async one is woken through its loop.
        self._finished = None if asynchronous else threading.Event()
        self._wake = _wakeup() if asynchronous else None
        self._event = anyio.Event() if asynchronous else None
        self.started: float | None = None
        self.abandoned = False

    @property
    def state(self) -> str:
        return self._state

    def drop(self) -> bool:
        """Give up on the job: it never runs if it has not started.  Whether it was dropped."""
        with self._lock:
            self.abandoned = True
            if self._state == self.QUEUED:
                self._state = self.DROPPED
                self._fn, self._args = None, ()
        dropped = self._state == self.DROPPED
        if dropped:
            self._finish()
        return dropped

    def _execute(self, translate: Callable[[BaseException], BaseException] | None) -> None:
        """Run on the dedicated thread."""
        with self._lock:
            if self._state != self.QUEUED:
                return
            self._state = self.RUNNING
            self.started = time.monotonic()
            fn, args = self._fn, self._args
            self._fn, self._args = None, ()
        assert fn is not None
        try:
            self._result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, never lost
            self._error = translate(exc) if translate is not None else exc
            del exc
        finally:
            del fn, args
            with self._lock:
                self._state = self.DONE
            self._finish()

    def _finish(self) -> None:
        if self._finished is not None:
            self._finished.set()
        if self._wake is not None and self._event is not None:
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody waits
                self._wake(self._event.set)

    def outcome(self) -> T:
        """The job's result, or its error raised; :class:`JobDropped` if it never ran."""
        if self._state == self.DROPPED:
            raise JobDropped("the job was dropped before it started")
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        result: T = self._result
        return result

    async def result(self) -> T:
        """Wait for the job without blocking the event loop; its result, or its error raised.
        Cancelling the wait drops the job if it has not started."""
        try:
            await self.wait()
        except BaseException:
            self.drop()
            raise
        return self.outcome()

    async def wait(self) -> None:
        """Wait, without blocking the event loop, until the job is done or dropped."""
        assert self._event is not None, "a blocking job: use wait_blocking()"
        await self._event.wait()

    def wait_blocking(self, timeout: float | None) -> bool:
        """Block until the job is done or dropped (start-up work, never on the event loop)."""
        assert self._finished is not None, "an asynchronous job: await wait()"
        return self._finished.wait(timeout)


_STOP = object()


class DedicatedThread:
    """One daemon thread running submitted jobs in order.

    ``translate`` (optional) runs on the thread on a job's exception, before it is handed to the
    caller (the .NET bridge turns .NET exceptions into Python ones there).
    """

    def __init__(self, name: str, *, translate: Callable[[BaseException], BaseException] | None = None) -> None:
        self.name = name
        self._translate = translate
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: set[Job[Any]] = set()
        self._pending_lock = threading.Lock()
        self._current: Job[Any] | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start the thread (idempotent; :meth:`submit` starts it too)."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Let the thread finish the jobs queued so far, then end; wait ``timeout`` for it."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        if threading.current_thread() is not thread:
            thread.join(timeout)
        with self._start_lock:
            if self._thread is thread and not thread.is_alive():
                self._thread = None

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[..., T], *args: Any, asynchronous: bool = True) -> Job[T]:
        """Queue ``fn(*args)``; ``asynchronous`` jobs must be submitted from the event loop."""
        job: Job[T] = Job(fn, args, asynchronous=asynchronous)
        self.start()
        with self._pending_lock:
            self._pending.add(job)
        self._queue.put(job)
        return job

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread; the job runs to its end even if the caller is cancelled,
        and the caller waits for it (the cancellation takes effect at its next checkpoint)."""
        job = self.submit(fn, *args)
        with anyio.CancelScope(shield=True):
            await job.wait()
        return job.outcome()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread; cancelling drops the job if it has not started."""
        return await self.submit(fn, *args).result()

    def busy_for(self) -> float | None:
        """Seconds the current job has been running, or None when the thread is idle."""
        current = self._current
        # A finished job wakes its caller before the thread clears ``_current``: judge by its state.
        if current is None or current.state != Job.RUNNING or current.started is None:
            return None
        return time.monotonic() - current.started

    def current(self) -> Job[Any] | None:
        """The job running now, if any."""
        return self._current

    def drop_pending(self) -> int:
        """Drop every job that has not started (their waiters wake at once); how many."""
        with self._pending_lock:
            pending = [job for job in self._pending if job.state == Job.QUEUED]
        return sum(job.drop() for job in pending)

    def _main(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            with self._pending_lock:
                self._pending.discard(job)
            self._current = job
            try:
                job._execute(self._translate)
            finally:
                self._current = None
                del job
