"""Built-in plugin: yb04.13.01.21, uploading recorded births on the schedule.

The schedule is ``daily at HH:MM`` (the spec: institutions upload 按天) or ``immediate``.  Either
way, a birth whose upload failed is retried on its own backoff, not held until the next day.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from ybplug.config import upload_time
from ybplug.fields import CHINA_TIME
from ybplug.hooks import hookimpl
from ybplug.journal import Backoff, BirthRow, BirthState, Delivery
from ybplug.messages import COLLECT
from ybplug.privacy import described
from ybplug.wire import UNREADABLE, UNREADABLE_BEFORE_REVIEW, AuthenticationFailed, WireError

if TYPE_CHECKING:
    from ybplug.host import Host

log = logging.getLogger("ybplug.collection")


_COUNTED_AS: dict[BirthState | None, str] = {
    BirthState.REGISTERED: "uploaded",
    BirthState.REFUSED: "refused",
    BirthState.NEEDS_REVIEW: "needs_review",
}


def last_slot(hour: int, minute: int, now: datetime | None = None) -> datetime:
    """The most recent daily ``hour:minute`` at or before ``now`` (China time)."""
    now = now or datetime.now(CHINA_TIME)
    slot = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return slot if slot <= now else slot - timedelta(days=1)


class Collection:
    def __init__(self) -> None:
        self._running = anyio.Lock()
        self._last_recorded = 0.0
        self._limiter: anyio.CapacityLimiter | None = None
        self._handed: dict[str, int] = {}
        self._handed_since = time.time()
        self._active = 0  # births being uploaded (claimed, not yet answered)

    def limiter(self, host: Host) -> anyio.CapacityLimiter:
        """``upload_concurrency`` for every upload of this host: scheduled runs and births
        handed over as they are recorded."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(host.config.upload_concurrency)
        return self._limiter

    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        if host.background:
            if upload_time(host.config.upload) is None:  # immediate: claim each birth as it is recorded
                claim = functools.partial(host.journal.claim_births, host.config.upload_batch)
                host.upload_on_record(claim, lambda rows: self._hand_over(host, rows), self._idle)
            host.start_soon(lambda: self._schedule(host), name="ybplug upload schedule")

    def _idle(self) -> bool:
        """No birth being uploaded (by a scheduled run, or handed over on record)."""
        return not self._active

    def _hand_over(self, host: Host, rows: list[BirthRow]) -> None:
        """Upload births claimed in the commit that recorded one (immediate mode)."""
        claimed_at = time.monotonic()
        for row in rows:
            self._active += 1
            try:
                host.start_soon(functools.partial(self._upload_handed, host, row, claimed_at), name="ybplug upload")
            except BaseException:
                self._active -= 1
                raise

    async def _upload_handed(self, host: Host, row: BirthRow, claimed_at: float) -> None:
        try:
            async with self.limiter(host):
                try:
                    state = await self.upload_one(host, row, claimed_at)
                except AuthenticationFailed as exc:  # the birth is released; the schedule retries and says so
                    log.error("birth %d: %s", row.id, exc)
                    state = None
        finally:
            self._active -= 1
        if state == BirthState.UPLOADING:
            return  # another worker's now
        key = _COUNTED_AS.get(state, "upload_failed")
        self._handed[key] = self._handed.get(key, 0) + 1
        started_at = self._handed_since
        if started_at - self._last_recorded >= 60:  # remembered as a run, once a minute
            counts, self._handed, self._handed_since = self._handed, {}, time.time()
            self._last_recorded = started_at
            await host.records.run_finished("upload", counts, started_at)

    @hookimpl
    async def ybplug_sync(self, host: Host, job: str, births: list[int] | None) -> dict[str, int] | None:
        if job not in ("upload", "all"):
            return None
        return await self.upload_due(host, only=births)

    async def _schedule(self, host: Host) -> None:
        """``immediate``: upload as births arrive.  ``daily at HH:MM``: upload what was recorded
        before the latest HH:MM (so a worker that was down at that time catches up at start-up).
        Either way, failed uploads are retried on their own backoff."""
        daily = upload_time(host.config.upload)
        trouble = Backoff(1.0, 300.0)
        failures = 0
        while True:
            slot = None if daily is None else last_slot(*daily)
            try:
                await self.upload_due(host, None if slot is None else slot.timestamp(), often=slot is None)
                due = await host.records.next_upload_due(retries_only=daily is not None)
                failures = 0
            except Exception as exc:
                # A wrong password, a full disk, an unreadable journal: one line, then try again
                # later (a lost journal stops the host instead: see Host.fail).  A bug: its
                # traceback, then try again too, so that uploads never stop for good.
                failures += 1
                wait = trouble.delay(failures)
                if isinstance(exc, AuthenticationFailed):  # the births it failed wait on their own backoff
                    wait = await _next_try(host, wait, retries_only=daily is not None)
                log.error("upload stopped: %s; trying again in %.0f s", described(exc), wait)
                await anyio.sleep(wait)
                continue
            retry_in = 3600.0 if due is None else max(0.05, due - time.time())
            if daily is not None:
                next_slot = (last_slot(*daily) + timedelta(days=1)).timestamp() - time.time()
                retry_in = max(0.05, min(retry_in, next_slot))
            # Woken early by a new birth (immediate mode) or a failed upload (a new retry time).
            await host.wait_for_births(retry_in)

    async def upload_due(
        self, host: Host, recorded_before: float | None = None, often: bool = False, only: list[int] | None = None
    ) -> dict[str, int]:
        """Upload every birth due now (or ``only`` those), ``upload_concurrency`` at a time, until
        none is left.

        ``often``: called per birth (immediate mode), so the run is remembered once a minute.
        """
        counts = {"uploaded": 0, "refused": 0, "needs_review": 0, "upload_failed": 0}
        async with self._running:
            started_at = time.time()
            limiter = self.limiter(host)
            auth_error: list[AuthenticationFailed] = []
            while not auth_error:
                rows: list[BirthRow] = await host.records.claim_births(
                    host.config.upload_batch, recorded_before=recorded_before, only=only
                )
                if not rows:
                    break
                claimed_at = time.monotonic()

                async def upload(row: BirthRow) -> None:
                    try:
                        async with limiter:
                            try:
                                state = await self.upload_one(host, row, claimed_at)
                            except AuthenticationFailed as exc:
                                auth_error.append(exc)
                                state = None
                            except Exception as exc:  # the journal refused the answer, or a bug: the lease brings it back
                                log.error("birth %d: %s", row.id, described(exc))
                                state = None
                            if state != BirthState.UPLOADING:  # (another worker's now: not counted here)
                                counts[_COUNTED_AS.get(state, "upload_failed")] += 1
                    finally:
                        self._active -= 1

                async with anyio.create_task_group() as tg:
                    for row in rows:
                        self._active += 1
                        tg.start_soon(upload, row)
                host.deliveries_waiting()
                if len(rows) < host.config.upload_batch:
                    break
                log.info("upload in progress: %s", _progress(counts))
            # Remember runs that did something; in immediate mode (a run per birth) once a minute.
            if sum(counts.values()) and (not often or started_at - self._last_recorded >= 60):
                self._last_recorded = started_at
                await host.records.run_finished("upload", counts, started_at)
        if sum(counts.values()):
            log.info("upload done: %s", _progress(counts))
        if auth_error:
            raise auth_error[0]
        return counts

    async def upload_one(self, host: Host, row: BirthRow, claimed_at: float) -> BirthState | None:
        """One birth: send, then record the answer (or the failure) with its event; None when it
        failed, ``uploading`` when it is not this worker's to send any more.

        A birth claimed at ``claimed_at`` (``time.monotonic()``) that waited for a free upload
        slot until its lease could run out during the exchange gets its lease renewed first: a
        lease that ran out mid-exchange would let another worker send it a second time."""
        wire = host.config.wire
        if time.monotonic() - claimed_at > host.config.lease - 2 * (wire.connect_timeout + wire.read_timeout):  # (a sign-in, then the upload)
            if not await host.records.keep_claim(row.id):
                log.info("birth %d: taken over by another worker while it waited here; not sent from here", row.id)
                return BirthState.UPLOADING
        try:
            exchange_id, result = await host.transact(COLLECT, row.birth, birth_id=row.id, exchange_id=row.exchange_id)
        except WireError as exc:
            after: tuple[BirthState, list[Delivery]] = await host.records.upload_failed(
                row, str(exc), host.upload_backoff, unreadable=UNREADABLE, review_after=UNREADABLE_BEFORE_REVIEW
            )
            if after[0] == BirthState.UPLOADING:
                log.info("birth %d: upload failed (%s) after another worker took it over: its answer decides", row.id, exc.outcome)
                return BirthState.UPLOADING
            if after[0] == BirthState.NEEDS_REVIEW:  # answers that could not be read, again and again
                log.warning("birth %d: %d unreadable answers in a row: needs review", row.id, UNREADABLE_BEFORE_REVIEW)
                host.deliver_soon(after[1])
                host.deliveries_waiting()
                return BirthState.NEEDS_REVIEW
            host.births_waiting()
            log.warning("birth %d: upload failed (%s), will retry", row.id, exc.outcome)
            if isinstance(exc, AuthenticationFailed):
                raise
            return None
        if result.ok and str(result.eligibility) not in ("0", "1"):  # the spec: required, 1 or 0
            log.warning(
                "birth %d: registered, but bkee45 是否可预参保 is %s (neither 1 nor 0): its eligibility is unknown",
                row.id, repr(str(result.eligibility))[:20],
            )
        duplicate = not result.ok and host.is_duplicate(result.cause)
        state: BirthState
        state, claimed = await host.records.upload_answered(row, exchange_id, result, duplicate=duplicate)
        host.deliver_soon(claimed)
        hook = "birth_needs_review" if state == BirthState.NEEDS_REVIEW else "collection_result"
        if {d.plugin for d in claimed} != set(host.caller.implementations(hook)):
            # A plugin here waits for an earlier event of this birth: the delivery loop takes it.
            host.deliveries_waiting()
        return state


async def _next_try(host: Host, delay: float, *, retries_only: bool) -> float:
    """Seconds until the schedule uploads again after a refused sign-in: its own backoff, or longer
    when the births that just failed wait longer on theirs (``upload_backoff``), so that the log
    line names the time the next upload is really tried, not a round that finds nothing due."""
    try:
        due = await host.records.next_upload_due(retries_only=retries_only)
    except Exception:  # the journal, for a moment: the schedule's own backoff
        return delay
    return delay if due is None else max(delay, due - time.time())


def _progress(counts: dict[str, int]) -> str:
    return f"{sum(counts.values())} births: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)


def plugin() -> Collection:
    return Collection()
