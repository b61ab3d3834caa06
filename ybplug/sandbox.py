"""A local simulated Xiamen centre: the peer for the demo, the test suite and hospitals' own tests.

It speaks exactly the wire of :class:`ybplug.wire.HttpTransport` (the vendor agent's envelope, see
``ybplug.wire``), keeps its state in SQLite (a file survives restarts, including ``kill -9``:
WAL journal, one commit per transaction) and applies the rules of spec V0.33 as far as we know them:

* ``yb04.13.01.21`` 新生儿信息采集: validates the record with :class:`ybplug.messages.Birth`,
  refuses a repeat of (mother's ID + 多胞胎序号 + 出生时间) while the first registration is not void,
  issues ``baz726`` (``XSE`` + ``yymmdd`` + a 7-digit daily sequence) and decides instant-enrolment eligibility (bkee45/bkee46)
  from a register of insured mothers;
* ``yb04.13.01.22`` 新生儿采集信息作废: voids a registration once, with a reason;
* ``yb04.13.01.24`` 新生儿实名信息查询: reports each known registration, with the real identity once
  an administrator (a test) has real-named it with :meth:`Sandbox.real_name`.

The duplicate refusal deliberately does not say which ``baz726`` the first upload got: the real
centre gives no number either, and a client that lost the first reply must handle "probably
registered, number unknown".

Faults (latency, HTTP errors, replies dropped after commit, malformed replies, refusals) can be
armed per run (``--fault``) or at runtime (:meth:`Sandbox.inject`, ``POST /admin/faults``), each
optionally for one ``funid`` and for the next ``times`` calls, so tests can rely on them.

The admin surface (``/admin/...``, JSON) has no authentication: this is a local test double, bind
it to loopback.  Nothing personal (ID numbers, names, phone numbers, passwords) is logged in the
clear.

Run it alone with ``ybplug sandbox [--port 8721] [--db FILE] [--fault SPEC]...``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import msgspec
from aiohttp import web

from ybplug import envelope
from ybplug.codes import CertificateType, Eligibility, RealNameFlag, Sex, VoidFlag
from ybplug.errors import Error
from ybplug.fields import CHINA_TIME, InvalidMessage, id_check_digit, with_check_digit
from ybplug.messages import COLLECT, REALNAME, VOID, Birth, RealNameQuery, VoidRequest, load
from ybplug.privacy import mask

__all__ = [
    "Sandbox",
    "Fault",
    "SandboxError",
    "FAULT_KINDS",
    "MOTHER_KINDS",
    "SEED_MOTHERS",
    "UNREGISTERED_MOTHER",
    "SANDBOX_USR",
    "SANDBOX_PWD",
    "DEFAULT_PORT",
    "DUPLICATE_CAUSE",
    "parse_fault",
    "main",
]

log = logging.getLogger("ybplug.sandbox")

#: Credentials the sandbox accepts unless told otherwise.
SANDBOX_USR = "his"
SANDBOX_PWD = "sandbox"
#: Port of ``ybplug sandbox`` without ``--port`` (and the default URL of ``WireConfig``).
DEFAULT_PORT = 8721


#: The refusal of a repeated birth.  It names the rule, never the existing ``baz726``.
DUPLICATE_CAUSE = "重复申报: duplicate of an existing registration (多胞胎序号+出生时间)"
AUTH_CAUSE = "usr/pwd rejected"

#: ``latency``: sleep ``seconds`` before answering (the call is then processed normally, even if
#: the client gave up meanwhile, as a slow centre would).  ``http_error``: answer HTTP ``status``
#: before processing (nothing committed).  ``drop_after_commit``: process and commit, then close
#: the connection without a reply.  ``malformed``: process and commit, then answer 200 with a
#: truncated, unparseable body.  ``refuse``: answer flag 0 with ``cause``, nothing committed.
FAULT_KINDS = ("latency", "http_error", "drop_after_commit", "malformed", "refuse")

#: Kinds of the register of insured mothers.  ``local``: 本市户籍参保人, always eligible;
#: ``nonlocal_permit``: 异地户籍参保人, eligible when the residence permit was held one year or more
#: at the birth and was still valid; ``not_insured``: 母亲未参保 (same as not being in the register).
MOTHER_KINDS = ("local", "nonlocal_permit", "not_insured")

#: Mothers written into every sandbox's register, by what they exercise (valid GB 11643 numbers):
#:
#: * ``local``: local household registration, insured: eligible;
#: * ``nonlocal``: residence permit 2015-01-01 to 2099-12-31: eligible for births 2016..2099;
#: * ``short_permit``: permit issued 120 days before the sandbox opened its database, valid three
#:   more years: "居住证未满一年" for any birth up to then;
#: * ``expired_permit``: permit 2010-01-01 to 2020-01-01: "居住证已失效" for births after it;
#: * ``not_insured``: in the register as not insured: "母亲未参保".
#:
#: The seeds are rewritten each time a sandbox opens its database (so ``short_permit`` stays short).
SEED_MOTHERS: dict[str, str] = {
    "local": with_check_digit("35020319900101002"),
    "nonlocal": with_check_digit("36010219920315004"),
    "short_permit": with_check_digit("42010619950720006"),
    "expired_permit": with_check_digit("51010719880808008"),
    "not_insured": with_check_digit("35020619930606002"),
}
#: A valid ID number that is in no register: "母亲未参保".
UNREGISTERED_MOTHER = with_check_digit("35020519910909004")

_NOT_INSURED = "母亲未参保"
_PERMIT_SHORT = "居住证未满一年"
_PERMIT_EXPIRED = "居住证已失效"

_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mothers (
    id_number    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    permit_start TEXT,
    permit_end   TEXT
);
CREATE TABLE IF NOT EXISTS registrations (
    baz726      TEXT PRIMARY KEY,
    bkee35      TEXT NOT NULL,
    bme027      INTEGER NOT NULL,
    aac006      INTEGER NOT NULL,
    akc190      TEXT NOT NULL,
    bke042      TEXT NOT NULL,
    bkee45      TEXT NOT NULL,
    bkee46      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    voided      INTEGER NOT NULL DEFAULT 0,
    bae016      TEXT,
    voided_at   TEXT,
    real_named  INTEGER NOT NULL DEFAULT 0,
    aac058      TEXT,
    aac002      TEXT,
    aac003      TEXT,
    aac004      TEXT,
    aac999      TEXT,
    bae014      TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_registration
    ON registrations (bkee35, bme027, aac006) WHERE voided = 0;
CREATE TABLE IF NOT EXISTS sequences (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
"""

