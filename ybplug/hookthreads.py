"""Where plugins' code runs beyond the event loop's reach (a part of :mod:`ybplug.caller`).

Blocking hook implementations run in daemon threads of their own (:class:`DaemonThreads`), so a
plugin that blocks for ever never keeps the process alive; async implementations that ignore
their cancellation are abandoned after their timeout and kept referenced (:func:`keep_abandoned`),
so that garbage collection cannot wake them again outside the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any


class DaemonThreads:
    """Daemon threads that run plugins' blocking functions and hand results back to the loop.

    A thread whose call was abandoned (its caller timed out or was cancelled) finishes on its
    own and its result is dropped; new calls get another thread meanwhile.  Idle threads wait
    for work a while, then exit.
    """

    IDLE = 10.0

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Any]] = []
        self._lock = threading.Lock()

    async def run(self, func: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="ybplug-hook", daemon=True).start()
        inbox.put((context, func, loop, future))
        return await future

    def _serve(self, inbox: queue.SimpleQueue[Any]) -> None:
        while True:
            try:
                context, func, loop, future = inbox.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:  # nobody can hand this thread work any more
                        self._idle.remove(inbox)
                        return
                continue  # work is being handed over right now
            try:
                outcome: tuple[bool, Any] = (True, context.run(func))
            except BaseException as exc:  # handed to the caller, who raises it
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody waits
            del context, func, loop, future, outcome
            with self._lock:
                self._idle.append(inbox)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_kept: queue.SimpleQueue[tuple[bool, asyncio.Task[Any]]] = queue.SimpleQueue()
_keeper_lock = threading.Lock()
_keeper: threading.Thread | None = None


def keep_abandoned(task: asyncio.Task[Any], *, release: bool = False) -> None:
    """Hold an abandoned task for the life of the process (or until it ends: ``release``).

    A task nothing references any more is collected, and collecting a suspended coroutine
    closes it: Python throws ``GeneratorExit`` into it, which is one more exception for a plugin
    that catches them all to swallow, and outside the event loop (after ``anyio.run`` returned,
    at exit) its next await fails at once and is swallowed too, for ever: the process spins
    instead of exiting.  So the task is referenced from a daemon thread's frame, which the
    interpreter neither clears nor collects at exit, and the plugin's code never runs again.
    """
    global _keeper
    with _keeper_lock:
        if _keeper is None:
            _keeper = threading.Thread(target=_hold, args=(_kept,), name="ybplug-abandoned", daemon=True)
            _keeper.start()
    _kept.put((release, task))


def _hold(kept: queue.SimpleQueue[tuple[bool, asyncio.Task[Any]]]) -> None:
    held: set[asyncio.Task[Any]] = set()
    while True:
        release, task = kept.get()
        if release:
            held.discard(task)
        else:
            held.add(task)
        del task
