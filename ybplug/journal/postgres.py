"""The journal on PostgreSQL: many workers on many machines, one journal the hospital backs up.

The journal's SQL is written once (``?`` placeholders, as sqlite3 takes them); :func:`dialect`
turns a statement into PostgreSQL's, once per statement text.  What PostgreSQL does differently:

* Writers are not serialized by the engine: a claim locks the rows it takes
  (``FOR UPDATE SKIP LOCKED``, so two workers never wait on, nor take, each other's rows), a
  write reading a birth locks its row, and recording a birth takes a transaction-scoped advisory
  lock on its keys, so two servers recording the same newborn at once record it once.
* A worker on another machine cannot be checked by its pid: its claims end with their lease
  (``lease`` seconds; the machines' clocks must agree, as NTP keeps them).
* A write that recorded births or events ends with ``NOTIFY``: every other host ``LISTEN``s and
  wakes its uploader and deliveries (the notification leaves only when the write commits).
* A connection cut (a restarted server, ``pg_terminate_backend``) is reconnected before the next
  transaction.  A cut during ``COMMIT`` leaves its outcome unknown to the driver; the
  transaction's id, read before committing, tells it (``txid_status``), so a committed write is
  never reported failed, nor a lost one acknowledged.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq

from ybplug.config import JOURNAL_PASSWORD_ENV, without_password
from ybplug.journal import pg_identity
from ybplug.journal.model import BirthBusy, JournalError, JournalFull, JournalLost
from ybplug.journal.pg_schema import Found, look, migrate
from ybplug.journal.sql import Backend
from ybplug.privacy import scrub

#: Where a password for the journal's database may come from besides the URL (libpq's own
#: ``PGPASSWORD`` and ``~/.pgpass`` work too).
PASSWORD_ENV = JOURNAL_PASSWORD_ENV
_RETURNING_ID = re.compile(r"^\s*INSERT INTO (births|exchanges|actions|replacements)\b")
_dialect_cache: dict[tuple[str, bool], tuple[str, bool]] = {}


def dialect(sql: str, with_parameters: bool) -> tuple[str, bool]:
    """The journal's SQL as PostgreSQL takes it, and whether it returns the new row's id."""
    key = (sql, with_parameters)
    found = _dialect_cache.get(key)
    if found is None:
        text = sql.replace("%", "%%").replace("?", "%s") if with_parameters else sql
        text = re.sub(r"\s+INDEXED BY \w+", "", text)  # SQLite's planner hint
        text = re.sub(r"instr\((\w+), %s\) > 0", r"position(%s in \1) > 0", text)
        if "INSERT OR IGNORE INTO" in text:
            text = text.replace("INSERT OR IGNORE INTO", "INSERT INTO") + " ON CONFLICT DO NOTHING"
        returning = bool(_RETURNING_ID.match(text)) and "RETURNING" not in text
        found = _dialect_cache[key] = (text + " RETURNING id" if returning else text, returning)
    return found


class PgCursor:
    """A psycopg cursor as the journal uses one (sqlite3's names)."""

    def __init__(self, cursor: psycopg.Cursor[Any], returning: bool) -> None:
        self._cursor = cursor
        self._returning = returning

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        if not self._returning:
            return None
        row = self._cursor.fetchone()
        return None if row is None else int(row[0])


class PgConnection:
    """A psycopg connection that runs the journal's SQL; the driver's errors as JournalErrors."""

    def __init__(
        self, raw: psycopg.Connection[Any], name: str, translator: Callable[[BaseException], BaseException] | None = None
    ) -> None:
        self.raw = raw
        self.name = name
        #: How the driver's errors become the journal's (the backend's, which can ask the server
        #: whether missing tables are gone or out of the role's reach).
        self.translate: Callable[[BaseException], BaseException] = translator or (lambda exc: translate(exc, name))

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> PgCursor:
        text, returning = dialect(sql, bool(parameters))
        try:
            cursor = self.raw.cursor()
            cursor.execute(text, tuple(parameters) if parameters else None)
        except psycopg.Error as exc:
            raise self.translate(exc) from None
        return PgCursor(cursor, returning)

    def executemany(self, sql: str, parameters: Any, /) -> PgCursor:
        rows = [tuple(p) for p in parameters]
        text, _ = dialect(sql, True)
        cursor = self.raw.cursor()
        if rows:
            try:
                cursor.executemany(text, rows)
            except psycopg.Error as exc:
                raise self.translate(exc) from None
        return PgCursor(cursor, False)


def translate(exc: BaseException, name: str) -> BaseException:
    """psycopg's error as the journal's.  Missing tables are a :class:`JournalLost` here; the
    backend's :meth:`PostgresBackend.translate` first asks the server whether they are only out of
    the role's reach (its rights on the schema revoked), which is not a lost journal."""
    if not isinstance(exc, psycopg.Error):
        return exc
    # The server's DETAIL quotes the values at fault (``Key (mother_id)=(3502...)``): scrubbed.
    said = scrub(str(exc).strip()) or type(exc).__name__
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return JournalError(
            f"journal {name}: permission denied ({said.splitlines()[0]}): check the grants of the journal's role "
            "on its schema and tables"
        )
    if isinstance(exc, psycopg.errors.DiskFull):
        return JournalFull(
            f"journal {name}: the database server's disk is full ({said}); the write was not made and nothing "
            "acknowledged before was lost: free space, then try again"
        )
    if isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
        return JournalLost(
            f"journal {name}: its tables are gone ({said.splitlines()[0]}) while ybplug was running: "
            "ybplug stops rather than acknowledge births into a journal that is gone; restore it from a backup"
        )
    return JournalError(f"journal {name}: {said}")


def _secrets(url: str) -> list[str]:
    """The passwords a message about connecting to ``url`` might quote: the URL's and the environment's."""
    found = re.findall(r"://[^:/@]*:([^@/]*)@", url) + re.findall(r"password=([^&\s]*)", url)
    found.append(os.environ.get(PASSWORD_ENV, ""))
    return [secret for secret in found if secret]


def unquoted(message: str, url: str) -> str:
    """``message`` with every password of ``url`` masked: libpq quotes the part of a URL it cannot
    parse (``invalid percent-encoded token: "p%zz..."``), which may be the password itself."""
    for secret in _secrets(url):
        message = message.replace(secret, "***")
    return message


def no_rights(name: str, schema: str, role: str, instead: str | None = None) -> JournalError:
    """The journal's schema is there, but its role may not use it (a DBA revoked the grants)."""
    fallen = f"; its search_path leads to schema {instead} instead" if instead else ""
    return JournalError(
        f"journal {name}: permission denied on its schema {schema} (role {role} has no USAGE on it{fallen}): "
        f"check the role's grants (GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}); the journal is not lost, "
        "do not restore it"
    )


def _schema_rights(raw: psycopg.Connection[Any], schema: str) -> tuple[bool, bool]:
    """Whether ``schema`` exists, and whether this role may use it (read in the catalog, which
    needs no rights on the schema)."""
    found = raw.execute(
        "SELECT n.oid IS NOT NULL, coalesce(has_schema_privilege(n.oid, 'USAGE'), false)"
        " FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = %s",
        (schema,),
    ).fetchone()
    return (bool(found[0]), bool(found[1])) if found else (False, False)


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection in autocommit (the journal says BEGIN and COMMIT itself)."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    extra: dict[str, Any] = {"application_name": given.get("application_name") or "ybplug"}
    extra["connect_timeout"] = given.get("connect_timeout") or 10
    password = os.environ.get(PASSWORD_ENV)
    if password and "password" not in given:
        extra["password"] = password
    return psycopg.connect(url, autocommit=True, **extra)


class PostgresBackend(Backend):
    """The journal in a PostgreSQL database (the schema its ``search_path`` names)."""

    skip_locked = " FOR UPDATE SKIP LOCKED"
    skip_locked_deliveries = " FOR UPDATE OF d SKIP LOCKED"
    for_update = " FOR UPDATE"
    watch_interval = 0.1

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.url = target
        self._name = without_password(target)
        self._conn: PgConnection | None = None
        self._in_transaction = False
        self._announce = False
        self._changed = False
        self._retry_safe = False
        self._xid = 0
        self.journal_id = ""
        #: The schema holding the journal's tables (the outbox finds them there).
        self.schema = ""

    @property
    def name(self) -> str:
        return self._name

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this journal (its id: two journals in one database never mix)."""
        return f"ybplug_{self.journal_id}"

    def open(self, *, new: bool) -> tuple[PgConnection, str]:
        """Connect and bring the tables up to date, once the journal found is the one this machine
        last opened here (:mod:`ybplug.journal.pg_identity`): a journal that is gone, emptied,
        replaced or out of the role's reach is never silently replaced by a new one."""
        try:
            raw = connect(self.url)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            reason = unquoted(reason, self.url)
            raise JournalError(
                f"journal {self._name}: cannot connect ({reason}); check `journal` in ybplug.toml and "
                f"the password ({PASSWORD_ENV} or PGPASSWORD)"
            ) from None
        try:
            place = pg_identity.location(self.url, raw.info)
            known = None if new else pg_identity.read(place)
            found = look(raw)
            if known is not None:
                self._expect(raw, found, known)
            elif found.schema is None:
                self._no_schema(raw)
            self.journal_id, self.schema = migrate(raw, found, name=self._name)
            if known != pg_identity.Known(self.journal_id, self.schema):
                pg_identity.remember(place, self.journal_id, self.schema)
        except psycopg.Error as exc:
            raw.close()
            said = unquoted(scrub(str(exc).strip()).splitlines()[0] if str(exc).strip() else type(exc).__name__, self.url)
            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                raise translate(exc, self._name) from None
            raise JournalError(f"journal {self._name}: cannot set up its tables ({said})") from None
        except BaseException:
            raw.close()
            raise
        return self._attach(raw), self.journal_id

    def _expect(self, raw: psycopg.Connection[Any], found: Found, known: pg_identity.Known) -> None:
        """Refuse a journal that is not the one this machine last found at this place."""
        if found.schema != known.schema:
            exists, usable = _schema_rights(raw, known.schema)
            if exists and not usable:
                raise no_rights(self._name, known.schema, str(raw.info.user), found.schema)
            now = f"its search_path now leads to schema {found.schema}" if found.schema else "its search_path names no schema"
            gone = "is gone" if not exists else "is no longer the one it uses"
            raise JournalLost(
                f"journal {self._name}: schema {known.schema}, where this machine last found journal "
                f"{known.journal_id}, {gone} ({now}); ybplug will not start a new journal in its place: "
                + pg_identity.remedy(known)
            )
        if not found.tables or found.journal_id is None:
            raise JournalLost(
                f"journal {self._name}: schema {known.schema} holds no journal, but this machine last found journal "
                f"{known.journal_id} there (its tables were dropped, or the schema restored empty); ybplug will not "
                "start a new journal in its place: " + pg_identity.remedy(known)
            )
        if found.journal_id != known.journal_id:
            raise JournalLost(
                f"journal {self._name}: schema {known.schema} holds journal {found.journal_id}, not journal "
                f"{known.journal_id} that this machine last found there (it was replaced): " + pg_identity.remedy(known)
            )

    def _no_schema(self, raw: psycopg.Connection[Any]) -> None:
        """No schema of the search_path can hold the journal: say so when one exists but the role
        lost its rights on it (the schema would otherwise seem never created)."""
        path = raw.execute("SELECT current_setting('search_path'), current_user").fetchone() or ("", "")
        names = [name.strip().strip('"').replace("$user", str(path[1])) for name in str(path[0]).split(",")]
        for (schema,) in raw.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY (%s) AND NOT has_schema_privilege(oid, 'USAGE')"
            " ORDER BY array_position(%s, nspname::text)",
            (names, names),
        ).fetchall():
            raise no_rights(self._name, str(schema), str(raw.info.user))

    def _attach(self, raw: psycopg.Connection[Any]) -> PgConnection:
        raw.add_notify_handler(self._heard)
        raw.execute(f'LISTEN "{self.channel}"')
        self._conn = PgConnection(raw, self._name, self.translate)
        return self._conn

    def _heard(self, notify: psycopg.Notify) -> None:
        if self._conn is None or notify.pid != self._conn.raw.info.backend_pid:
            self._changed = True

    def _alive(self) -> PgConnection:
        """The connection, reconnected if it was lost between transactions."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("journal is not open")
        if conn.raw.closed or conn.raw.broken:
            if self._in_transaction:
                raise JournalError(f"journal {self._name}: the connection was lost in the middle of a write")
            try:
                conn = self._attach(connect(self.url))
            except psycopg.Error as exc:
                raise JournalError(unquoted(str(self.translate(exc)), self.url)) from None
            self._changed = True  # what was announced while it was down was not heard
        return conn

    def connection(self) -> PgConnection:
        return self._alive()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.raw.close()
            self._conn = None

    def begin(self) -> None:
        """BEGIN, and the transaction's id (what tells a COMMIT cut off from its answer), in one round trip."""
        self._announce = False
        self._retry_safe = False
        for attempt in (1, 2):
            try:
                conn = self._alive()
                cursor = conn.raw.execute("BEGIN; SELECT txid_current()")
                cursor.nextset()
                found = cursor.fetchone()
                assert found is not None
                self._xid = int(found[0])
            except psycopg.OperationalError as exc:  # the server went away since the last write
                conn.raw.close()
                if attempt == 2:
                    self._retry_safe = True  # nothing written
                    raise translate(exc, self._name) from None
                continue
            except JournalError:  # cannot reconnect (yet)
                self._retry_safe = True
                raise
            except psycopg.Error as exc:
                self.rollback()
                raise self.translate(exc) from None
            self._in_transaction = True
            return

    def commit(self) -> None:
        """NOTIFY (if births or events were written) and COMMIT, in one round trip."""
        conn = self._alive()
        try:
            conn.raw.execute(f'NOTIFY "{self.channel}"; COMMIT' if self._announce else "COMMIT")
        except psycopg.OperationalError as exc:
            self._in_transaction = False
            if not self._committed(self._xid, exc):
                self._retry_safe = True  # known not made
                raise translate(exc, self._name) from None
        except BaseException as exc:
            self.rollback()
            raise self.translate(exc) from None
        finally:
            self._in_transaction = False
            self._announce = False

    def _committed(self, xid: int, cause: psycopg.Error) -> bool:
        """After a cut during COMMIT: whether transaction ``xid`` committed (asked on a new connection)."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                conn = self._alive()
                found = conn.raw.execute("SELECT txid_status(%s)", (xid,)).fetchone()
            except (psycopg.Error, JournalError):
                if time.monotonic() > deadline:
                    raise JournalError(
                        f"journal {self._name}: the connection was lost while a write committed, and the server "
                        f"cannot be reached to say whether it did ({cause})"
                    ) from None
                time.sleep(0.2)
                continue
            status = None if found is None else found[0]
            if status != "in progress":
                return status == "committed"
            if time.monotonic() > deadline:
                raise JournalError(f"journal {self._name}: a write's COMMIT was cut and is still in progress ({cause})")
            time.sleep(0.02)

    def rollback(self) -> None:
        self._in_transaction = False
        self._announce = False
        conn = self._conn
        if conn is None or conn.raw.closed or conn.raw.broken:
            self._retry_safe = True  # the server rolled it back with the connection
            return
        if conn.raw.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                conn.raw.execute("ROLLBACK")
            except psycopg.Error:
                conn.raw.close()  # reconnected before the next write

    def translate(self, exc: BaseException) -> BaseException:
        """As :func:`translate`, but tables that went missing are looked at first, on a connection
        of their own (this one may be in a failed transaction): a role that lost its rights on the
        schema finds its tables "missing" too, and that is a permission to restore, not a journal
        to restore from a backup (nor a reason to stop)."""
        if isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)) and self.schema:
            try:
                with connect(self.url) as raw:
                    exists, usable = _schema_rights(raw, self.schema)
                    role = str(raw.info.user)
            except psycopg.Error:
                return translate(exc, self._name)  # cannot tell: as it looks, the tables are gone
            if exists and not usable:
                return no_rights(self._name, self.schema, role)
        return translate(exc, self._name)

    def lost(self) -> bool:
        """A write that failed on a lost connection was rolled back with it, or its COMMIT's
        outcome was asked and found not committed; one whose outcome stayed unknown is not."""
        safe, self._retry_safe = self._retry_safe, False
        return safe

    def changed_elsewhere(self) -> bool:
        try:
            raw = self._alive().raw
            raw.pgconn.consume_input()
            while (notify := raw.pgconn.notifies()) is not None:
                if notify.be_pid != raw.info.backend_pid:
                    self._changed = True
        except Exception:
            self._changed = True  # a lost connection: reconnected next time, and everything looked at
        changed, self._changed = self._changed, False
        return changed

    def announce(self, db: Any) -> None:
        self._announce = True

    def lock_birth(self, db: Any, keys: tuple[str, ...]) -> None:
        """Take the birth's locks, or raise :class:`BirthBusy` at once: never wait.  This
        connection writes for every caller of the host in turn (group commit), so waiting here
        on a birth that an open HIS transaction holds would stall every ward's births behind it;
        the host tries this one again on its own (:meth:`ybplug.host.Host.record_birth`)."""
        tries = " AND ".join(["pg_try_advisory_xact_lock(hashtextextended(?, 0))"] * len(keys))
        row = db.execute(f"SELECT {tries}", tuple(sorted(keys))).fetchone()
        if not (row and row[0]):
            raise BirthBusy()

    def wait_for_birth(self, db: Any, keys: tuple[str, ...]) -> None:
        """Take the birth's locks, waiting for them: in the HIS's transaction (the outbox), where
        the holder is a worker's short write.  One statement, in a fixed order (two writers never
        wait on each other crosswise)."""
        locks = ", ".join(["pg_advisory_xact_lock(hashtextextended(?, 0))"] * len(keys))
        db.execute(f"SELECT {locks}", tuple(sorted(keys))).fetchone()


class OutboxBackend(Backend):
    """The journal's writes on the HIS's own connection, inside the HIS's open transaction (the
    outbox, :mod:`ybplug.outbox`): no BEGIN or COMMIT of ours, the HIS commits or rolls back; the
    workers are told only by a NOTIFY, which PostgreSQL sends when (and if) the HIS commits."""

    for_update = " FOR UPDATE"

    def __init__(self, conn: Any, journal: PostgresBackend) -> None:
        super().__init__(journal.name)
        self._conn = conn
        self._journal = journal
        self._announced = False

    def connection(self) -> Any:
        return self._conn

    def translate(self, exc: BaseException) -> BaseException:
        return translate(exc, self._journal.name)

    def announce(self, db: Any) -> None:
        if not self._announced:
            db.execute("SELECT pg_notify(?, '')", (self._journal.channel,)).fetchone()
            self._announced = True

    def lock_birth(self, db: Any, keys: tuple[str, ...]) -> None:
        self._journal.wait_for_birth(db, keys)