# Statements are constant strings so sqlite3's per-connection statement cache compiles each once.
_SQL_LIVE = "SELECT 1 FROM registrations WHERE bkee35 = ? AND bme027 = ? AND aac006 = ? AND voided = 0"
_SQL_MOTHER = "SELECT kind, permit_start, permit_end FROM mothers WHERE id_number = ?"
_SQL_PUT_MOTHER = "INSERT OR REPLACE INTO mothers (id_number, kind, permit_start, permit_end) VALUES (?, ?, ?, ?)"
_SQL_NEXT = (
    "INSERT INTO sequences (name, last) VALUES (?, 1) "
    "ON CONFLICT (name) DO UPDATE SET last = last + 1 RETURNING last"
)
_SQL_INSERT = (
    "INSERT INTO registrations (baz726, bkee35, bme027, aac006, akc190, bke042, bkee45, bkee46, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_STATE = "SELECT voided, real_named FROM registrations WHERE baz726 = ?"
_SQL_VOID = "UPDATE registrations SET voided = 1, bae016 = ?, voided_at = ? WHERE baz726 = ?"
_SQL_REAL_NAME = (
    "UPDATE registrations SET real_named = 1, aac058 = ?, aac002 = ?, aac003 = ?, aac004 = ?, aac999 = ?, bae014 = ? "
    "WHERE baz726 = ?"
)
_SQL_REALNAME_ROW = (
    "SELECT voided, real_named, aac058, aac002, aac003, aac004, aac999, bae014 FROM registrations WHERE baz726 = ?"
)
_SQL_LIST = (
    "SELECT baz726, bkee35, bme027, aac006, bkee45, bkee46, voided, bae016, real_named, aac999, created_at "
    "FROM registrations ORDER BY rowid"
)


class SandboxError(Error, ValueError):
    """An administrative request the sandbox cannot honour (unknown registration, bad date...)."""


class Fault(msgspec.Struct):
    """One injected fault; see :data:`FAULT_KINDS` for what each ``kind`` does.

    ``funid`` restricts it to one transaction (``None``: every business call); ``times`` is how many
    of the next matching calls it affects (``None``: all of them).  ``seconds`` is for ``latency``,
    ``status`` for ``http_error``, ``cause`` for ``refuse``.  Latencies add up; of the other kinds,
    a call meets only the first armed one that matches it, so faults queue in injection order.
    """

    kind: str
    funid: str | None = None
    times: int | None = 1
    seconds: float = 0.0
    status: int = 503
    cause: str = "refused by fault injection"

    def __post_init__(self) -> None:
        if self.funid is not None and not isinstance(self.funid, str):
            raise TypeError(
                f"funid must be a function id such as 'yb04.13.01.21' (COLLECT.funid), got {self.funid!r}"
            )
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (expected one of {', '.join(FAULT_KINDS)})")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be 1 or more (or None for every call), got {self.times}")
        if not 0 <= self.seconds <= 3600:
            raise ValueError(f"seconds must be between 0 and 3600, got {self.seconds}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {self.status}")

    def matches(self, funid: str) -> bool:
        return self.funid is None or self.funid == funid


