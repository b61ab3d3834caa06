"""The host a HIS embeds: plugins, the journal, the transport and the background work.

::

    async with Host(Config(journal="ybplug.db", upload="immediate")) as host:
        recorded = await host.record_birth(birth)   # durable when this returns
        await host.sync()                           # upload and poll now, deliver the hooks

Start-up order follows tox: built-in plugins, then the ``ybplug`` entry points, then the modules
named in the config, then ``check_pending()`` so a misspelled hook fails at start-up instead of
being silently ignored.  ``YBPLUG_PLUGINS=name,name`` limits which plugins load (built-ins are
``ybplug.collection``, ``ybplug.void``, ``ybplug.realname``, ``ybplug.voucher``,
``ybplug.transport``); ``YBPLUG_TRACE=1`` logs every hook call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.abc
import msgspec
import pluggy

from ybplug import events, outbox
from ybplug.caller import AsyncHookCaller, HookError, PluginError
from ybplug.codes import Funid
from ybplug.committer import AsyncJournal, GroupCommitter
from ybplug.config import Config
from ybplug.dedicated import DedicatedThread
from ybplug.deliveries import Deliveries
from ybplug.errors import Error, Outcome, errors_in, outcome_of
from ybplug.fields import REGISTRATION_NUMBER_RULE, InvalidMessage, Problem, is_registration_number
from ybplug.hooks import PROJECT, specs
from ybplug.journal import (
    Backoff,
    BirthBusy,
    BirthNotFound,
    BirthRow,
    BirthState,
    BirthStatus,
    Delivery,
    Journal,
    JournalLost,
)
from ybplug.loading import load_plugins
from ybplug.messages import (
    Birth,
    QrIdentity,
    QrRequest,
    QrRequestData,
    VoidResult,
    load,
)
from ybplug.naming import birth_id_of, check_job, echo_key, lookup_key, twin_of
from ybplug.privacy import described, mask
from ybplug.corrections import Corrections
from ybplug.transactions import Refused
from ybplug.wire import Transport

log = logging.getLogger("ybplug.host")



P = ParamSpec("P")
T = TypeVar("T")

#: How long ``record_birth`` waits for another open transaction recording the same birth.
BUSY_WAIT = 30.0

class Recorded(msgspec.Struct, frozen=True):
    """What ``record_birth`` returns: the journal's id and where the birth stands."""

    birth_id: int
    state: BirthState
    registration_number: str | None
    created: bool


