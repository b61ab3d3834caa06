"""The sandbox centre on HTTP: :class:`Sandbox`, the peer of the demo, the tests and benchmarks.

It speaks exactly the wire of :class:`ybplug.wire.HttpTransport` (:mod:`ybplug.envelope`), answers
with the rules of :class:`ybplug.sandbox.centre.Centre`, commits the faults armed in a
:class:`ybplug.sandbox.faults.FaultBook`, and reads every body through
:mod:`ybplug.sandbox.parse` (size and nesting limits; hostile input gets a clear 400 or 413).

It is also the server of the bare-aiohttp baseline in the benchmarks, so a business call does only
what it must: no access log, one parse, one constant-time credential check, an empty-list test
for faults, the rule, one encode.

The admin surface (``/admin/...``, JSON) has no authentication: this is a local test double, bind
it to loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from ybplug import envelope
from ybplug.codes import CertificateType
from ybplug.sandbox.centre import AUTH_CAUSE, SANDBOX_PWD, SANDBOX_USR, Centre, SandboxError, refusal
from ybplug.sandbox.faults import Fault, FaultBook
from ybplug.sandbox.parse import MAX_BODY, BadRequest, parse_admin, parse_business, parse_credentials

log = logging.getLogger("ybplug.sandbox")

#: Where calls with a funid the centre does not serve are counted (never by the caller's text:
#: a scanner sending a million distinct funids must not grow the counter).
OTHER_FUNID = "(unknown funid)"

_JSON = "application/json; charset=utf-8"
_encode = msgspec.json.Encoder().encode

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _MotherIn(msgspec.Struct):
    id_number: str
    kind: str
    permit_start: str | None = None
    permit_end: str | None = None


class _RealNameIn(msgspec.Struct):
    baz726: str
    id_number: str
    name: str
    sex: str | None = None  # the newborn's as uploaded
    certificate_type: str = CertificateType.RESIDENT_ID_CARD.value


def _reply(inner: dict[str, Any], status: int = 200) -> web.Response:
    """A business answer in the vendor agent's envelope."""
    return web.Response(body=envelope.encode_reply(inner), status=status, headers={"Content-Type": _JSON})


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(payload), status=status, headers={"Content-Type": _JSON})