class _Armed:
    """A fault and how many more calls it affects (the caller's ``Fault`` is never mutated)."""

    __slots__ = ("fault", "left")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.left = fault.times

    def use(self) -> None:
        if self.left is not None:
            self.left -= 1

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


class _MotherIn(msgspec.Struct):
    id_number: str
    kind: str
    permit_start: str | None = None
    permit_end: str | None = None


class _RealNameIn(msgspec.Struct):
    baz726: str
    id_number: str
    name: str
    sex: str = Sex.MALE.value
    certificate_type: str = CertificateType.RESIDENT_ID_CARD.value


_encoder = msgspec.json.Encoder()
_decode_any = msgspec.json.Decoder().decode

_CERTIFICATE_LABELS = {m.value: m.label for m in CertificateType}
_SEX_LABELS = {m.value: m.label for m in Sex}


def _now() -> datetime:
    """China wall-clock time: the centre stamps registrations in Xiamen, whatever the host's zone."""
    return datetime.now(CHINA_TIME)


def _refusal(cause: str) -> dict[str, Any]:
    return {"flag": "0", "cause": cause, "data": {}}


def _success(data: dict[str, Any]) -> dict[str, Any]:
    return {"flag": "1", "cause": "", "data": data}


def _date_text(value: str, what: str) -> str:
    """``YYYYMMDD`` (``YYYY-MM-DD`` accepted) as ``YYYYMMDD``, which then compares as a date."""
    text = value.strip().replace("-", "")
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise SandboxError(f"{what} must be a date YYYYMMDD, got {value!r}") from None
    return text


def _one_year_after(day: str) -> str:
    """The first day a permit issued on ``day`` has been held a full year (29 Feb -> 1 Mar)."""
    start = datetime.strptime(day, "%Y%m%d").date()
    try:
        later = start.replace(year=start.year + 1)
    except ValueError:
        later = date(start.year + 1, 3, 1)
    return later.strftime("%Y%m%d")


def _check_id_number(id_number: str, certificate_type: str = CertificateType.RESIDENT_ID_CARD.value) -> str:
    value = id_number.strip().upper()
    if not value or len(value) > 18:
        raise SandboxError("an ID number of 1 to 18 characters is required")
    if certificate_type == CertificateType.RESIDENT_ID_CARD.value and _ID_SHAPE.match(value) is None:
        raise SandboxError("a resident ID number is 17 digits and a check digit")
    if _ID_SHAPE.match(value) is not None and id_check_digit(value[:17]) != value[17]:
        raise SandboxError(f"ID number {mask(value)}: check digit is wrong")
    return value


