"""The simulated Xiamen centre's rules, on SQLite: what the sandbox answers, without the HTTP.

:class:`Centre` is a plain class (no aiohttp, no event loop) that a test can drive directly;
:class:`ybplug.sandbox.Sandbox` puts it behind the vendor agent's wire (:mod:`ybplug.envelope`).
State lives in SQLite: a file survives restarts, including ``kill -9`` (WAL journal, one commit
per transaction), and is private to its user (0600 in folders the centre creates 0700), since it
holds mothers' ID numbers and newborns' real identities.  The rules of spec V0.33, as far as we
know them:

* ``yb04.13.01.21`` 新生儿信息采集: validates the record with :class:`ybplug.messages.Birth`,
  refuses a repeat of (mother's ID + 多胞胎序号 + 出生时间) while the first registration is not
  void, issues ``baz726`` (``XSE`` + ``yymmdd`` + a 7-digit daily sequence) and decides
  instant-enrolment eligibility (bkee45/bkee46) from a register of insured mothers;
* ``yb04.13.01.22`` 新生儿采集信息作废: voids a registration once, with a reason;
* ``yb04.13.01.24`` 新生儿实名信息查询: reports each known registration, with the real identity
  once an administrator (a test) has real-named it with :meth:`Centre.real_name`.

The duplicate refusal deliberately does not say which ``baz726`` the first upload got: the real
centre gives no number either, and a client that lost the first reply must handle "probably
registered, number unknown".  Nothing personal (ID numbers, names, phone numbers, passwords) is
logged in the clear.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ybplug.codes import CertificateType, Eligibility, Funid, RealNameFlag, Sex, VoidFlag
from ybplug.errors import Error
from ybplug.fields import _ID_SHAPE as ID_SHAPE  # GB 11643's shape, shared with the HIS's checks
from ybplug.fields import CHINA_TIME, InvalidMessage, id_check_digit, with_check_digit
from ybplug.messages import Birth, RealNameQuery, VoidRequest, load
from ybplug.privacy import mask
from ybplug.system import private_dir, private_file

log = logging.getLogger("ybplug.sandbox")

#: Credentials the sandbox accepts unless told otherwise.
SANDBOX_USR = "his"
SANDBOX_PWD = "sandbox"
#: Port of ``ybplug sandbox`` without ``--port`` (and the default URL of ``WireConfig``).
DEFAULT_PORT = 8721

#: The refusal of a repeated birth.  It names the rule, never the existing ``baz726``.
DUPLICATE_CAUSE = "重复申报: duplicate of an existing registration (多胞胎序号+出生时间)"
AUTH_CAUSE = "usr/pwd rejected"

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

# `duplicates` pairs this schema with journal.py's by shape (both are SQL table text); they share
# nothing: the centre's tables are its own, the journal's are the HIS's.
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
    "INSERT INTO registrations (baz726, bkee35, bme027, aac006, akc190, bke042, bkee45, bkee46, created_at, aac004) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
    """A request the sandbox cannot honour (unknown registration, bad date, unreadable body...)."""


_CERTIFICATE_LABELS = {m.value: m.label for m in CertificateType}
_SEX_LABELS = {m.value: m.label for m in Sex}


def now() -> datetime:
    """China wall-clock time: the centre stamps registrations in Xiamen, whatever the host's zone."""
    return datetime.now(CHINA_TIME)


def refusal(cause: str) -> dict[str, Any]:
    """The inner reply of a refused call (flag 0)."""
    return {"flag": "0", "cause": cause, "data": {}}


def _success(data: dict[str, Any]) -> dict[str, Any]:
    return {"flag": "1", "cause": "", "data": data}


def _date_text(value: str, what: str) -> str:
    """``YYYYMMDD`` (``YYYY-MM-DD`` accepted) as ``YYYYMMDD``, which then compares as a date."""
    text = value.strip().replace("-", "")
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise SandboxError(f"{what} must be a date YYYYMMDD, got {value[:40]!r}") from None
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
    resident = ID_SHAPE.match(value) is not None
    if certificate_type == CertificateType.RESIDENT_ID_CARD.value and not resident:
        raise SandboxError("a resident ID number is 17 digits and a check digit")
    if resident and id_check_digit(value[:17]) != value[17]:
        raise SandboxError(f"ID number {mask(value)}: check digit is wrong")
    return value


