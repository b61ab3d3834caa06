"""The delivery engine: journaled events to the plugins that subscribe to them.

Each due delivery is claimed in the journal (with a lease), made through the async hook caller,
and its outcome journaled: delivered, retried later with capped exponential backoff under the
same ``event_id``, or parked after the configured attempts (``ybplug retry`` replays it).  A
plugin's error is journaled scrubbed of the event's personal values.

Each plugin has a lane of its own: what is claimed for it is delivered by a task of its own, and
while that task runs the plugin is left out of the next claims, which go on for the others.  So a
plugin whose hook hangs until the hook timeout (or ignores cancellation, see
:mod:`ybplug.caller`) delays nobody else's deliveries, not even those of the same event, and
each plugin has at most one batch under way.  A plugin gets the events of one birth in order
because the journal claims a birth's next event for a plugin only once the one before is settled.
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
        self._lock = anyio.Lock()  # one claim at a time: a plugin is handed one batch at a time
        self._lanes: dict[str, _Lane] = {}  # the plugins whose deliveries are under way
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

        Waits for the deliveries the background loop had already handed to plugins too, so that
        ``sync`` returns with everything due delivered (or failed and journaled for a retry).
        """
        delivered = 0
        while True:
            mine = await self._hand_out(batch)
            under_way = list(self._lanes.values())
            if not mine and not under_way:
                return delivered
            for lane in under_way:
                await lane.done.wait()
            delivered += sum(lane.delivered for lane in mine)

    async def _hand_out(self, batch: int) -> list[_Lane]:
        """Claim what is due for the plugins without deliveries under way, and hand each of them
        its share in a task of its own (:meth:`_run_lane`); returns the lanes started."""
        async with self._lock:
            idle = [name for name in self.plugin_names() if name not in self._lanes]
            if not idle:
                return []
            due = await self.committer.run(self.journal.claim_deliveries, batch, idle)
            by_plugin: dict[str, list[Delivery]] = {}
            for delivery in due:
                by_plugin.setdefault(delivery.plugin, []).append(delivery)
            lanes = [_Lane(plugin, deliveries) for plugin, deliveries in by_plugin.items()]
            inline: list[_Lane] = []
            for lane in lanes:
                self._lanes[lane.plugin] = lane
                if not inline:
                    try:
                        self.start_soon(functools.partial(self._run_lane, lane))
                        continue
                    except RuntimeError:  # the host is stopping: deliver them here
                        pass
                inline.append(lane)
        try:
            for lane in inline:
                await self._run_lane(lane)
        finally:  # cancelled meanwhile: the rest stay claimed until their lease runs out
            for lane in inline:
                self._lane_ended(lane)
        return lanes

    async def _run_lane(self, lane: _Lane) -> None:
        try:
            lane.delivered = await self._deliver_to(lane.plugin, lane.deliveries)
        finally:
            self._lane_ended(lane)
            self.waiting()  # claim this plugin's next events (the next of a birth is due only now)

    def _lane_ended(self, lane: _Lane) -> None:
        if self._lanes.get(lane.plugin) is lane:
            del self._lanes[lane.plugin]
        lane.done.set()

    async def deliver(self, due: list[Delivery]) -> int:
        """Make claimed deliveries and journal how each went; returns how many succeeded.

        Each plugin's share is delivered and journaled on its own, so one plugin's slow hook does
        not hold back the others' deliveries of the same events, nor their next ones.
        """
        by_plugin: dict[str, list[Delivery]] = {}
        for delivery in due:
            by_plugin.setdefault(delivery.plugin, []).append(delivery)
        if len(by_plugin) == 1:  # an upload's answer to one plugin: no task group needed
            [(plugin, deliveries)] = by_plugin.items()
            return await self._deliver_to(plugin, deliveries)
        counts: list[int] = []

        async def one_plugin(plugin: str, deliveries: list[Delivery]) -> None:
            counts.append(await self._deliver_to(plugin, deliveries))

        async with anyio.create_task_group() as tg:
            for plugin, deliveries in by_plugin.items():
                tg.start_soon(one_plugin, plugin, deliveries)
        return sum(counts)

    async def _deliver_to(self, plugin: str, due: list[Delivery]) -> int:
        """Deliver one plugin's claimed events (each a different birth's: the journal claims one
        at a time per birth and plugin), all at once, and journal how each went."""
        results: list[tuple[Delivery, str | None]] = []

        async def one(d: Delivery) -> None:
            arguments = d.event.arguments()
            outcomes = await self.caller.call_each(d.hook, only=[plugin], event_id=d.event_id, **arguments)
            error = next(
                (o.error for o in outcomes), LookupError(f"plugin {plugin} no longer implements {d.hook}")
            )
            # Journaled scrubbed: status, the console and monitors show it.
            text = None if error is None else scrub(f"{type(error).__name__}: {error}", secrets_of(arguments))
            results.append((d, text))

        if len(due) == 1:
            await one(due[0])
        else:
            async with anyio.create_task_group() as tg:
                for d in due:
                    tg.start_soon(one, d)
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

    #: Seconds between claims at least, while a plugin's deliveries are under way: those are
    #: pending in the journal, so its earliest due time is now until they are done.
    BUSY_PAUSE = 0.25

    async def loop(self) -> None:
        """Deliver as events arrive and as retries fall due; a journal error is logged, not fatal."""
        while True:
            wait = 5.0
            try:
                while await self._hand_out(200):  # until every plugin with something due has it
                    pass
                due = await self.committer.run(self.journal.next_delivery_due)
                if due is not None:
                    wait = min(5.0, max(self.BUSY_PAUSE if self._lanes else 0.05, due - time.time()))
            except Error as exc:  # the journal, for a moment: one line, then try again
                log.error("hook delivery stopped: %s; trying again in %.0f s", exc, wait)
            with anyio.move_on_after(wait):
                await self._waiting.wait()
            self._waiting = anyio.Event()


class _Lane:
    """One plugin's claimed deliveries, under way in a task of their own."""

    def __init__(self, plugin: str, deliveries: list[Delivery]) -> None:
        self.plugin = plugin
        self.deliveries = deliveries
        self.delivered = 0
        self.done = anyio.Event()
