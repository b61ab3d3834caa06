"""The host's exchanges with the centre, journaled as the durability rules require and told to
the ``ybplug_transaction`` observers (a part of :class:`ybplug.host.Host`).

* A request that changes something at the centre (an upload, a void) leaves only after its
  exchange row is committed (:meth:`Transactions.transact`): a reply lost after that is an
  unknown outcome, never a silent success or failure.
* A request that changes nothing (a real-name query, an EcTrans decode) is journaled once, after
  it, with its answer (:meth:`Transactions.ask`, :meth:`Transactions._audit`): a process killed
  meanwhile asks again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

import anyio
import msgspec

from ybplug.caller import AsyncHookCaller
from ybplug.errors import Error, Outcome
from ybplug.journal import Journal
from ybplug.messages import RequestT, ResultT, Transaction
from ybplug.privacy import described, mask_names_beside_numbers, scrub
from ybplug.wire import Transport, WireError, exchange

log = logging.getLogger("ybplug.host")

P = ParamSpec("P")
T = TypeVar("T")


class Refused(Error):
    """The centre answered ``flag`` 0: the request was understood and refused."""

    outcome = Outcome.REFUSED

    def __init__(self, funid: str, cause: str | None, secrets: Iterable[object] = ()) -> None:
        """``cause`` is the centre's text, which may quote the person (``母亲陈静证件3502…``): it
        is kept scrubbed of ``secrets`` (the personal values of the record at hand), of ID and
        phone numbers and of a name beside one, since the message reaches logs and screens."""
        self.funid = funid
        self.cause = scrub(mask_names_beside_numbers(cause), secrets) if cause else "no cause given"
        super().__init__(f"{funid} refused by the centre: {self.cause}")


class Transactions:
    """The exchanges of a host; :class:`ybplug.host.Host` supplies the journal, the transport and
    the hook caller."""

    caller: AsyncHookCaller
    journal: Journal

    @property
    def transport(self) -> Transport:
        raise NotImplementedError

    async def run_journal(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        raise NotImplementedError

    async def transact(
        self,
        transaction: Transaction[RequestT, ResultT],
        request: RequestT,
        *,
        birth_id: int | None = None,
        exchange_id: int | None = None,
    ) -> tuple[int, ResultT]:
        """Journal that ``request`` is leaving, exchange it, tell the observers.

        Returns the exchange id and the centre's answer (refusals included) for the caller to
        record with its state change.  On a :class:`WireError` the failure is recorded here
        and the error, carrying ``exchange_id``, is raised.
        """
        if exchange_id is None:  # else the caller committed the "about to leave" mark already
            payload = msgspec.json.encode(request)
            exchange_id = await self.run_journal(self.journal.begin_exchange, transaction.funid, payload, birth_id)
        started = time.perf_counter()
        try:
            result = await exchange(self.transport, transaction, request)
        except WireError as exc:
            exc.exchange_id = exchange_id
            await self.run_journal(self.journal.finish_exchange, exchange_id, exc.outcome, None, exc.reason)
            await self._observe(transaction.funid, exc.outcome, time.perf_counter() - started, exchange_id)
            raise
        await self._observe(transaction.funid, "ok" if result.ok else "refused", time.perf_counter() - started, exchange_id)
        return exchange_id, result

    async def ask(
        self, transaction: Transaction[RequestT, ResultT], request: RequestT, record: Callable[[int, ResultT], T]
    ) -> T:
        """A read-only transaction (yb04.13.01.24 changes nothing at the centre): no "about to
        leave" mark; the exchange is journaled with its answer, and ``record(exchange_id, result)``
        (a journal call, run on the journal's thread) in the same commit.  Returns what ``record``
        returns.  On a :class:`WireError` the failed exchange is journaled and the error raised.
        """
        funid = transaction.funid
        payload = msgspec.json.encode(request)
        started_at, started = time.time(), time.perf_counter()
        try:
            result = await exchange(self.transport, transaction, request)
        except WireError as exc:
            elapsed = time.perf_counter() - started
            exc.exchange_id = await self.run_journal(
                self.journal.record_exchange, funid, payload, exc.outcome, exc.reason, started_at, elapsed
            )
            await self._observe(funid, exc.outcome, elapsed, exc.exchange_id)
            raise
        elapsed = time.perf_counter() - started
        outcome = Outcome.OK if result.ok else Outcome.REFUSED

        def journaled() -> tuple[int, T]:
            exchange_id = self.journal.record_exchange(
                funid, payload, outcome, None if result.ok else result.cause, started_at, elapsed
            )
            return exchange_id, record(exchange_id, result)

        exchange_id, value = await self.run_journal(journaled)
        await self._observe(funid, outcome, elapsed, exchange_id)
        return value

    async def _audit(
        self, funid: str, request: bytes, outcome: Outcome, error: str | None, started_at: float, elapsed: float
    ) -> None:
        """Journal a finished read-only exchange and tell the observers (shielded: it outlives exit)."""
        with anyio.CancelScope(shield=True):
            try:
                exchange_id = await self.run_journal(
                    self.journal.record_exchange, funid, request, outcome, error, started_at, elapsed
                )
            except Error as exc:
                log.error("could not journal a %s exchange: %s", funid, exc)
                return
            except Exception as exc:  # a bug of ours: its traceback, and the host goes on
                log.error("could not journal a %s exchange: %s", funid, described(exc))
                return
            await self._observe(funid, outcome, elapsed, exchange_id)

    async def _observe(self, funid: str, outcome: str, elapsed: float, exchange_id: int) -> None:
        if not self.caller.implementations("ybplug_transaction"):  # nobody observes: no call to make
            return
        for result in await self.caller.call_each(
            "ybplug_transaction", funid=funid, outcome=outcome, elapsed=elapsed, transaction_id=exchange_id
        ):
            if not result.ok:
                log.warning("observer %s failed: %s", result.plugin, type(result.error).__name__)