async def _read(request: web.Request) -> bytes:
    """The body, at most :data:`MAX_BODY` bytes (aiohttp stops reading beyond its limit)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(f"request body over the {MAX_BODY}-byte limit", status=413) from None


class Sandbox(Centre):
    """The simulated centre: a :class:`Centre` (SQLite) plus faults and, once started, an aiohttp
    server.

    ``db`` is a file path (state survives restarts) or ``":memory:"``.  The Python admin methods
    work whether or not the server runs; they are what the ``/admin/`` endpoints call.  Everything
    runs on the event loop of whoever calls :meth:`start`, so a test's client and the sandbox can
    share one loop.
    """

    def __init__(
        self,
        db: str | Path = ":memory:",
        *,
        usr: str = SANDBOX_USR,
        pwd: str = SANDBOX_PWD,
        faults: list[Fault] | None = None,
        charset: str = "gbk",
    ) -> None:
        super().__init__(db, usr=usr, pwd=pwd, charset=charset)
        self.url = ""
        self.sign_ins = 0
        self._faults = FaultBook()
        self._calls: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        if faults:
            self.inject(*faults)

    def __repr__(self) -> str:
        return f"<Sandbox {self.url or 'not listening'} db={self.db!r}>"

    # -- faults and counters -----------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Arm faults for the next business calls (see :class:`Fault`)."""
        self._faults.arm(*faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[Fault]:
        """The faults still armed, ``times`` being what is left of each."""
        return self._faults.armed()

    def calls(self, funid: str | None = None) -> int:
        """How many business calls arrived (for ``funid``, or in all), faulted or refused ones too;
        calls for a funid the centre does not serve count under :data:`OTHER_FUNID`.

        Counted in memory since this object was made: a restarted sandbox starts from zero.
        """
        if funid is None:
            return sum(self._calls.values())
        return self._calls[funid]

    # -- server ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL to give the client."""
        if self._runner is not None:
            raise RuntimeError(f"sandbox already listening on {self.url}")
        self._connection()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/" + envelope.BUSINESS_PATH, self._business)
        app.router.add_post("/" + envelope.SIGN_IN_PATH, self._sign_in)
        for method, path, handler in self._admin_routes():
            app.router.add_route(method, "/admin/" + path, handler)
        # No access log (it costs at benchmark rates); a short shutdown so a test's stop() does not
        # wait for a handler sleeping in an injected latency (cancelling it commits nothing).
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        if ":" in shown:
            shown = f"[{shown}]"
        self.url = f"http://{shown}:{bound_port}"
        log.info("sandbox centre listening on %s (db %s)", self.url, self.db)
        return self.url

    async def stop(self) -> None:
        """Stop listening; close the database if it is a file (an in-memory one is kept)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
            log.info("sandbox centre on %s stopped", self.url)
            self.url = ""
        if self.db != ":memory:":
            self.close()

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- the wire ----------------------------------------------------------------------------

    async def _business(self, request: web.Request) -> web.StreamResponse:
        try:
            inner = parse_business(await _read(request))
        except BadRequest as exc:
            return _reply(refusal(str(exc)), exc.status)
        funid = inner.funid
        if funid not in self.rules:
            funid = OTHER_FUNID
        self._calls[funid] += 1
        if not self.authorised(inner.usr, inner.pwd):
            log.info("%s: usr/pwd rejected", funid)
            return _reply(refusal(AUTH_CAUSE), 401)
        if self._faults:
            return await self._faulted(request, funid, inner)
        return _reply(self.dispatch(inner.funid, inner.data))

    async def _faulted(self, request: web.Request, funid: str, inner: envelope.Request) -> web.StreamResponse:
        """A business call while faults are armed: the one that applies, if any, is committed."""
        delay, fault = self._faults.take(inner.funid)
        if delay:
            await asyncio.sleep(delay)
        if fault is None:
            return _reply(self.dispatch(inner.funid, inner.data))
        log.info("%s: fault %s", funid, fault.kind)
        if fault.kind == "http_error":
            return web.Response(status=fault.status, text=f"HTTP {fault.status} injected by the sandbox")
        if fault.kind == "refuse":
            return _reply(refusal(fault.cause))
        body = envelope.encode_reply(self.dispatch(inner.funid, inner.data))  # committed
        if fault.kind == "drop_after_commit":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(body=body)  # aiohttp finds the transport closed and writes nothing
        return web.Response(body=body[: len(body) // 2], headers={"Content-Type": _JSON})  # malformed

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        try:
            credentials = parse_credentials(await _read(request))
        except BadRequest as exc:
            return _json({"flag": "0", "cause": str(exc)}, exc.status)
        self.sign_ins += 1
        if not self.authorised(credentials.usr, credentials.pwd):
            log.info("sign-in: usr/pwd rejected")
            return _json({"flag": "0", "cause": AUTH_CAUSE}, 401)
        return _json({"flag": "1", "cause": ""})

    # -- admin endpoints ---------------------------------------------------------------------

    def _admin_routes(self) -> list[tuple[str, str, Handler]]:
        """``/admin/...``: each route is (method, path, body type or None, action on the body)."""
        table: list[tuple[str, str, Any, Callable[[Any], Any]]] = [
            ("GET", "registrations", None, lambda _: {"registrations": self.registrations()}),
            ("POST", "mothers", _MotherIn, self._admin_mother),
            ("POST", "real_name", _RealNameIn, self._admin_real_name),
            ("GET", "faults", None, lambda _: {"faults": self.faults()}),
            ("POST", "faults", Fault | list[Fault], self._admin_inject),
            ("DELETE", "faults", None, self._admin_clear_faults),
            ("GET", "calls", None,
             lambda _: {"total": self.calls(), "by_funid": dict(self._calls), "sign_ins": self.sign_ins}),
        ]
        return [(method, path, self._admin(kind, action)) for method, path, kind, action in table]

    @staticmethod
    def _admin(kind: Any, action: Callable[[Any], Any]) -> Handler:
        """One admin handler: read the body as ``kind`` (if any), act, answer JSON; a body it cannot
        read or a request it cannot honour is a 400 (413 when too large) with ``{"error": ...}``."""

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                given = None if kind is None else parse_admin(await _read(request), kind)
                return _json(action(given))
            except SandboxError as exc:  # BadRequest included, with its own status
                return _json({"error": str(exc)}, exc.status if isinstance(exc, BadRequest) else 400)

        return handle

    def _admin_mother(self, mother: _MotherIn) -> dict[str, Any]:
        self.add_mother(mother.id_number, mother.kind, mother.permit_start, mother.permit_end)
        return {"ok": True}

    def _admin_real_name(self, item: _RealNameIn) -> dict[str, Any]:
        self.real_name(item.baz726, id_number=item.id_number, name=item.name, sex=item.sex,
                       certificate_type=item.certificate_type)
        return {"ok": True}

    def _admin_inject(self, given: Fault | list[Fault]) -> dict[str, Any]:
        self.inject(*(given if isinstance(given, list) else [given]))
        return {"faults": self.faults()}

    def _admin_clear_faults(self, _: None) -> dict[str, Any]:
        self.clear_faults()
        return {"faults": []}


__all__ = ["Sandbox", "OTHER_FUNID"]