class Sandbox:
    """The simulated centre: a SQLite database plus, once started, an aiohttp server.

    ``db`` is a file path (state survives restarts) or ``":memory:"`` (state lives as long as this
    object).  The Python admin methods work whether or not the server runs; they are what the
    ``/admin/`` endpoints call.  Everything runs on the event loop of whoever calls :meth:`start`,
    so a test's client and the sandbox can share one loop.
    """

    def __init__(
        self,
        db: str | Path = ":memory:",
        *,
        usr: str = SANDBOX_USR,
        pwd: str = SANDBOX_PWD,
        faults: list[Fault] | None = None,
    ) -> None:
        self.db = str(db)
        self.usr = usr
        self.url = ""
        self.sign_ins = 0
        self._usr = usr.encode()
        self._pwd = pwd.encode()
        # One connection, reused: handlers run on one loop and never await inside a transaction;
        # the lock only matters if a test calls the admin methods from another thread.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._faults: list[_Armed] = []
        self._calls: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            COLLECT.funid: self._collect,
            VOID.funid: self._void,
            REALNAME.funid: self._realname,
        }
        self._connection()
        if faults:
            self.inject(*faults)

    def __repr__(self) -> str:
        return f"<Sandbox {self.url or 'not listening'} db={self.db!r}>"

    # -- database ----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.db, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: a committed transaction survives a killed process (not a
                # power cut), and commits cost no fsync: the sandbox must keep up with benchmarks.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.executescript(_SCHEMA)
                self._conn = conn
                self._seed()
            except BaseException:
                self._conn = None
                conn.close()
                raise
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction; committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _seed(self) -> None:
        today = _now().date()
        short_start = (today - timedelta(days=120)).strftime("%Y%m%d")
        short_end = (today + timedelta(days=3 * 365)).strftime("%Y%m%d")
        with self._write() as db:
            db.executemany(_SQL_PUT_MOTHER, [
                (SEED_MOTHERS["local"], "local", None, None),
                (SEED_MOTHERS["nonlocal"], "nonlocal_permit", "20150101", "20991231"),
                (SEED_MOTHERS["short_permit"], "nonlocal_permit", short_start, short_end),
                (SEED_MOTHERS["expired_permit"], "nonlocal_permit", "20100101", "20200101"),
                (SEED_MOTHERS["not_insured"], "not_insured", None, None),
            ])

    def close(self) -> None:
        """Close the database (a later call reopens it).  :meth:`stop` does this for files."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- server ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL to give the client."""
        if self._runner is not None:
            raise RuntimeError(f"sandbox already listening on {self.url}")
        self._connection()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/" + envelope.BUSINESS_PATH, self._business)
        app.router.add_post("/" + envelope.SIGN_IN_PATH, self._sign_in)
        app.router.add_get("/admin/registrations", self._admin_registrations)
        app.router.add_post("/admin/mothers", self._admin_mother)
        app.router.add_post("/admin/real_name", self._admin_real_name)
        app.router.add_get("/admin/faults", self._admin_faults)
        app.router.add_post("/admin/faults", self._admin_inject)
        app.router.add_delete("/admin/faults", self._admin_clear_faults)
        app.router.add_get("/admin/calls", self._admin_calls)
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

    # -- admin -------------------------------------------------------------------------------

    def add_mother(
        self, id_number: str, kind: str, permit_start: str | None = None, permit_end: str | None = None
    ) -> None:
        """Put a mother in the register of insured persons (replacing any entry for that ID).

        ``kind`` is one of :data:`MOTHER_KINDS`; ``nonlocal_permit`` needs the residence permit's
        start and end dates (``YYYYMMDD``).
        """
        if kind not in MOTHER_KINDS:
            raise SandboxError(f"unknown mother kind {kind!r} (expected one of {', '.join(MOTHER_KINDS)})")
        value = _check_id_number(id_number, certificate_type="")
        start = end = None
        if kind == "nonlocal_permit":
            if not permit_start or not permit_end:
                raise SandboxError("a nonlocal_permit mother needs permit_start and permit_end (YYYYMMDD)")
            start = _date_text(permit_start, "permit_start")
            end = _date_text(permit_end, "permit_end")
            if end < start:
                raise SandboxError(f"permit_end {end} is before permit_start {start}")
        with self._write() as db:
            db.execute(_SQL_PUT_MOTHER, (value, kind, start, end))
        log.info("register: mother %s is %s", mask(value), kind)

    def real_name(
        self, baz726: str, *, id_number: str, name: str, sex: str = "1", certificate_type: str = "01"
    ) -> None:
        """Give a registration its real identity, as the centre's daily real-name run does.

        ``aac999`` (个人管理码) and ``bae014`` (now, China time) are generated.  A void, unknown or
        already real-named registration is refused with :class:`SandboxError`.
        """
        if not CertificateType.has(certificate_type):
            raise SandboxError(f"certificate_type {certificate_type!r} is not one of {CertificateType.describe()}")
        if not Sex.has(sex):
            raise SandboxError(f"sex {sex!r} is not one of {Sex.describe()}")
        value = _check_id_number(id_number, certificate_type)
        if not name.strip():
            raise SandboxError("name is required")
        with self._write() as db:
            row = db.execute(_SQL_STATE, (baz726,)).fetchone()
            if row is None:
                raise SandboxError(f"no such registration: baz726 {baz726}")
            if row[0]:
                raise SandboxError(f"registration {baz726} is void")
            if row[1]:
                raise SandboxError(f"registration {baz726} is already real-named")
            seq = db.execute(_SQL_NEXT, ("aac999",)).fetchone()[0]
            code = f"3502{seq:09d}"
            stamp = _now().strftime("%Y%m%d%H%M%S")
            db.execute(_SQL_REAL_NAME, (certificate_type, value, name.strip(), sex, code, stamp, baz726))
        log.info("real-named %s as %s", baz726, mask(value))

    def registrations(self) -> list[dict[str, Any]]:
        """Every registration, oldest first, keyed by wire names where the spec has one.

        Keys: ``baz726``, ``bkee35`` (mother's ID), ``bme027``, ``aac006``, ``bkee45``, ``bkee46``,
        ``voided`` (bool), ``bae016`` (void reason or None), ``real_named`` (bool), ``aac999``
        (None until real-named), ``created_at`` (``YYYYMMDDHHMMSS``).
        """
        with self._lock:
            rows = self._connection().execute(_SQL_LIST).fetchall()
        keys = ("baz726", "bkee35", "bme027", "aac006", "bkee45", "bkee46", "voided", "bae016",
                "real_named", "aac999", "created_at")
        result = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["voided"] = bool(item["voided"])
            item["real_named"] = bool(item["real_named"])
            result.append(item)
        return result

    def inject(self, *faults: Fault) -> None:
        """Arm faults for the next business calls (see :class:`Fault`)."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"inject() takes Fault objects, got {type(fault).__name__}")
            self._faults.append(_Armed(fault))
            log.info("fault armed: %s on %s for %s", fault.kind, fault.funid or "every funid",
                     "every call" if fault.times is None else f"{fault.times} call(s)")

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[Fault]:
        """The faults still armed, ``times`` being what is left of each."""
        return [msgspec.structs.replace(a.fault, times=a.left) for a in self._faults]

    def calls(self, funid: str | None = None) -> int:
        """How many business calls arrived (for ``funid``, or in all), faulted or refused ones too.

        Counted in memory since this object was made: a restarted sandbox starts from zero.
        """
        if funid is None:
            return sum(self._calls.values())
        return self._calls[funid]

    # -- the wire ----------------------------------------------------------------------------

    def _envelope(self, inner: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(body=envelope.encode_reply(inner), status=status, content_type="application/json", charset="utf-8")

    def _authorised(self, usr: str, pwd: str) -> bool:
        usr_ok = secrets.compare_digest(usr.encode(), self._usr)
        pwd_ok = secrets.compare_digest(pwd.encode(), self._pwd)
        return usr_ok and pwd_ok

    def _take_faults(self, funid: str) -> tuple[float, Fault | None]:
        """Consume what applies to this call: every matching latency, and the first other fault."""
        delay = 0.0
        chosen: Fault | None = None
        for armed in self._faults:
            fault = armed.fault
            if not fault.matches(funid):
                continue
            if fault.kind == "latency":
                delay += fault.seconds
                armed.use()
            elif chosen is None:
                chosen = fault
                armed.use()
        if delay or chosen is not None:
            self._faults = [a for a in self._faults if not a.spent]
        return delay, chosen

    async def _business(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            inner = envelope.decode_request(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._envelope(_refusal(f"malformed request envelope: {exc}"), status=400)
        funid = inner.funid
        self._calls[funid] += 1
        if not self._authorised(inner.usr, inner.pwd):
            log.info("%s: usr/pwd rejected", funid)
            return self._envelope(_refusal(AUTH_CAUSE), status=401)
        delay, fault = self._take_faults(funid)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            if fault.kind == "http_error":
                log.info("%s: fault http_error %d", funid, fault.status)
                return web.Response(status=fault.status, text=f"HTTP {fault.status} injected by the sandbox")
            if fault.kind == "refuse":
                log.info("%s: fault refuse", funid)
                return self._envelope(_refusal(fault.cause))
        response = self._envelope(self._dispatch(funid, inner.data))
        if fault is not None and fault.kind == "drop_after_commit":
            log.info("%s: fault drop_after_commit (committed, reply dropped)", funid)
            if request.transport is not None:
                request.transport.abort()
            return response  # aiohttp finds the transport closed and writes nothing
        if fault is not None and fault.kind == "malformed":
            log.info("%s: fault malformed (committed, reply truncated)", funid)
            assert isinstance(response.body, bytes)
            return web.Response(body=response.body[: len(response.body) // 2], content_type="application/json")
        return response

    def _dispatch(self, funid: str, data: Any) -> dict[str, Any]:
        handler = self._handlers.get(funid)
        if handler is None:
            known = ", ".join(self._handlers)
            return _refusal(f"unknown funid {funid!r} (this centre serves {known})")
        if not isinstance(data, dict):
            return _refusal("data must be a JSON object holding the transaction's fields")
        try:
            return handler(data)
        except InvalidMessage as exc:
            log.debug("%s refused: invalid message", funid)
            return _refusal(str(exc))

    def _collect(self, data: dict[str, Any]) -> dict[str, Any]:
        """yb04.13.01.21: refuse a live duplicate, else register and judge eligibility."""
        birth = load(Birth, data, strict=False)
        key = (birth.mother_id_number, birth.multiple_birth_number, birth.birth_time)
        with self._write() as db:
            if db.execute(_SQL_LIVE, key).fetchone() is not None:
                log.debug("%s duplicate for mother %s", COLLECT.funid, mask(birth.mother_id_number))
                return _refusal(DUPLICATE_CAUSE)
            eligible, reason = self._eligibility(db, birth.mother_id_number, str(birth.birth_time)[:8])
            now = _now()
            prefix = now.strftime("XSE%y%m%d")
            seq = db.execute(_SQL_NEXT, (prefix,)).fetchone()[0]
            if seq > 9_999_999:
                return _refusal("registration numbers of the day are exhausted")
            baz726 = f"{prefix}{seq:07d}"
            db.execute(_SQL_INSERT, (baz726, *key, birth.medical_serial, birth.his_serial, eligible, reason,
                                     now.strftime("%Y%m%d%H%M%S")))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s registered %s for mother %s: bkee45=%s",
                      COLLECT.funid, baz726, mask(birth.mother_id_number), eligible)
        return _success({"baz726": baz726, "bkee45": eligible, "bkee46": reason})

    @staticmethod
    def _eligibility(db: sqlite3.Connection, mother_id: str, birth_day: str) -> tuple[str, str]:
        """bkee45/bkee46 from the register, judged on the day of the birth (spec 1.1.1.2 step 3)."""
        row = db.execute(_SQL_MOTHER, (mother_id,)).fetchone()
        if row is None or row[0] == "not_insured":
            return Eligibility.NOT_ELIGIBLE.value, _NOT_INSURED
        kind, start, end = row
        if kind == "local":
            return Eligibility.ELIGIBLE.value, ""
        if end < birth_day:
            return Eligibility.NOT_ELIGIBLE.value, _PERMIT_EXPIRED
        if _one_year_after(start) > birth_day:
            return Eligibility.NOT_ELIGIBLE.value, _PERMIT_SHORT
        return Eligibility.ELIGIBLE.value, ""

    def _void(self, data: dict[str, Any]) -> dict[str, Any]:
        """yb04.13.01.22: void an existing, live registration."""
        request = load(VoidRequest, data, strict=False)
        number = request.registration_number
        with self._write() as db:
            row = db.execute(_SQL_STATE, (number,)).fetchone()
            if row is None:
                return _refusal(f"no such registration: baz726 {number}")
            if row[0]:
                return _refusal(f"already void: baz726 {number}")
            db.execute(_SQL_VOID, (request.reason, _now().strftime("%Y%m%d%H%M%S"), number))
        log.debug("%s voided %s", VOID.funid, number)
        return _success({"baz726": number})

    def _realname(self, data: dict[str, Any]) -> dict[str, Any]:
        """yb04.13.01.24: one row per known registration asked about; unknown ones are left out."""
        query = load(RealNameQuery, data, strict=False)
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        with self._lock:
            db = self._connection()
            for item in query.items:
                number = item.registration_number
                if number in seen:
                    continue
                seen.add(number)
                found = db.execute(_SQL_REALNAME_ROW, (number,)).fetchone()
                if found is None:
                    continue
                voided, real_named, cert, id_number, name, sex, code, stamp = found
                void_flag = VoidFlag.VOID.value if voided else VoidFlag.NORMAL.value
                if real_named:
                    rows.append({
                        "baz726": number,
                        "bae018": RealNameFlag.REAL_NAMED.value,
                        "aac058": cert,
                        "aac058_mc": _CERTIFICATE_LABELS[cert],
                        "aac002": id_number,
                        "aac003": name,
                        "aac004": sex,
                        "aac004_mc": _SEX_LABELS[sex],
                        "aac999": code,
                        "bae014": stamp,
                        "bae009": void_flag,
                    })
                else:
                    rows.append({"baz726": number, "bae018": RealNameFlag.NOT_REAL_NAMED.value, "bae009": void_flag})
        return _success({"rownum": len(rows), "xsesmlb": rows})

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        try:
            credentials = envelope.decode_credentials(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError):
            return web.json_response({"flag": "0", "cause": "malformed sign-in request"}, status=400)
        self.sign_ins += 1
        if not self._authorised(credentials.usr, credentials.pwd):
            log.info("sign-in: usr/pwd rejected")
            return web.json_response({"flag": "0", "cause": AUTH_CAUSE}, status=401)
        return web.json_response({"flag": "1", "cause": ""})

    # -- admin endpoints ---------------------------------------------------------------------

    @staticmethod
    def _json(payload: Any, status: int = 200) -> web.Response:
        return web.Response(body=_encoder.encode(payload), status=status, content_type="application/json")

    async def _admin_body(self, request: web.Request, kind: Any) -> Any:
        try:
            return msgspec.convert(_decode_any(await request.read()), kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SandboxError(str(exc)) from None

    async def _admin_registrations(self, request: web.Request) -> web.StreamResponse:
        return self._json({"registrations": self.registrations()})

    async def _admin_mother(self, request: web.Request) -> web.StreamResponse:
        try:
            mother: _MotherIn = await self._admin_body(request, _MotherIn)
            self.add_mother(mother.id_number, mother.kind, mother.permit_start, mother.permit_end)
        except SandboxError as exc:
            return self._json({"error": str(exc)}, status=400)
        return self._json({"ok": True})

    async def _admin_real_name(self, request: web.Request) -> web.StreamResponse:
        try:
            item: _RealNameIn = await self._admin_body(request, _RealNameIn)
            self.real_name(item.baz726, id_number=item.id_number, name=item.name, sex=item.sex,
                           certificate_type=item.certificate_type)
        except SandboxError as exc:
            return self._json({"error": str(exc)}, status=400)
        return self._json({"ok": True})

    async def _admin_faults(self, request: web.Request) -> web.StreamResponse:
        return self._json({"faults": self.faults()})

    async def _admin_inject(self, request: web.Request) -> web.StreamResponse:
        try:
            given: Fault | list[Fault] = await self._admin_body(request, Fault | list[Fault])
        except SandboxError as exc:
            return self._json({"error": str(exc)}, status=400)
        self.inject(*(given if isinstance(given, list) else [given]))
        return self._json({"faults": self.faults()})

    async def _admin_clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.clear_faults()
        return self._json({"faults": []})

    async def _admin_calls(self, request: web.Request) -> web.StreamResponse:
        return self._json({"total": self.calls(), "by_funid": dict(self._calls), "sign_ins": self.sign_ins})


# -- command line ------------------------------------------------------------------------------


def parse_fault(spec: str) -> Fault:
    """``KIND[:FUNID][,times=N|all][,seconds=S][,status=N][,cause=TEXT]`` as a :class:`Fault`.

    On the command line a fault without ``times`` affects every call (a per-run setting); ``cause``
    must come last, since it may hold commas.  Raises ``ValueError`` with a readable reason.
    """
    head, _, rest = spec.partition(",")
    kind, _, funid = head.partition(":")
    options: dict[str, Any] = {"kind": kind.strip(), "funid": funid.strip() or None, "times": None}
    while rest:
        item, _, remainder = rest.partition(",")
        name, sep, value = item.partition("=")
        name = name.strip()
        if name == "cause" and sep:
            options["cause"] = rest.partition("=")[2]
            break
        rest = remainder
        if not sep:
            raise ValueError(f"option {item!r} must be NAME=VALUE")
        value = value.strip()
        try:
            if name == "times":
                options["times"] = None if value in ("all", "every", "none", "None") else int(value)
            elif name == "seconds":
                options["seconds"] = float(value)
            elif name == "status":
                options["status"] = int(value)
            else:
                raise ValueError(f"unknown option {name!r} (times, seconds, status, cause)")
        except ValueError as exc:
            if "unknown option" in str(exc):
                raise
            raise ValueError(f"{name}={value!r} is not a number") from None
    try:
        return Fault(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so a bad flag costs one clear line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _fault_argument(spec: str) -> Fault:
    try:
        return parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{spec!r}: {exc}") from None


def _port_argument(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _parser() -> _Parser:
    parser = _Parser(
        prog="ybplug sandbox",
        description="Run the simulated Xiamen centre until SIGINT/SIGTERM; prints its URL on one line.",
        epilog=(
            "Fault SPEC: KIND[:FUNID][,times=N][,seconds=S][,status=N][,cause=TEXT], KIND one of "
            f"{', '.join(FAULT_KINDS)}.  Without times a fault affects every call.  "
            "Seeded mothers: see ybplug.sandbox.SEED_MOTHERS."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port_argument, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--db", default=None, help="SQLite file holding the state (default: in memory)")
    parser.add_argument("--usr", default=SANDBOX_USR, help=f"accepted usr (default {SANDBOX_USR})")
    parser.add_argument("--pwd", default=SANDBOX_PWD, help="accepted pwd (default: the documented sandbox one)")
    parser.add_argument("--fault", action="append", default=[], type=_fault_argument, metavar="SPEC",
                        help="inject a fault from the start (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every transaction (masked)")
    return parser


async def _serve(sandbox: Sandbox, host: str, port: int) -> int:
    try:
        url = await sandbox.start(host, port)
    except OSError as exc:
        print(f"ybplug sandbox: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        sandbox.close()
        return 1
    print(url, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stopping.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C arrives as KeyboardInterrupt
            pass
    try:
        await stopping.wait()
    finally:
        await sandbox.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ybplug sandbox``: serve until SIGINT/SIGTERM.  Exit 2 on a bad flag or unusable ``--db``."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except _UsageError as exc:
        print(f"ybplug sandbox: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sandbox = Sandbox(args.db or ":memory:", usr=args.usr, pwd=args.pwd, faults=args.fault)
    except sqlite3.Error as exc:
        print(f"ybplug sandbox: error: cannot use --db {args.db}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(sandbox, args.host, args.port))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())


#: Source of a test EcTrans library with the vendor's signature and selectable failure modes.
FAKE_ECTRANS_SOURCE = Path(__file__).with_name("fake_ectrans.c")


class NoCompiler(SandboxError):
    """No C compiler to build the fake EcTrans library."""


def build_fake_ectrans(directory: str | Path) -> Path:
    """Compile the sandbox's fake EcTrans library (``fake_ectrans.c``) into ``directory``.

    The sandbox's stand-in for ``ylz-certificate.dll``: same signature, GBK JSON, and modes
    (selected by an ``idcode`` of ``mode:NAME:ARG:TAIL`` or ``$FAKE_ECTRANS_MODE``) that hang,
    crash or answer badly, for tests and the demo.  Needs ``cc`` (or ``$CC``); POSIX only.
    """
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None or sys.platform == "win32":
        raise NoCompiler("no C compiler (cc) to build the fake EcTrans library")
    target = Path(directory) / "libfake_ectrans.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(target), str(FAKE_ECTRANS_SOURCE), "-lpthread"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise NoCompiler(f"building the fake EcTrans library failed: {done.stderr.strip()[:500]}")
    return target

