"""The delivery engine: journaled events to the plugins that subscribe to them.

Each due delivery is claimed in the journal (with a lease), made through the async hook caller
(one call per event for all its plugins; one plugin's failure never stops the others), and its
outcome journaled: delivered, retried later with capped exponential backoff under the same
``event_id``, or parked after the configured attempts (``ybplug retry`` replays it).  A plugin's
error is journaled scrubbed of the event's personal values.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from ybplug.caller import AsyncHookCaller, secrets_of
from ybplug.committer import GroupCommitter
from ybplug.errors import Error
from ybplug.journal import Backoff, Delivery, Journal
from ybplug.privacy import described, scrub

log = logging.getLogger("ybplug.host")


class Deliveries:
    """Delivers a host's journaled events; ``start_soon`` runs its background work in the host."""

    def __init__(
        self,
        caller: AsyncHookCaller,
        committer: GroupCommitter,
        journal: Journal,
        *,
        plugin_names: Callable[[], list[str]],
        start_soon: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None],
        attempts: int,
        backoff: Backoff,
    ) -> None:
        self.caller = caller
        self.committer = committer
        self.journal = journal
        self.plugin_names = plugin_names
        self.start_soon = start_soon
        self.attempts = attempts
        self.backoff = backoff
        self._waiting = anyio.Event()
        self._lock = anyio.Lock()
        self._inline = 0
        self._inline_idle = anyio.Event()
        self._flushing = False
        #: Deliveries made by this host that failed, and those of them journaled as parked: what
        #: a one-shot ``ybplug sync``/``retry`` reports (and exits 1 for).
        self.failed = 0
        self.parked = 0

    #: Seconds a delivery's outcome waits for another journal write to go with, at most.
    FLUSH_AFTER = 0.005

    def waiting(self) -> None:
        """Wake the loop: new events are in the journal."""
        self._waiting.set()

    async def deliver_due(self, batch: int = 200) -> int:
        """Deliver every event due now to its plugins; returns how many deliveries succeeded.

        One batch at a time per host, so ``sync`` returns only after deliveries the background
        loop had already claimed are done too.
        """
        async with self._lock:
            return await self._deliver_batches(batch)

    async def _deliver_batches(self, batch: int) -> int:
        delivered = 0
        names = self.plugin_names()
        while True:
            due = await self.committer.run(self.journal.claim_deliveries, batch, names)
            if not due:
                return delivered
            delivered += await self.deliver(due)

    async def deliver(self, due: list[Delivery]) -> int:
        """Make claimed deliveries (each event's plugins in one call) and journal how each went;
        returns how many succeeded."""
        by_event: dict[str, list[Delivery]] = {}
        for delivery in due:
            by_event.setdefault(delivery.event_id, []).append(delivery)
        results: list[tuple[Delivery, str | None]] = []

        async def one_event(deliveries: list[Delivery]) -> None:
            first = deliveries[0]
            arguments = first.event.arguments()
            outcomes = await self.caller.call_each(
                first.hook, only=[d.plugin for d in deliveries], event_id=first.event_id, **arguments
            )
            errors = {o.plugin: o.error for o in outcomes}
            for d in deliveries:
                error = errors.get(d.plugin, LookupError(f"plugin {d.plugin} no longer implements {d.hook}"))
                # Journaled scrubbed: status, the console and monitors show it.
                text = None if error is None else scrub(f"{type(error).__name__}: {error}", secrets_of(arguments))
                results.append((d, text))

        if len(by_event) == 1:  # an upload's answer: no task group needed
            await one_event(next(iter(by_event.values())))
        else:
            async with anyio.create_task_group() as tg:
                for deliveries in by_event.values():
                    tg.start_soon(one_event, deliveries)
        # Journaled with the next group commit, not waited for: at-least-once allows it (killed
        # before that commit, a delivery is made again), and the next birth's commit does not
        # queue behind this one.  The deliveries stay claimed by this process until then.
        self.committer.ride(
            functools.partial(self.journal.deliveries_done, results, max_attempts=self.attempts, backoff=self.backoff),
            self._journaled,
        )
        self._schedule_flush()
        succeeded = sum(1 for _, error in results if error is None)
        self.failed += len(results) - succeeded
        return succeeded

    def _journaled(self, outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        if not ok:  # the deliveries stay claimed; their lease runs out and the loop makes them again
            log.error("hook deliveries made but not journaled: %s", value)
        elif value:
            self.parked += value
            log.error("%d hook deliveries parked after %d attempts; `ybplug retry` replays them", value, self.attempts)

    async def _flush_soon(self) -> None:
        """Commit the deliveries' outcomes if no other journal write took them along meanwhile."""
        try:
            await anyio.sleep(self.FLUSH_AFTER)
            await self.committer.flush()
        except Error:
            pass  # reported by _journaled, or by the host when the journal is lost
        finally:
            self._flushing = False
        if self.committer.riding:  # came in while this flush was under way (not when cancelled)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flushing:
            return
        try:
            self.start_soon(self._flush_soon)
        except RuntimeError:  # the host is stopping: closing the journal commits what rides
            return
        self._flushing = True

    def deliver_soon(self, due: list[Delivery]) -> None:
        """Deliver events a journal write just claimed, without waiting for the delivery loop.

        ``sync`` waits for these too.
        """
        if not due:
            return
        self._inline += 1

        async def run() -> None:
            try:
                await self.deliver(due)
            except Error as exc:  # the deliveries stay claimed; their lease runs out and the loop retries
                log.error("hook delivery failed: %s", exc)
            except Exception as exc:  # a bug of ours: its traceback, and the host goes on
                log.error("hook delivery failed: %s", described(exc))
            finally:
                self._inline -= 1
                if self._inline == 0:
                    self._inline_idle.set()
                    self._inline_idle = anyio.Event()

        self.start_soon(run)

    async def settled(self) -> None:
        """Wait until the deliveries handed to :meth:`deliver_soon` are done and journaled."""
        while self._inline:
            await self._inline_idle.wait()
        await self.committer.flush()

    async def loop(self) -> None:
        """Deliver as events arrive and as retries fall due; a journal error is logged, not fatal."""
        while True:
            wait = 5.0
            try:
                await self.deliver_due()
                due = await self.committer.run(self.journal.next_delivery_due)
                if due is not None:
                    wait = min(5.0, max(0.05, due - time.time()))
            except Error as exc:  # the journal, for a moment: one line, then try again
                log.error("hook delivery stopped: %s; trying again in %.0f s", exc, wait)
            with anyio.move_on_after(wait):
                await self._waiting.wait()
            self._waiting = anyio.Event()