def _open_private(db: str) -> sqlite3.Connection:
    """Connect to ``db``; a file is created 0600 before SQLite opens it (SQLite then gives its
    ``-wal`` and ``-shm`` files the same mode), in folders created 0700."""
    if db == ":memory:" or db.startswith("file:"):
        return sqlite3.connect(db, check_same_thread=False, isolation_level=None, uri=db.startswith("file:"))
    path = Path(db)
    private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return sqlite3.connect(db, check_same_thread=False, isolation_level=None)


class Centre:
    """The centre's rules on a SQLite database: registrations, the register of insured mothers,
    real names.  No HTTP: :meth:`dispatch` answers one business call's ``data`` with the inner
    reply, and the administrative methods are what a test (or the ``/admin/`` endpoints) call.

    ``db`` is a file path (state survives restarts) or ``":memory:"`` (state lives as long as this
    object).  One connection, reused: calls never wait inside a transaction; the lock only matters
    when a test calls the admin methods from another thread.
    """

    def __init__(
        self, db: str | Path = ":memory:", *, usr: str = SANDBOX_USR, pwd: str = SANDBOX_PWD, charset: str = "gbk"
    ) -> None:
        self.db = str(db)
        #: The centre's database charset: the byte limits and the characters it can hold.
        self.charset = charset
        self.usr = usr
        self._usr = usr.encode("utf-8", "surrogatepass")
        self._pwd = pwd.encode("utf-8", "surrogatepass")
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self.rules: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            Funid.COLLECT.value: self._collect,
            Funid.VOID.value: self._void,
            Funid.REALNAME.value: self._realname,
        }
        self._connection()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} db={self.db!r}>"

    # -- database ----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = _open_private(self.db)
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
            if self.db != ":memory:" and not self.db.startswith("file:"):
                for suffix in ("", "-wal", "-shm"):
                    private_file(Path(self.db + suffix))
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
        today = now().date()
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
        """Close the database (a later call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- admin -------------------------------------------------------------------------------

    def add_mother(
        self, id_number: str, kind: str, permit_start: str | None = None, permit_end: str | None = None
    ) -> None:
        """Put a mother in the register of insured persons (replacing any entry for that ID).

        ``kind`` is one of :data:`MOTHER_KINDS`; ``nonlocal_permit`` needs the residence permit's
        start and end dates (``YYYYMMDD``).
        """
        if kind not in MOTHER_KINDS:
            raise SandboxError(f"unknown mother kind {kind[:40]!r} (expected one of {', '.join(MOTHER_KINDS)})")
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
        self, baz726: str, *, id_number: str, name: str, sex: str | None = None, certificate_type: str = "01"
    ) -> None:
        """Give a registration its real identity, as the centre's daily real-name run does.

        ``sex`` defaults to the newborn's as uploaded (aac004); another is the centre real-naming
        another child under that number (what ybplug sends back to review).

        ``aac999`` (个人管理码) and ``bae014`` (now, China time) are generated.  A void, unknown or
        already real-named registration is refused with :class:`SandboxError`.
        """
        if not CertificateType.has(certificate_type):
            raise SandboxError(f"certificate_type {certificate_type[:10]!r} is not one of {CertificateType.describe()}")
        if sex is not None and not Sex.has(sex):
            raise SandboxError(f"sex {sex[:10]!r} is not one of {Sex.describe()}")
        value = _check_id_number(id_number, certificate_type)
        if not name.strip():
            raise SandboxError("name is required")
        shown = baz726[:20]
        with self._write() as db:
            why_not = self._not_live(db, shown, baz726, real_named_too=True)
            if why_not:
                raise SandboxError(why_not)
            if sex is None:
                uploaded = db.execute("SELECT aac004 FROM registrations WHERE baz726 = ?", (baz726,)).fetchone()
                sex = uploaded[0] if uploaded and Sex.has(uploaded[0] or "") else "1"
            seq = db.execute(_SQL_NEXT, ("aac999",)).fetchone()[0]
            code = f"3502{seq:09d}"
            stamp = now().strftime("%Y%m%d%H%M%S")
            db.execute(_SQL_REAL_NAME, (certificate_type, value, name.strip(), sex, code, stamp, baz726))
        log.info("real-named %s as %s", shown, mask(value))

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

    # -- the rules ---------------------------------------------------------------------------

    def authorised(self, usr: str, pwd: str) -> bool:
        """``usr``/``pwd`` compared in constant time (bytes: ``compare_digest`` takes only ASCII str)."""
        usr_ok = secrets.compare_digest(usr.encode("utf-8", "surrogatepass"), self._usr)
        pwd_ok = secrets.compare_digest(pwd.encode("utf-8", "surrogatepass"), self._pwd)
        return usr_ok and pwd_ok

    def dispatch(self, funid: str, data: Any) -> dict[str, Any]:
        """The inner reply to one business call's ``data`` (already read by the parser): success,
        or a refusal naming the field and the rule.  Any ``data`` at all gets one or the other."""
        rule = self.rules.get(funid)
        if rule is None:
            return refusal(f"unknown funid {funid[:40]!r} (this centre serves {', '.join(self.rules)})")
        if not isinstance(data, dict):
            return refusal("data must be a JSON object holding the transaction's fields")
        try:
            return rule(data)
        except InvalidMessage as exc:
            log.debug("%s refused: invalid message", funid)
            return refusal(str(exc))

    def _collect(self, data: dict[str, Any]) -> dict[str, Any]:
        """yb04.13.01.21: refuse a live duplicate, else register and judge eligibility."""
        birth = load(Birth, data, strict=False, charset=self.charset)
        key = (birth.mother_id_number, birth.multiple_birth_number, birth.birth_time)
        with self._write() as db:
            if db.execute(_SQL_LIVE, key).fetchone() is not None:
                log.debug("%s duplicate for mother %s", Funid.COLLECT.value, mask(birth.mother_id_number))
                return refusal(DUPLICATE_CAUSE)
            eligible, reason = self._eligibility(db, birth.mother_id_number, str(birth.birth_time)[:8])
            moment = now()
            prefix = moment.strftime("XSE%y%m%d")
            seq = db.execute(_SQL_NEXT, (prefix,)).fetchone()[0]
            if seq > 9_999_999:
                return refusal("registration numbers of the day are exhausted")
            baz726 = f"{prefix}{seq:07d}"
            db.execute(_SQL_INSERT, (baz726, *key, birth.medical_serial, birth.his_serial, eligible, reason,
                                     moment.strftime("%Y%m%d%H%M%S"), birth.newborn_sex))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s registered %s for mother %s: bkee45=%s",
                      Funid.COLLECT.value, baz726, mask(birth.mother_id_number), eligible)
        return _success({"baz726": baz726, "bkee45": eligible, "bkee46": reason})

    @staticmethod
    def _not_live(db: sqlite3.Connection, shown: str, baz726: str, *, real_named_too: bool) -> str:
        """Why ``baz726`` cannot be voided (or real-named): unknown, void (or real-named); '' if it can."""
        row = db.execute(_SQL_STATE, (baz726,)).fetchone()
        if row is None:
            return f"no such registration: baz726 {shown}"
        if row[0]:
            return f"already void: baz726 {shown}"
        if real_named_too and row[1]:
            return f"already real-named: baz726 {shown}"
        return ""

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
        request = load(VoidRequest, data, strict=False, charset=self.charset)
        number = request.registration_number
        with self._write() as db:
            why_not = self._not_live(db, number, number, real_named_too=False)
            if why_not:
                return refusal(why_not)
            db.execute(_SQL_VOID, (request.reason, now().strftime("%Y%m%d%H%M%S"), number))
        log.debug("%s voided %s", Funid.VOID.value, number)
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


__all__ = [
    "Centre", "SandboxError", "MOTHER_KINDS", "SEED_MOTHERS", "UNREGISTERED_MOTHER", "SANDBOX_USR",
    "SANDBOX_PWD", "DEFAULT_PORT", "DUPLICATE_CAUSE", "AUTH_CAUSE", "refusal", "now",
]
