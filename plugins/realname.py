"""Built-in plugin: yb04.13.01.24, polling real-name status of registered newborns.

The centre real-names newborns daily from the tax bureau's feedback (spec step 15); institutions
poll for it (step 16).  Registered, not yet real-named newborns are asked about in batches of
``realname_batch``; each one now real-named fires ``realname_resolved``, and each one the centre
reports voided (``bae009`` F) fires ``collection_voided``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import msgspec
from ybplug.hooks import hookimpl

from ybplug.errors import Error
from ybplug.fields import trusted
from ybplug.journal import Delivery
from ybplug.messages import REALNAME, RealNameQuery, RealNameRecord, RealNameResult
from ybplug.privacy import described, mask_names_beside_numbers, scrub

if TYPE_CHECKING:
    from ybplug.host import Host

log = logging.getLogger("ybplug.realname")


class RealName:
    def __init__(self) -> None:
        self._running = anyio.Lock()

    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        if host.background:
            host.start_soon(lambda: self._schedule(host), name="ybplug real-name poll")

    @hookimpl
    async def ybplug_sync(self, host: Host, job: str) -> dict[str, int] | None:
        if job not in ("realname", "stale", "all"):
            return None
        return await self.poll(host, stale=job == "stale")

    async def _schedule(self, host: Host) -> None:
        interval = host.config.realname_interval
        while True:
            try:
                status = await host.status()
                last = (status["runs"].get("realname") or {}).get("finished_at") or 0.0
                wait = last + interval - time.time()
                if wait > 0:
                    await anyio.sleep(wait)
                    continue
                await self.poll(host)
            except Exception as exc:  # the centre or the journal (or a bug: its traceback): then try again later
                log.warning("real-name poll failed: %s; next try in %.0f s", described(exc), min(interval, 300))
                await anyio.sleep(min(interval, 300))

    async def poll(self, host: Host, *, stale: bool = False) -> dict[str, int]:
        """Ask about every registered, not yet real-named newborn, in batches.

        First, newborns past the horizon (``realname_horizon_days`` after registration) become
        stale and are left out, so the daily sweep does not grow with the hospital's history;
        ``stale=True`` asks about those instead, on demand.

        ``realname_concurrency`` batches are in flight at once, so the journal writes of one
        batch share their commit with another's (group commit) while the centre answers.
        """
        counts = {"realname_checked": 0, "real_named": 0, "voided_at_centre": 0}
        in_flight = anyio.Semaphore(host.config.realname_concurrency)

        failures: list[Error] = []

        async def batch(rows: list[tuple[int, str]]) -> None:
            try:
                await self._batch(host, rows, counts)
            except Error as exc:  # reported once, after the other batches: never an ExceptionGroup
                failures.append(exc)
            finally:
                in_flight.release()

        async with self._running:
            started_at = time.time()
            horizon = host.config.realname_horizon_days * 86400
            if not stale and (went_stale := await host.records.mark_stale(horizon)):
                counts["went_stale"] = went_stale
            after, batches = 0, 0
            size = host.config.realname_batch
            # Read several batches' numbers at once: a read waits its turn behind the commits of
            # the batches in flight, and one read a batch kept the sweep waiting on the journal.
            window = size * host.config.realname_concurrency * 4
            async with anyio.create_task_group() as tg:
                while not failures:
                    try:
                        read = await host.records.awaiting_realname(after, window, state="stale" if stale else "registered")
                    except Error as exc:  # like a batch's: one error after the group, never a group of them
                        failures.append(exc)
                        break
                    if not read:
                        break
                    after = read[-1][0]
                    for start in range(0, len(read), size):
                        if failures:
                            break
                        await in_flight.acquire()
                        tg.start_soon(batch, read[start:start + size])
                        batches += 1
                        if batches % 20 == 0:
                            log.info("real-name poll in progress: %d asked, %d real-named", counts["realname_checked"], counts["real_named"])
                    if len(read) < window:
                        break
            await host.records.run_finished("stale" if stale else "realname", counts, started_at)
        if failures:
            raise failures[0]
        return counts

    async def _batch(self, host: Host, rows: list[tuple[int, str]], counts: dict[str, int]) -> None:
        by_number = dict((number, birth_id) for birth_id, number in rows)
        with trusted():  # the numbers come from the journal, checked when they were recorded
            query = RealNameQuery.of(list(by_number))
        loaded = host.plugin_names()

        def record(exchange_id: int, result: RealNameResult) -> tuple[int, int, list[Delivery]] | str:
            """On the journal's thread, in the commit that journals the exchange with its answer:
            the births it moves, their events, and the deliveries this process can make now
            (claimed here, so they are made while the sweep goes on); a refusal's cause."""
            if not result.ok:
                return result.cause or ""
            updates: list[tuple[int, RealNameRecord]] = []
            for found in result.records:
                birth_id = by_number.get(str(found.registration_number))
                if birth_id is not None and (found.voided or found.real_named):
                    updates.append((birth_id, found))
            real_named, voided = host.journal.realname_answered(exchange_id, msgspec.json.encode(result), updates)
            claimed = host.journal.claim_deliveries(2 * len(updates), loaded) if real_named or voided else []
            return real_named, voided, claimed

        # Asking changes nothing at the centre: journaled once, with its answer (Host.ask).
        moved = await host.ask(REALNAME, query, record)
        counts["realname_checked"] += len(by_number)
        if isinstance(moved, str):
            log.warning("real-name query refused: %s", scrub(mask_names_beside_numbers(moved)))  # may quote a mother
            return
        real_named, voided, claimed = moved
        # Counted only where this poll moved the birth: another poller may have got there first.
        counts["real_named"] += real_named
        counts["voided_at_centre"] += voided
        host.deliver_soon(claimed)
        if real_named or voided:
            host.deliveries_waiting()  # deliveries left for the loop (another birth's event waits first)


def plugin() -> RealName:
    return RealName()
