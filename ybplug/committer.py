"""Group commit: the journal writes that tasks ask for while a commit is on its way to disk are
written together in the next transaction, one fsync for all.

Each write runs on the journal's own thread (a :class:`~ybplug.dedicated.DedicatedThread`), so
fsync never blocks the event loop.  The first waiting task leads each round; leadership passes
on, so no background task is needed and nothing is left behind when the host stops.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio

from ybplug.dedicated import DedicatedThread
from ybplug.journal import Journal, JournalLost

P = ParamSpec("P")
T = TypeVar("T")


class GroupCommitter:
    """Runs journal methods in shared transactions; ``on_lost`` hears once the journal is gone."""

    def __init__(self, journal: Journal, thread: DedicatedThread, *, on_lost: Callable[[Exception], None]) -> None:
        self.journal = journal
        self.thread = thread
        self.on_lost = on_lost
        self._queue: list[_Operation] = []
        self._riders: list[_Operation] = []
        self._busy = False

    def ride(self, func: Callable[[], Any], done: Callable[[tuple[bool, Any]], None]) -> None:
        """Run ``func`` in the next group commit, whoever leads it, without waiting for it;
        ``done`` hears its outcome.  For writes that may be late but not lost in a running host
        (a delivery's outcome: at-least-once, so a process killed before that commit only
        delivers again).  Someone must still commit: :meth:`flush`."""
        op = _Operation(func)
        op.done = done
        self._riders.append(op)

    @property
    def riding(self) -> bool:
        """Whether writes are waiting for the next group commit (:meth:`ride`)."""
        return bool(self._riders)

    async def flush(self) -> None:
        """Commit what rides, if anything does."""
        if self._riders:
            await self.run(_nothing)

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func(*args, **kwargs)`` in the next group commit; its result or its error."""
        op = _Operation(functools.partial(func, *args, **kwargs))
        self._queue.append(op)
        if self._busy:
            op.ready = anyio.Event()  # only a waiting operation needs one: the leader runs at once
            try:
                await op.ready.wait()
            except BaseException:
                if op in self._queue:  # never ran: as if never asked
                    self._queue.remove(op)
                if op.lead:  # was handed the lead while being cancelled: pass it on
                    self._busy = False
                    self._pass_lead()
                raise
            if not op.lead:
                return op.outcome()  # type: ignore[no-any-return]
        self._busy = True
        try:
            batch, self._queue, self._riders = self._riders + self._queue, [], []
            with anyio.CancelScope(shield=True):
                try:
                    results = await self.thread.call(functools.partial(self.journal.run_group, [o.call for o in batch]))
                except Exception as exc:
                    results = [(False, exc)] * len(batch)
            for o, result in zip(batch, results, strict=True):
                o.result, o.lead = result, False
                if o.ready is not None:
                    o.ready.set()
                if o.done is not None:
                    o.done(result)
            lost = next((value for ok, value in results if not ok and isinstance(value, JournalLost)), None)
            if lost is not None:
                self.on_lost(lost)
        finally:
            self._busy = False
            self._pass_lead()
        return op.outcome()  # type: ignore[no-any-return]

    def _pass_lead(self) -> None:
        if self._queue and not self._busy:
            self._busy = True
            following = self._queue[0]
            following.lead = True
            assert following.ready is not None  # it was queued while a commit was under way
            following.ready.set()


class AsyncJournal:
    """The journal as plugins use it (``host.records``): every method awaited, run on the journal's
    own thread in the next group commit.  The journal itself refuses calls from any other thread
    (see :meth:`ybplug.journal.base.JournalBase.bind`), so a plugin cannot block the event loop on
    fsync, or use the connection beside the journal's thread, by accident."""

    def __init__(self, journal: Journal, committer: GroupCommitter) -> None:
        self._journal = journal
        self._committer = committer

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._journal, name, None)
        if name.startswith("_") or not callable(method):
            raise AttributeError(f"the journal has no operation {name!r}")
        return functools.partial(self._committer.run, method)


class _Operation:
    """One journal call waiting for its group commit."""

    __slots__ = ("call", "ready", "result", "lead", "done")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.ready: anyio.Event | None = None
        self.result: tuple[bool, Any] | None = None
        self.lead = False
        self.done: Callable[[tuple[bool, Any]], None] | None = None

    def outcome(self) -> Any:
        assert self.result is not None
        ok, value = self.result
        if not ok:
            raise value
        return value


def _nothing() -> None:
    """A journal call that writes nothing: it makes a group commit for what rides."""