class Host(Corrections):
    """The ybplug plugin host; use as ``async with Host(config) as host``."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        plugins: Sequence[object] = (),
        entry_points: bool = True,
        background: bool = True,
    ) -> None:
        self.config = config or Config()
        #: Whether scheduled work and the delivery loop run; one-shot commands (``ybplug sync``,
        #: ``void``, ``decode``) turn it off and do their work in the foreground.
        self.background = background
        self._extra_plugins = list(plugins)
        self._entry_points = entry_points
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(specs)
        self.caller = AsyncHookCaller(
            self.pm,
            timeout=self.config.hook_timeout,
            thread_limiter=anyio.CapacityLimiter(self.config.hook_threads),
        )
        self.journal = Journal(self.config.journal, lease=self.config.lease)
        self._journal_thread = DedicatedThread("ybplug-journal")  # the one thread touching the SQLite connection
        self._committer = GroupCommitter(self.journal, self._journal_thread, on_lost=self.fail)
        #: The journal for plugins: ``await host.records.birth(birth_id)``, on the journal's thread.
        self.records = AsyncJournal(self.journal, self._committer)
        self._transport: Transport | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._births_waiting = anyio.Event()
        self._uploader: (
            tuple[Callable[[], list[BirthRow]], Callable[[list[BirthRow]], None], Callable[[], bool]] | None
        ) = None
        #: Set when the host cannot go on (the journal was lost); ``failure`` says why.
        self.failed = anyio.Event()
        self.failure: Exception | None = None
        self._background: set[anyio.CancelScope] = set()
        self.delivery_backoff = Backoff(self.config.delivery_backoff, self.config.delivery_backoff_cap)
        self.upload_backoff = Backoff(self.config.upload_backoff, self.config.upload_backoff_cap)
        self.deliveries = Deliveries(
            self.caller, self._committer, self.journal, plugin_names=self.plugin_names, start_soon=self.start_soon,
            attempts=self.config.delivery_attempts, backoff=self.delivery_backoff,
        )

    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> Host:
        return cls(Config.load(path), **kwargs)

    # --- start-up and shutdown ----------------------------------------------------------------

    async def __aenter__(self) -> Host:
        self._loop_thread = threading.get_ident()
        self._loop = asyncio.get_running_loop()  # for start_soon from a plugin's own thread
        stack = AsyncExitStack()
        try:
            load_plugins(self.pm, self.config, self._extra_plugins, entry_points=self._entry_points)
            transport = await self._first("ybplug_transport", config=self.config.wire_config())
            if transport is None:
                raise PluginError("no plugin supplied a transport (is ybplug.transport excluded by YBPLUG_PLUGINS?)")
            self._transport = transport
            stack.push_async_callback(transport.aclose)
            self._journal_thread.start()
            stack.callback(self._journal_thread.stop)
            self.journal.bind(await self._journal_thread.call(threading.get_ident))
            self.journal.loaded = frozenset(self.plugin_names())
            await self._journal_thread.call(self.journal.open)
            stack.push_async_callback(self._close_journal)
            await self.run_journal(self.journal.subscribe, {h: self.caller.implementations(h) for h in events.EVENT_HOOKS})
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._task_group.cancel_scope.cancel)
            if self.background:
                self.start_soon(self.deliveries.loop, name="ybplug deliveries")
                self.start_soon(self._watch_other_processes, name="ybplug journal watch")
                self.start_soon(self.resume_replacements, name="ybplug replacements")
                self.start_soon(self.resume_voids, name="ybplug voids in doubt")
            for outcome in await self.caller.call_each("ybplug_startup", host=self):
                if not outcome.ok:
                    raise PluginError(f"plugin {outcome.plugin} failed to start: {outcome.error}")
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.caller.call_each("ybplug_shutdown", host=self)
        finally:
            stack, self._stack = self._stack, None
            if stack is not None:
                await stack.aclose()

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, Any]], name: str | None = None) -> None:
        """Run background work in the host's task group; it is cancelled when the host exits.

        An ybplug error that ends the work is one log line, never an ``ExceptionGroup`` out of the
        host (a lost journal stops the host: :meth:`fail`).  Any other exception is a bug (ours or
        a plugin's): its scrubbed traceback is logged and the host goes on, because the births
        it was working on come back on their own (a claim's lease runs out, a delivery is retried)
        and one faulty task must not stop the registrations of a whole ward."""
        if self._task_group is None:
            raise RuntimeError("the host is not running")

        async def guarded() -> None:
            scope = anyio.CancelScope()
            self._background.add(scope)
            try:
                with scope:
                    await func()
            except* Error as group:  # alone, or gathered by a task group inside the work
                for exc in errors_in(group):
                    if isinstance(exc, JournalLost):
                        self.fail(exc)
                    else:
                        log.error("%s stopped: %s", name or "background work", exc)
            except* Exception as bugs:
                for bug in errors_in(bugs):
                    log.error("%s stopped on %s", name or "background work", described(bug))
            finally:
                self._background.discard(scope)

        if threading.get_ident() == self._loop_thread:
            self._task_group.start_soon(guarded, name=name)
        else:  # a plain ybplug_startup in the hook caller's thread (not one of anyio's: no from_thread)
            task_group = self._task_group

            async def schedule() -> None:
                task_group.start_soon(guarded, name=name)

            asyncio.run_coroutine_threadsafe(schedule(), self._loop).result()

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("the host is not running")
        return self._transport

    async def run_journal(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a journal method on the journal's thread, in the next group commit (see
        :class:`ybplug.committer.GroupCommitter`), so fsync never blocks the event loop."""
        return await self._committer.run(func, *args, **kwargs)

    def plugin_names(self) -> list[str]:
        """The stable names of the plugins loaded in this host."""
        return [name for name in (self.pm.get_name(p) for p in self.pm.get_plugins()) if name]

    def fail(self, error: Exception) -> None:
        """The host cannot go on (its journal is gone): stop the background work, say why once,
        and let whoever runs the host (``ybplug run``) see :attr:`failed` and exit."""
        if self.failure is None:
            self.failure = error
            log.error("%s", error)
            self.failed.set()
            for scope in list(self._background):  # the background work only: not the HIS's own code
                scope.cancel()

    async def _close_journal(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._committer.flush()  # the deliveries' outcomes still riding
            except Error:
                pass  # logged where they were made; redelivered after their lease
            await self._journal_thread.call(self.journal.close)

    async def _first(self, hook: str, **kwargs: Any) -> Any:
        """``call_first`` that raises the plugin's own error (a WireError, a VoucherError...).

        Unbounded by the hook timeout: these are the host's own transactions, each bounded by
        its own (wire or voucher) timeout.
        """
        try:
            return await self.caller.call_first(hook, timeout=None, **kwargs)
        except HookError as exc:
            if exc.__cause__ is None:
                raise
            raise exc.__cause__ from None

    # --- what the HIS calls ---------------------------------------------------------------------

    async def record_birth(self, birth: Birth | dict[str, Any], *, connection: Any = None) -> Recorded:
        """Validate and journal a birth; returns once it is durable, or with ``connection`` (a
        psycopg connection, the journal on PostgreSQL) once written in its open transaction,
        durable when the HIS commits it (:mod:`ybplug.outbox`).

        A dict with the spec's wire names is accepted too.  Raises :class:`ybplug.InvalidMessage`
        naming each bad field.  Recording the same birth again (same mother ID, birth time and
        multiple-birth number) returns the existing record; it is never uploaded twice.  Except
        after a void: a voided birth recorded again is a new registration (what a clerk who
        voided by mistake wants), so a HIS that retries its own sends must stop once it got an
        answer, or it re-registers a newborn it voided on purpose.
        """
        if isinstance(birth, Birth):
            birth.check(self.config.charset)
        else:
            birth = load(Birth, birth, charset=self.config.charset)
        if connection is not None:  # the workers hear of it when the HIS commits
            [(row, created)] = await outbox.record_births(self.journal, [birth], connection)
            return Recorded(row.id, row.state, row.registration_number, created)
        uploader = self._uploader
        if uploader is not None and not uploader[2]():  # uploads under way: they take it in their next claim
            uploader = None
        if uploader is None:
            [(row, created)] = await self._while_busy(self.journal.record_births, [birth])
            claimed: list[BirthRow] = []
        else:
            row, created, claimed = await self._while_busy(self._record_and_claim, birth, uploader[0])
        if uploader is not None and claimed:
            uploader[1](claimed)  # what was claimed goes straight to the uploader
        elif created:
            self.births_waiting()
        if created and self.caller.implementations("birth_recorded"):
            self.deliveries_waiting()
        return Recorded(row.id, row.state, row.registration_number, created)

    async def _while_busy(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A journal call that records a birth, tried again while another open transaction (the
        HIS's, through the outbox) holds the same birth, up to :data:`BUSY_WAIT` seconds; the
        journal never waits on it itself, so other births go on being recorded meanwhile."""
        deadline = time.monotonic() + BUSY_WAIT
        pause = 0.02
        while True:
            try:
                return await self.run_journal(func, *args, **kwargs)
            except BirthBusy:
                if time.monotonic() + pause > deadline:
                    raise
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _record_and_claim(self, birth: Birth, claim: Callable[[], list[BirthRow]]) -> tuple[BirthRow, bool, list[BirthRow]]:
        """On the journal thread, in one transaction: record the birth and, when it is new, claim
        what is due for upload (the birth among them)."""
        [(row, created)] = self.journal.record_births([birth])
        return row, created, claim() if created else []

    def upload_on_record(
        self, claim: Callable[[], list[BirthRow]], upload: Callable[[list[BirthRow]], None], idle: Callable[[], bool]
    ) -> None:
        """Immediate uploads without a wake-up or a commit of their own: each ``record_birth``
        runs ``claim`` (a journal call) in the commit that records the birth and hands what it
        claimed to ``upload`` (the collection plugin), which sends it in the background.  The
        claim is journaled with its lease and its exchange mark as any other, so a process killed
        before sending leaves the birth to the next claim.  Only while ``idle()`` says no upload is
        under way: a stream of births is claimed in batches by the uploads already running, which
        keeps each ``record_birth`` a small commit."""
        self._uploader = (claim, upload, idle)

    async def birth(self, key: int | str, multiple_birth_number: int | None = None) -> BirthStatus:
        """Where a birth stands, by birth id, registration number (``baz726``) or HIS serial
        (``bke042``; ``multiple_birth_number`` picks a twin): state, registration number,
        eligibility, attempts, the last error (masked) and its exchanges with the centre."""
        key = lookup_key(key)
        multiple_birth_number = twin_of(multiple_birth_number)
        ids = await self.run_journal(self.journal.find, key, multiple_birth_number)
        if not ids:
            raise BirthNotFound(f"no birth answers to {echo_key(key)}")
        statuses = [await self.run_journal(self.journal.lookup, birth_id) for birth_id in ids]
        twins = {s.birth.multiple_birth_number for s in statuses}
        if len(twins) > 1:
            raise BirthNotFound(
                f"HIS serial {echo_key(key)} names {len(twins)} newborns (bme027 {sorted(twins)}): give multiple_birth_number"
            )
        return statuses[0]

    async def resume_voids(self) -> int:
        """Send again the voids whose reply was lost (the centre may or may not have voided):
        "already void" then records the void, a refusal leaves it for the next round (at most a
        few) and for a person.  Returns how many were recorded."""
        done = 0
        for number, reason in await self.records.voids_in_doubt():
            try:
                await self.void(number, reason)
                done += 1
            except Error as exc:
                log.warning("void of %s still in doubt: %s", number, exc)
        return done

    async def void(self, registration_number: str, reason: str) -> VoidResult:
        """Void a registration (yb04.13.01.22); raises :class:`Refused` if the centre says no.

        ``registration_number`` is a ``baz726`` (any case); anything else is refused before it
        is sent, naming the rule (a birth's id or a name sent as a number reached the centre)."""
        if not isinstance(registration_number, str):
            raise TypeError(f"registration_number is a baz726 text, not {type(registration_number).__name__}")
        registration_number = registration_number.strip().upper()
        if not is_registration_number(registration_number):
            raise InvalidMessage("VoidRequest", [Problem("baz726", "新生儿登记流水号", REGISTRATION_NUMBER_RULE)])
        result = await self._first("ybplug_void", host=self, registration_number=registration_number, reason=reason)
        if result is None:
            raise PluginError(f"no plugin carries out {Funid.VOID} (is ybplug.void excluded?)")
        assert isinstance(result, VoidResult)
        if not result.ok:
            raise Refused(Funid.VOID, result.cause, await self.run_journal(self.journal.secrets_of, registration_number))
        await self.deliver_due()
        return result

    async def decode_qr(
        self,
        *,
        business_type: str,
        idcode: str = "",
        org_id: str | None = None,
        district_no: str | None = None,
        operator_id: str | None = None,
        operator_name: str | None = None,
        office_id: str | None = None,
        office_name: str | None = None,
    ) -> QrIdentity:
        """Decode a national insurance QR code through EcTrans and fire ``qr_decoded``.

        ``org_id`` and ``district_no`` default to the ``[voucher]`` config.  An empty ``idcode``
        lets the vendor library open its own scanning window.
        """
        voucher = self.config.voucher
        data = QrRequestData(
            org_id=org_id or (voucher.org_id if voucher else None) or "",
            business_type=business_type,
            district_no=district_no or (voucher.district_no if voucher else None) or "",
            operator_id=operator_id,
            operator_name=operator_name,
            office_id=office_id,
            office_name=office_name,
        )
        request = QrRequest(data=data, idcode=idcode)
        started_at, started = time.time(), time.perf_counter()
        outcome, error = Outcome.UNKNOWN, "cancelled"
        try:
            identity = await self._first("ybplug_decode_qr", host=self, request=request)
            if identity is None:
                raise PluginError("no plugin decodes QR codes: configure [voucher] library in ybplug.toml")
            outcome, error = Outcome.OK, ""
        except Exception as exc:
            outcome, error = outcome_of(exc), str(exc)
            raise
        finally:
            # Audit without making the person at the counter wait for a disk write: decoding
            # changes nothing at the centre, so there is no "about to leave" mark to keep.
            # The QR code is a secret: the journal keeps the request with idcode masked, no reply.
            journaled = msgspec.json.encode(msgspec.structs.replace(request, idcode=mask(idcode)))
            self.start_soon(
                functools.partial(
                    self._audit, "EcTrans", journaled, outcome, error or None, started_at, time.perf_counter() - started
                )
            )
        assert isinstance(identity, QrIdentity)
        for delivery in await self.caller.call_each(
            "qr_decoded", identity=identity, request=request, event_id=uuid.uuid4().hex
        ):
            if not delivery.ok:
                log.warning("qr_decoded: plugin %s failed: %s", delivery.plugin, type(delivery.error).__name__)
        return identity

    async def sync(self, job: str = "all", *, births: Sequence[int] | None = None) -> dict[str, int]:
        """Run the scheduled jobs now (``upload``, ``realname``, ``stale`` or ``all``) and deliver
        their hooks.  ``stale`` polls, on demand, the births past the real-name horizon; it is not
        part of ``all``.  Replacements a stopped process left half done are carried on first.
        ``births`` limits the upload to those ids (what a clerk just corrected)."""
        check_job(job)
        only = None if births is None else [birth_id_of(b) for b in births]
        summary: dict[str, int] = {}
        if job in ("upload", "all") and (resumed := await self.resume_replacements()):
            summary["replacements_resumed"] = resumed
        if job in ("upload", "all") and (voids := await self.resume_voids()):
            summary["voids_resumed"] = voids
        for outcome in await self.caller.call_each(
            "ybplug_sync", timeout=None, log_errors=False, host=self, job=job, births=only
        ):
            if outcome.error is not None:
                raise outcome.error
            for key, value in (outcome.value or {}).items():
                summary[key] = summary.get(key, 0) + value
        await self.deliveries.settled()  # answers delivered as they came
        summary["delivered"] = await self.deliver_due()
        return summary

    async def status(self) -> dict[str, Any]:
        return await self.run_journal(self.journal.status)

    async def replay(self, event_id: str | None = None, plugin: str | None = None) -> int:
        """Re-queue parked deliveries and make waiting uploads due now; returns how many were re-queued."""
        count = await self.run_journal(self.journal.replay, event_id, plugin)
        await self.run_journal(self.journal.retry_births)
        self.deliveries_waiting()
        self.births_waiting()
        return count

    # --- transactions (used by the built-in plugins) ------------------------------------------

    def is_duplicate(self, cause: str | None) -> bool:
        """Whether a refusal means "already registered" (the centre's words are configurable)."""
        return self.cause_says(cause, self.config.duplicate_markers)

    @staticmethod
    def cause_says(cause: str | None, markers: Sequence[str]) -> bool:
        """Whether a refusal's cause holds one of ``markers`` (the centre's words for a case)."""
        return bool(cause) and any(marker in (cause or "") for marker in markers)

    # --- wake-ups -----------------------------------------------------------------------------------

    def births_waiting(self) -> None:
        """Tell the uploader that new births are in the journal."""
        self._births_waiting.set()

    async def wait_for_births(self, timeout: float) -> None:
        """Sleep until a birth is recorded or ``timeout`` seconds pass (for the upload schedule)."""
        with anyio.move_on_after(max(0.0, timeout)):
            await self._births_waiting.wait()
        self._births_waiting = anyio.Event()

    # --- hook deliveries (the engine is ybplug.deliveries) -------------------------------------

    async def deliver_due(self, batch: int = 200) -> int:
        """Deliver every event due now to the plugins loaded here; how many deliveries succeeded."""
        return await self.deliveries.deliver_due(batch)

    def deliver_soon(self, due: list[Delivery]) -> None:
        """Deliver events a journal write just claimed, without waiting for the delivery loop."""
        self.deliveries.deliver_soon(due)

    def deliveries_waiting(self) -> None:
        """Wake the delivery loop: new events are in the journal."""
        self.deliveries.waiting()

    async def _watch_other_processes(self) -> None:
        """Notice what other processes commit to the journal (the HIS recording a birth in its own
        process, an operator's ``ybplug sync`` producing events for plugins loaded here) and wake
        the uploader and the deliveries: immediate mode means immediate across processes too."""
        while True:
            await anyio.sleep(self.journal.backend.watch_interval)
            try:
                # On the journal's thread but outside the group commit: a look, not a write
                # transaction (which would take SQLite's write lock from the HIS twice a second).
                changed = await self._journal_thread.call(self.journal.changed_elsewhere)
            except Exception:
                continue  # the loops that act on the journal report its errors
            if changed:
                self.births_waiting()
                self.deliveries_waiting()


__all__ = ["Host", "Recorded", "Refused", "PluginError", "events"]
