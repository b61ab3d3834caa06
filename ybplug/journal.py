"""The journal: SQLite on disk (WAL), the single source of truth of what happened.

Every birth with its state, every exchange with the centre (request, reply, timing) and every
hook delivery per plugin.  The guarantees the host builds on:

* A birth is durable before ``record_birth`` returns; its idempotency key (mother's ID, birth
  time, multiple-birth number) makes recording it again return the existing row.
* Before a request leaves, an exchange row is committed.  An exchange without an answer (the
  process died, the reply was lost) means the centre *may* have applied it: a later "duplicate"
  answer then sends the birth to ``needs_review``, never to failure or silent success.
* A state change and the events it causes commit together, so a reply is never recorded without
  its hook deliveries, nor the other way round.
* Claims carry a lease: two workers never upload the same birth at once; a worker that died
  (SIGKILL) is detected by its pid on this machine, or its lease runs out.

All methods are synchronous and must be called from one thread at a time; the host runs them
on a worker thread under a limiter of one so the event loop never waits on ``fsync``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from ybplug import events
from ybplug.codes import Funid
from ybplug.errors import Error, Outcome
from ybplug.fields import trusted
from ybplug.system import process_alive
from ybplug.messages import Birth, CollectionResult, RealNameRecord


class JournalError(Error):
    """The journal cannot be used where the configuration puts it."""


class BirthState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    REGISTERED = "registered"
    REFUSED = "refused"
    NEEDS_REVIEW = "needs_review"
    VOIDED = "voided"
    REAL_NAMED = "real_named"


SCHEMA = """
CREATE TABLE IF NOT EXISTS births (
    id INTEGER PRIMARY KEY,
    mother_id TEXT NOT NULL,
    birth_time INTEGER NOT NULL,
    multiple_birth_number INTEGER NOT NULL,
    record BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    registration_number TEXT,
    eligibility TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (mother_id, birth_time, multiple_birth_number)
);
CREATE INDEX IF NOT EXISTS births_state ON births (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS births_registration ON births (registration_number);
CREATE INDEX IF NOT EXISTS births_sweep ON births (state, id);
-- The births waiting for upload in id order, so a claim reads its batch instead of sorting the
-- whole backlog (a week of births after an outage).
CREATE INDEX IF NOT EXISTS births_waiting ON births (id) WHERE state IN ('pending', 'uploading');
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY,
    funid TEXT NOT NULL,
    birth_id INTEGER,
    request BLOB,
    reply BLOB,
    outcome TEXT NOT NULL DEFAULT 'sent',
    error TEXT,
    started_at REAL NOT NULL,
    elapsed REAL
);
CREATE INDEX IF NOT EXISTS exchanges_birth ON exchanges (birth_id, funid);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    hook TEXT NOT NULL,
    birth_id INTEGER,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_birth ON events (birth_id);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL REFERENCES events (id),
    plugin TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until REAL,
    last_error TEXT,
    delivered_at REAL,
    PRIMARY KEY (event_id, plugin)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_claimed ON deliveries (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS births_claimed ON births (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE TABLE IF NOT EXISTS runs (
    job TEXT PRIMARY KEY,
    started_at REAL,
    finished_at REAL,
    summary TEXT
);
"""

_encode = msgspec.json.Encoder().encode
_decode_birth = msgspec.json.Decoder(Birth).decode


@dataclass(frozen=True)
class BirthRow:
    """A birth as the journal holds it."""

    id: int
    birth: Birth
    state: BirthState
    registration_number: str | None
    reason: str | None
    attempts: int
    in_doubt: bool = False
    #: The exchange committed with the claim ("about to leave"), for the upload to use.
    exchange_id: int | None = None


@dataclass(frozen=True)
class Delivery:
    """One event due to one plugin."""

    event_id: str
    plugin: str
    hook: str
    event: events.Event
    attempts: int


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: ``base * 2**(attempt-1)``, at most ``cap`` seconds."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))


def default_owner() -> str:
    """``host:pid:tag``: the pid lets a restarted worker see that a claim's owner on this machine
    is dead; the tag keeps two hosts in one process (a HIS reloading its config) apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Journal:
    """The durable store.  ``subscribers(hook)`` names the plugins an event must reach."""

    def __init__(
        self,
        path: str | Path,
        *,
        subscribers: Callable[[str], list[str]] = lambda hook: [],
        owner: str | None = None,
        lease: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.subscribers = subscribers
        self.owner = owner or default_owner()
        self.lease = lease
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._in_group = False
        self._checked_claims: dict[str, float] = {}

    # --- connection ---------------------------------------------------------------------------

    def open(self) -> Journal:
        """Open (or create) the journal; a path that cannot hold one is a :class:`JournalError`."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when record_birth returns, even if the machine loses power.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise JournalError(f"journal {self.path}: cannot open it ({reason}); check `journal` in ybplug.toml") from None
        self._db = db
        return self

    def close(self) -> None:
        """Give back this journal's claims (a host in the same process may start next), then close."""
        if self._db is not None:
            with self._write() as db:
                for table in ("births", "deliveries"):
                    db.execute(f"UPDATE {table} SET lease_until = 0 WHERE claimed_by = ?", (self.owner,))
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; IMMEDIATE so claims by two processes cannot interleave.

        Inside :meth:`run_group` it is part of the group's transaction instead.
        """
        db = self.db
        if self._in_group:
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def run_group(self, operations: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """Run several operations in one transaction: one fsync makes them all durable.

        This is group commit: while one commit is on its way to disk, the host queues what
        other tasks want to write, then writes all of it at once.  Each operation gets its own
        outcome, ``(True, value)`` or ``(False, error)``.  If one fails, the group is rolled back
        and each operation runs again in a transaction of its own, so one caller's error never
        takes another's write with it (operations touch only the database, so a rerun is safe).
        """
        db = self.db
        results: list[tuple[bool, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        self._in_group = True
        try:
            for operation in operations:
                results.append((True, operation()))
        except Exception:
            self._in_group = False
            db.execute("ROLLBACK")
            return [self._alone(operation) for operation in operations]
        finally:
            self._in_group = False
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.execute("ROLLBACK")
            return [(False, exc)] * len(operations)
        return results

    def _alone(self, operation: Callable[[], Any]) -> tuple[bool, Any]:
        """One operation in a transaction of its own (the slow path of :meth:`run_group`)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        self._in_group = True
        try:
            value = operation()
        except Exception as exc:
            self._in_group = False
            db.execute("ROLLBACK")
            return (False, exc)
        finally:
            self._in_group = False
        db.execute("COMMIT")
        return (True, value)

    # --- events ---------------------------------------------------------------------------------

    def _emit(
        self, db: sqlite3.Connection, event: events.Event, birth_id: int | None, claimed: list[Delivery] | None = None
    ) -> str:
        """Store ``event`` and a pending delivery per subscribed plugin, inside the caller's write.

        With ``claimed``, deliveries this process can make right away (no earlier delivery of
        the same birth to the same plugin still pending) are claimed in the same write and
        appended there, so the caller delivers them without another round trip to the journal.
        """
        event_id = uuid.uuid4().hex
        hook = events.hook_of(event)
        plugins = self.subscribers(hook)
        if not plugins:  # nobody to deliver to: the state change itself is the record
            return event_id
        now = self.clock()
        db.execute(
            "INSERT INTO events (id, hook, birth_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            (event_id, hook, birth_id, events.encode(event), now),
        )
        for plugin in plugins:
            owner, lease = None, None
            if claimed is not None and (birth_id is None or not self._earlier_pending(db, birth_id, plugin)):
                owner, lease = self.owner, now + self.lease
                claimed.append(Delivery(event_id, plugin, hook, event, 0))
            db.execute(
                "INSERT INTO deliveries (event_id, plugin, next_attempt_at, claimed_by, lease_until) VALUES (?, ?, ?, ?, ?)",
                (event_id, plugin, now, owner, lease),
            )
        return event_id

    @staticmethod
    def _earlier_pending(db: sqlite3.Connection, birth_id: int, plugin: str) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM events e JOIN deliveries d ON d.event_id = e.id"
                " WHERE e.birth_id = ? AND d.plugin = ? AND d.state = 'pending' LIMIT 1",
                (birth_id, plugin),
            ).fetchone()
            is not None
        )

    # --- births -----------------------------------------------------------------------------------

    def record_births(self, births: Iterable[Birth]) -> list[tuple[BirthRow, bool]]:
        """Make each birth durable (one commit for all); ``True`` where it is new."""
        out: list[tuple[BirthRow, bool]] = []
        now = self.clock()
        with self._write() as db:
            for birth in births:
                cursor = db.execute(
                    "INSERT INTO births (mother_id, birth_time, multiple_birth_number, record, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (*birth.key, _encode(birth), now, now),
                )
                if cursor.rowcount:
                    birth_id = int(cursor.lastrowid or 0)
                    self._emit(db, events.BirthRecorded(birth=birth, birth_id=birth_id), birth_id)
                    out.append((BirthRow(birth_id, birth, BirthState.PENDING, None, None, 0), True))
                else:
                    existing = self._birth_where(db, "mother_id = ? AND birth_time = ? AND multiple_birth_number = ?", birth.key)
                    out.append((existing, False))
        return out

    def _birth_where(self, db: sqlite3.Connection, where: str, args: Iterable[Any]) -> BirthRow:
        row = db.execute(
            f"SELECT id, record, state, registration_number, reason, attempts FROM births WHERE {where}", tuple(args)
        ).fetchone()
        if row is None:
            raise LookupError(where)
        return self._row(row)

    def _row(self, row: tuple[Any, ...], in_doubt: bool = False) -> BirthRow:
        with trusted():  # validated before it was recorded
            birth = _decode_birth(row[1])
        return BirthRow(row[0], birth, BirthState(row[2]), row[3], row[4], row[5], in_doubt)

    def birth(self, birth_id: int) -> BirthRow:
        return self._birth_where(self.db, "id = ?", (birth_id,))

    def _release_dead_claims(self, db: sqlite3.Connection, table: str, now: float) -> None:
        """Expire leases held by processes on this machine that no longer exist (killed workers).

        Checked at most once a second per table: claims are frequent, dead workers are not.
        """
        if now - self._checked_claims.get(table, 0.0) < 1.0:
            return
        self._checked_claims[table] = now
        host = socket.gethostname()
        owners = db.execute(
            f"SELECT DISTINCT claimed_by FROM {table} WHERE claimed_by IS NOT NULL AND claimed_by != ? AND lease_until >= ?",
            (self.owner, now),
        ).fetchall()
        for (owner,) in owners:
            owner_host, pid = (str(owner).split(":") + ["", ""])[:2]
            if owner_host == host and pid.isdigit() and not process_alive(int(pid)):
                db.execute(f"UPDATE {table} SET lease_until = 0 WHERE claimed_by = ?", (owner,))

    def claim_births(self, limit: int, *, recorded_before: float | None = None) -> list[BirthRow]:
        """Claim up to ``limit`` births due for upload, with a lease; ``in_doubt`` if sent before.

        The same commit marks each one's upload as about to leave (an exchange row), saving a
        commit per birth: a worker that dies before sending leaves that mark, and the retry then
        treats a "duplicate" answer with the caution an unknown outcome calls for.

        With ``recorded_before``, new births recorded after that time are left for the next
        scheduled run; births already attempted are retried whenever their backoff allows.
        """
        now = self.clock()
        cutoff = now + 1.0 if recorded_before is None else recorded_before
        with self._write() as db:
            self._release_dead_claims(db, "births", now)
            rows = db.execute(
                "SELECT id, record, state, registration_number, reason, attempts FROM births INDEXED BY births_waiting"
                " WHERE state IN ('pending', 'uploading') AND next_attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until < ?) AND (attempts > 0 OR created_at < ?) ORDER BY id LIMIT ?",
                (now, now, cutoff, limit),
            ).fetchall()
            if not rows:
                return []
            ids = [r[0] for r in rows]
            marks = ",".join("?" * len(ids))
            db.execute(
                f"UPDATE births SET state = 'uploading', claimed_by = ?, lease_until = ?, updated_at = ? WHERE id IN ({marks})",
                (self.owner, now + self.lease, now, *ids),
            )
            doubtful = {
                r[0]
                for r in db.execute(
                    f"SELECT DISTINCT birth_id FROM exchanges WHERE funid = ?"
                    f" AND outcome IN ('sent', 'unknown') AND birth_id IN ({marks})",
                    (Funid.COLLECT, *ids),
                )
            }
            exchanges = [
                int(db.execute(
                    "INSERT INTO exchanges (funid, birth_id, started_at) VALUES (?, ?, ?)", (Funid.COLLECT, birth_id, now)
                ).lastrowid or 0)
                for birth_id in ids
            ]
        return [
            dataclasses.replace(self._row(r, r[0] in doubtful), exchange_id=exchange_id)
            for r, exchange_id in zip(rows, exchanges, strict=True)
        ]

    def begin_exchange(self, funid: str, request: bytes | None, birth_id: int | None = None) -> int:
        """Commit that a request is about to leave: from here on its outcome may be unknown."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO exchanges (funid, birth_id, request, started_at) VALUES (?, ?, ?, ?)",
                (funid, birth_id, request, self.clock()),
            )
            return int(cursor.lastrowid or 0)

    def record_exchange(
        self, funid: str, request: bytes | None, outcome: Outcome, error: str | None, started_at: float, elapsed: float
    ) -> int:
        """Record a finished exchange in one write (read-only calls such as EcTrans, which need
        no "about to leave" mark because repeating them changes nothing)."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO exchanges (funid, request, outcome, error, started_at, elapsed) VALUES (?, ?, ?, ?, ?, ?)",
                (funid, request, outcome, error, started_at, elapsed),
            )
            return int(cursor.lastrowid or 0)

    def _finish_exchange(
        self, db: sqlite3.Connection, exchange_id: int, outcome: Outcome, reply: bytes | None, error: str | None
    ) -> None:
        db.execute(
            "UPDATE exchanges SET outcome = ?, reply = ?, error = ?, elapsed = ? - started_at WHERE id = ?",
            (outcome, reply, error, self.clock(), exchange_id),
        )

    def finish_exchange(self, exchange_id: int, outcome: Outcome, reply: bytes | None = None, error: str | None = None) -> None:
        with self._write() as db:
            self._finish_exchange(db, exchange_id, outcome, reply, error)

    def upload_answered(
        self, row: BirthRow, exchange_id: int, result: CollectionResult, *, duplicate: bool
    ) -> tuple[BirthState, list[Delivery]]:
        """Record the centre's answer to yb04.13.01.21 and its event, in one commit; returns the
        new state and the event's deliveries claimed for this process to make now."""
        now = self.clock()
        reply = _encode(result)
        with self._write() as db:
            outcome = Outcome.OK if result.ok else Outcome.REFUSED
            self._finish_exchange(db, exchange_id, outcome, reply, None if result.ok else result.cause)
            if result.ok:
                state = BirthState.REGISTERED
                number: str | None = str(result.registration_number)
                reason = result.ineligibility_reason
                event: events.Event = events.CollectionAnswered(birth=row.birth, result=result, birth_id=row.id)
            elif duplicate:
                state = BirthState.NEEDS_REVIEW
                number = None
                earlier = "an earlier upload whose answer was lost probably registered it" if row.in_doubt else (
                    "it was probably registered outside this HIS (e.g. by hand in 定点机构管理系统)"
                )
                reason = f"the centre says duplicate ({result.cause}); {earlier}; look up its baz726 at the centre"
                event = events.NeedsReview(birth=row.birth, reason=reason, birth_id=row.id)
            else:
                state = BirthState.REFUSED
                number = None
                reason = result.cause
                event = events.CollectionAnswered(birth=row.birth, result=result, birth_id=row.id)
            db.execute(
                "UPDATE births SET state = ?, registration_number = ?, eligibility = ?, reason = ?,"
                " attempts = attempts + 1, claimed_by = NULL, lease_until = NULL, last_error = NULL, updated_at = ?"
                " WHERE id = ?",
                (state, number, getattr(result, "eligibility", None), reason, now, row.id),
            )
            claimed: list[Delivery] = []
            self._emit(db, event, row.id, claimed)
        return state, claimed

    def upload_failed(self, row: BirthRow, error: str, backoff: Backoff) -> None:
        """No answer: release the birth for a later attempt after the backoff."""
        now = self.clock()
        attempts = row.attempts + 1
        with self._write() as db:
            db.execute(
                "UPDATE births SET state = 'pending', attempts = ?, next_attempt_at = ?, claimed_by = NULL,"
                " lease_until = NULL, last_error = ?, updated_at = ? WHERE id = ?",
                (attempts, now + backoff.delay(attempts), error, now, row.id),
            )

    def awaiting_realname(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        """``(birth id, baz726)`` of registered, not yet real-named newborns after ``after_id``.

        Only the numbers: a sweep asks about thousands, and decoding each record would cost more
        than the query (the few that turn out real-named are loaded when recorded).
        """
        rows = self.db.execute(
            "SELECT id, registration_number FROM births WHERE state = 'registered' AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def realname_answered(self, exchange_id: int, reply: bytes, updates: list[tuple[int, RealNameRecord]]) -> None:
        """Record a yb04.13.01.24 answer: newly real-named and centre-voided newborns, one commit."""
        now = self.clock()
        with self._write() as db:
            self._finish_exchange(db, exchange_id, Outcome.OK, reply, None)
            for birth_id, record in updates:
                if record.voided:
                    db.execute(
                        "UPDATE births SET state = 'voided', reason = ?, updated_at = ? WHERE id = ? AND state = 'registered'",
                        ("voided at the centre", now, birth_id),
                    )
                    event: events.Event = events.Voided(
                        registration_number=str(record.registration_number), reason="voided at the centre", birth_id=birth_id
                    )
                else:
                    db.execute(
                        "UPDATE births SET state = 'real_named', updated_at = ? WHERE id = ? AND state = 'registered'",
                        (now, birth_id),
                    )
                    birth = self._birth_where(db, "id = ?", (birth_id,)).birth
                    event = events.RealNamed(birth=birth, record=record, birth_id=birth_id)
                self._emit(db, event, birth_id)

    def voided(self, exchange_id: int, reply: bytes, registration_number: str, reason: str) -> int | None:
        """Record a successful yb04.13.01.22 and its event; returns the birth id if it is ours."""
        now = self.clock()
        with self._write() as db:
            self._finish_exchange(db, exchange_id, Outcome.OK, reply, None)
            found = db.execute("SELECT id FROM births WHERE registration_number = ?", (registration_number,)).fetchone()
            birth_id = int(found[0]) if found else None
            if birth_id is not None:
                db.execute(
                    "UPDATE births SET state = 'voided', reason = ?, updated_at = ? WHERE id = ?", (reason, now, birth_id)
                )
            self._emit(db, events.Voided(registration_number=registration_number, reason=reason, birth_id=birth_id), birth_id)
        return birth_id

    # --- deliveries ---------------------------------------------------------------------------

    def claim_deliveries(self, limit: int, plugins: Iterable[str]) -> list[Delivery]:
        """Claim due deliveries to the plugins loaded in this process, oldest first.

        A plugin gets the events of one birth in the order they happened: a delivery waits
        while an earlier one of the same birth to the same plugin is still pending (a parked
        one does not hold the rest back).
        """
        names = list(plugins)
        if not names:
            return []
        now = self.clock()
        marks = ",".join("?" * len(names))
        with self._write() as db:
            self._release_dead_claims(db, "deliveries", now)
            rows = db.execute(
                "SELECT d.event_id, d.plugin, e.hook, e.payload, d.attempts FROM deliveries d JOIN events e ON e.id = d.event_id"
                f" WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR d.lease_until < ?)"
                f" AND d.plugin IN ({marks})"
                " AND NOT EXISTS (SELECT 1 FROM events e2 JOIN deliveries d2 ON d2.event_id = e2.id"
                "   WHERE e2.birth_id = e.birth_id AND e2.rowid < e.rowid AND d2.plugin = d.plugin AND d2.state = 'pending')"
                " ORDER BY d.next_attempt_at, d.rowid LIMIT ?",  # the order of deliveries_due: no sort
                (now, now, *names, limit),
            ).fetchall()
            db.executemany(
                "UPDATE deliveries SET claimed_by = ?, lease_until = ? WHERE event_id = ? AND plugin = ?",
                [(self.owner, now + self.lease, r[0], r[1]) for r in rows],
            )
        return [Delivery(r[0], r[1], r[2], events.decode(r[3]), r[4]) for r in rows]

    def deliveries_done(self, results: list[tuple[Delivery, str | None]], *, max_attempts: int, backoff: Backoff) -> int:
        """Record delivery attempts (error None = delivered); returns how many were parked."""
        now = self.clock()
        parked = 0
        with self._write() as db:
            for delivery, error in results:
                attempts = delivery.attempts + 1
                if error is None:
                    state, due = "delivered", now
                elif attempts >= max_attempts:
                    state, due = "parked", now
                    parked += 1
                else:
                    state, due = "pending", now + backoff.delay(attempts)
                db.execute(
                    "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
                    " claimed_by = NULL, lease_until = NULL, delivered_at = CASE WHEN ? = 'delivered' THEN ? END"
                    " WHERE event_id = ? AND plugin = ?",
                    (state, attempts, due, error, state, now, delivery.event_id, delivery.plugin),
                )
        return parked

    def replay(self, event_id: str | None = None, plugin: str | None = None) -> int:
        """Put parked deliveries back in the queue, with their attempts reset; returns how many."""
        now = self.clock()
        where, args = "state = 'parked'", []
        if event_id:
            where += " AND event_id = ?"
            args.append(event_id)
        if plugin:
            where += " AND plugin = ?"
            args.append(plugin)
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ? WHERE {where}", (now, *args)
            )
            return cursor.rowcount

    def retry_births(self) -> int:
        """Make every birth waiting for a retry due now."""
        with self._write() as db:
            return db.execute(
                "UPDATE births SET next_attempt_at = 0 WHERE state IN ('pending', 'uploading')"
            ).rowcount

    def next_upload_due(self, *, retries_only: bool) -> float | None:
        """When the earliest waiting upload becomes due (only failed ones if ``retries_only``)."""
        row = self.db.execute(
            "SELECT min(next_attempt_at) FROM births WHERE state IN ('pending', 'uploading') AND attempts >= ?",
            (1 if retries_only else 0,),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def next_delivery_due(self) -> float | None:
        row = self.db.execute("SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending'").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # --- runs and status ----------------------------------------------------------------------

    def run_finished(self, job: str, summary: dict[str, int], started_at: float) -> None:
        """Remember the last run of a scheduled job (what ``status`` shows, when the next is due)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (job, started_at, finished_at, summary) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job) DO UPDATE SET started_at = excluded.started_at,"
                " finished_at = excluded.finished_at, summary = excluded.summary",
                (job, started_at, self.clock(), _encode(summary).decode()),
            )

    def status(self) -> dict[str, Any]:
        """Counts by state, deliveries by state, parked deliveries, and the last run of each job."""
        db = self.db
        births = dict(db.execute("SELECT state, count(*) FROM births GROUP BY state").fetchall())
        deliveries = dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())
        parked = [
            {"event_id": r[0], "plugin": r[1], "hook": r[2], "attempts": r[3], "error": r[4]}
            for r in db.execute(
                "SELECT d.event_id, d.plugin, e.hook, d.attempts, d.last_error FROM deliveries d"
                " JOIN events e ON e.id = d.event_id WHERE d.state = 'parked' ORDER BY e.created_at LIMIT 50"
            )
        ]
        review = [
            {"birth_id": r[0], "reason": r[1]}
            for r in db.execute("SELECT id, reason FROM births WHERE state = 'needs_review' ORDER BY id LIMIT 50")
        ]
        runs = {
            r[0]: {"started_at": r[1], "finished_at": r[2], "summary": msgspec.json.decode(r[3]) if r[3] else None}
            for r in db.execute("SELECT job, started_at, finished_at, summary FROM runs")
        }
        return {"births": births, "deliveries": deliveries, "parked": parked, "needs_review": review, "runs": runs}
