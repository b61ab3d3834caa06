"""The journal on SQLite (WAL, synchronous=FULL): the single source of truth of what happened.

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
* Subscriptions are durable: an event gets a delivery for every plugin that ever subscribed to
  its hook (until an operator forgets it), whether or not the producing process loaded it.
* An event is emitted only by the transaction that changed the state it reports.
* The journal knows itself (:mod:`ybplug.journal.identity`): a deleted, emptied or replaced
  file is an error, never a silent fresh start.

All methods are synchronous and must be called from one thread at a time; the host runs them
on a worker thread under a limiter of one so the event loop never waits on ``fsync``.
"""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from ybplug import events, lifecycle
from ybplug.codes import Funid
from ybplug.errors import Outcome
from ybplug.fields import trusted
from ybplug.journal import identity
from ybplug.journal.model import Backoff, BirthRow, Delivery, JournalError, JournalFull, default_owner
from ybplug.journal.schema import migrate
from ybplug.lifecycle import BirthState
from ybplug.messages import Birth, CollectionResult, RealNameRecord
from ybplug.privacy import scrub
from ybplug.system import private_dir, private_file, process_alive


_encode = msgspec.json.Encoder().encode
_decode_birth = msgspec.json.Decoder(Birth).decode


class Journal:
    """The durable store.

    ``loaded`` names the plugins loaded in this process: an event's deliveries to them can be
    claimed in the commit that creates it (the others wait for a host that has them).  ``new``
    (``ybplug init --new-journal``) starts a new empty journal where the marker says one was.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        owner: str | None = None,
        lease: float = 120.0,
        clock: Callable[[], float] = time.time,
        new: bool = False,
    ) -> None:
        self.path = Path(path)
        self.loaded: frozenset[str] = frozenset()
        self.owner = owner or default_owner()
        self.lease = lease
        self.clock = clock
        self.new = new
        self.id = ""
        self._db: sqlite3.Connection | None = None
        self._watch: identity.FileWatch | None = None
        self._in_group = False
        self._checked_claims: dict[str, float] = {}
        self._data_version = 0

    # --- connection ---------------------------------------------------------------------------

    def open(self) -> Journal:
        """Open (or create) the journal; a path that cannot hold one is a :class:`JournalError`,
        a journal that was there and is gone or replaced a :class:`JournalLost`."""
        expected = identity.check_before_open(self.path, new=self.new)
        try:
            private_dir(self.path.parent)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise self._cannot_open(exc) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when record_birth returns, even if the machine loses power.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            migrate(db)
            self.id = identity.settle(db, self.path, expected)
        except BaseException as exc:
            db.close()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise self._cannot_open(exc) from None
            raise
        for suffix in ("", "-wal", "-shm"):  # personal data: this user's only
            private_file(self.path.with_name(self.path.name + suffix))
        self._db = db
        self._watch = identity.FileWatch(self.path)
        return self

    def _cannot_open(self, exc: BaseException) -> JournalError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorcode", None) in (
            sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT,
        ):
            return JournalError(
                f"journal {self.path} is damaged ({reason}): restore it from a backup, or start a new empty "
                "journal with `ybplug init --new-journal`"
            )
        return JournalError(f"journal {self.path}: cannot open it ({reason}); check `journal` in ybplug.toml")

    def close(self) -> None:
        """Give back this journal's claims (a host in the same process may start next), then close."""
        if self._db is not None:
            try:
                with self._write() as db:
                    for table in ("births", "deliveries"):
                        db.execute(f"UPDATE {table} SET lease_until = 0 WHERE claimed_by = ?", (self.owner,))
            except JournalError:
                pass  # a lost or full journal: nothing to give back to
            finally:
                self._db.close()
                self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def changed_elsewhere(self) -> bool:
        """Whether another connection (another process) committed since the last call: how a
        worker notices a birth the HIS recorded in its own process."""
        version = int(self.db.execute("PRAGMA data_version").fetchone()[0])
        changed, self._data_version = version != self._data_version, version
        return changed

    def _commit(self, db: sqlite3.Connection) -> None:
        """COMMIT, only while the file is still the journal; SQLite's errors as JournalErrors."""
        try:
            if self._watch is not None:
                self._watch.check()
            db.execute("COMMIT")
        except BaseException as exc:
            self._rollback(db)
            raise self._translate(exc) from None

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        """ROLLBACK if a transaction is open: SQLite ends some on its own (disk full), and a
        second rollback would hide the real cause behind "no transaction is active"."""
        if db.in_transaction:
            db.execute("ROLLBACK")

    def _translate(self, exc: BaseException) -> BaseException:
        if not isinstance(exc, sqlite3.Error):
            return exc
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            return JournalFull(
                f"journal {self.path}: the disk is full ({exc}); the write was not made and nothing "
                "acknowledged before was lost: free space, then try again"
            )
        return JournalError(f"journal {self.path}: {exc}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; IMMEDIATE so claims by two processes cannot interleave.

        Inside :meth:`run_group` it is part of the group's transaction instead.
        """
        db = self.db
        if self._in_group:
            yield db
            return
        self._begin(db)
        try:
            yield db
        except BaseException as exc:
            self._rollback(db)
            raise self._translate(exc) from None
        self._commit(db)

    def _begin(self, db: sqlite3.Connection) -> None:
        if self._watch is not None:
            self._watch.check()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._translate(exc) from None

    def run_group(self, operations: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """Run several operations in one transaction: one fsync makes them all durable.

        This is group commit: while one commit is on its way to disk, the host queues what
        other tasks want to write, then writes all of it at once.  Each operation gets its own
        outcome, ``(True, value)`` or ``(False, error)``.  If one fails, the group is rolled back
        and each operation runs again in a transaction of its own, so one caller's error never
        takes another's write with it (operations touch only the database, so a rerun is safe).
        If the commit itself fails (disk full, journal lost), every operation gets that error.
        """
        db = self.db
        results: list[tuple[bool, Any]] = []
        try:
            self._begin(db)
        except BaseException as exc:
            return [(False, exc)] * len(operations)
        self._in_group = True
        try:
            for operation in operations:
                results.append((True, operation()))
        except Exception:
            self._in_group = False
            self._rollback(db)
            return [self._alone(operation) for operation in operations]
        finally:
            self._in_group = False
        try:
            self._commit(db)
        except BaseException as exc:
            return [(False, exc)] * len(operations)
        return results

    def _alone(self, operation: Callable[[], Any]) -> tuple[bool, Any]:
        """One operation in a transaction of its own (the slow path of :meth:`run_group`)."""
        db = self.db
        try:
            self._begin(db)
        except BaseException as exc:
            return (False, exc)
        self._in_group = True
        try:
            value = operation()
        except Exception as exc:
            self._in_group = False
            self._rollback(db)
            return (False, self._translate(exc))
        finally:
            self._in_group = False
        try:
            self._commit(db)
        except BaseException as exc:
            return (False, exc)
        return (True, value)

    # --- subscriptions ----------------------------------------------------------------------------

    def subscribe(self, plugins_by_hook: Mapping[str, Iterable[str]]) -> None:
        """Remember that these plugins receive these event hooks (a host loaded them), from now
        until an operator forgets them; refresh when each was last loaded."""
        now = self.clock()
        rows = [(plugin, hook, now, now) for hook, plugins in plugins_by_hook.items() for plugin in plugins]
        with self._write() as db:
            db.executemany(
                "INSERT INTO subscriptions (plugin, hook, since, last_loaded_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (plugin, hook) DO UPDATE SET last_loaded_at = excluded.last_loaded_at,"
                " since = CASE WHEN forgotten_at IS NULL THEN since ELSE excluded.since END, forgotten_at = NULL",
                rows,
            )

    def forget(self, plugin: str, operator: str) -> tuple[int, int]:
        """Drop a subscriber, as an operator's journaled act: its waiting and parked deliveries
        are marked ``forgotten`` and it gets no new events.  Returns (hooks, deliveries) dropped."""
        now = self.clock()
        with self._write() as db:
            hooks = db.execute(
                "UPDATE subscriptions SET forgotten_at = ? WHERE plugin = ? AND forgotten_at IS NULL", (now, plugin)
            ).rowcount
            if not hooks:
                known = [r[0] for r in db.execute(
                    "SELECT DISTINCT plugin FROM subscriptions WHERE forgotten_at IS NULL ORDER BY plugin"
                )]
                raise JournalError(
                    f"no subscriber named {plugin!r} in journal {self.path} (subscribers: {', '.join(known) or 'none'})"
                )
            dropped = db.execute(
                "UPDATE deliveries SET state = 'forgotten', claimed_by = NULL, lease_until = NULL"
                " WHERE plugin = ? AND state IN ('pending', 'parked')",
                (plugin,),
            ).rowcount
            self._act(db, operator, "forget plugin", None, f"{plugin}: {hooks} hooks, {dropped} deliveries dropped")
        return hooks, dropped

    def _act(self, db: sqlite3.Connection, operator: str, action: str, birth_id: int | None, detail: str) -> None:
        """Journal an operator's action: who did what, to which birth, when."""
        db.execute(
            "INSERT INTO actions (at, operator, action, birth_id, detail) VALUES (?, ?, ?, ?, ?)",
            (self.clock(), operator, action, birth_id, detail),
        )

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
        plugins = [r[0] for r in db.execute(
            "SELECT plugin FROM subscriptions WHERE hook = ? AND forgotten_at IS NULL ORDER BY plugin", (hook,)
        )]
        if not plugins:  # nobody to deliver to: the state change itself is the record
            return event_id
        now = self.clock()
        db.execute(
            "INSERT INTO events (id, hook, birth_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            (event_id, hook, birth_id, events.encode(event), now),
        )
        for plugin in plugins:
            owner, lease = None, None
            if (
                claimed is not None
                and plugin in self.loaded
                and (birth_id is None or not self._earlier_pending(db, birth_id, plugin))
            ):
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

    def _row(self, row: tuple[Any, ...]) -> BirthRow:
        with trusted():  # validated before it was recorded
            birth = _decode_birth(row[1])
        return BirthRow(row[0], birth, BirthState(row[2]), row[3], row[4], row[5])

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
        """Claim up to ``limit`` births due for upload, with a lease.

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
            exchanges = [
                int(db.execute(
                    "INSERT INTO exchanges (funid, birth_id, started_at) VALUES (?, ?, ?)", (Funid.COLLECT, birth_id, now)
                ).lastrowid or 0)
                for birth_id in ids
            ]
        return [
            dataclasses.replace(self._row(r), exchange_id=exchange_id)
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
        birth's state and the event's deliveries claimed for this process to make now.

        The state follows :func:`ybplug.lifecycle.after_upload`.  Only an answer that moves the
        birth out of ``uploading`` emits an event: when another worker's answer for the same
        birth got there first (an expired lease), this one is recorded as an exchange only.
        """
        now = self.clock()
        reply = _encode(result)
        with self._write() as db:
            earlier = [
                lifecycle.Answer(r[0], r[1])
                for r in db.execute(
                    "SELECT outcome, error FROM exchanges WHERE birth_id = ? AND funid = ? AND id != ? ORDER BY id",
                    (row.id, Funid.COLLECT, exchange_id),
                )
            ]
            decision = lifecycle.after_upload(
                ok=result.ok, cause=result.cause, ineligibility=result.ineligibility_reason,
                duplicate=duplicate, earlier=earlier,
            )
            outcome = Outcome.OK if result.ok else Outcome.REFUSED
            self._finish_exchange(db, exchange_id, outcome, reply, None if result.ok else result.cause)
            changed = db.execute(
                "UPDATE births SET state = ?, registration_number = ?, eligibility = ?, reason = ?,"
                " attempts = attempts + 1, claimed_by = NULL, lease_until = NULL, last_error = NULL, updated_at = ?"
                " WHERE id = ? AND state = 'uploading'",
                (
                    decision.state,
                    str(result.registration_number) if result.ok else None,
                    str(result.eligibility) if result.ok else None,
                    decision.reason,
                    now,
                    row.id,
                ),
            ).rowcount
            claimed: list[Delivery] = []
            if not changed:
                return self._birth_where(db, "id = ?", (row.id,)).state, claimed
            event: events.Event
            if decision.review:
                event = events.NeedsReview(birth=row.birth, reason=decision.reason or "", birth_id=row.id)
            else:
                event = events.CollectionAnswered(birth=row.birth, result=result, birth_id=row.id)
            self._emit(db, event, row.id, claimed)
        return decision.state, claimed

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

    def realname_answered(
        self, exchange_id: int, reply: bytes, updates: list[tuple[int, RealNameRecord]]
    ) -> tuple[int, int]:
        """Record a yb04.13.01.24 answer: newly real-named and centre-voided newborns, one commit.

        A birth's event is emitted only if this answer moved it out of ``registered``: two
        pollers asking at once both record their exchange, one of them emits.  Returns how many
        births this answer moved to real-named and to voided.
        """
        now = self.clock()
        real_named = voided = 0
        with self._write() as db:
            self._finish_exchange(db, exchange_id, Outcome.OK, reply, None)
            for birth_id, record in updates:
                event: events.Event
                if record.voided:
                    changed = db.execute(
                        "UPDATE births SET state = 'voided', reason = ?, updated_at = ? WHERE id = ? AND state = 'registered'",
                        ("voided at the centre", now, birth_id),
                    ).rowcount
                    event = events.Voided(
                        registration_number=str(record.registration_number), reason="voided at the centre", birth_id=birth_id
                    )
                else:
                    changed = db.execute(
                        "UPDATE births SET state = 'real_named', updated_at = ? WHERE id = ? AND state = 'registered'",
                        (now, birth_id),
                    ).rowcount
                    if changed:
                        birth = self._birth_where(db, "id = ?", (birth_id,)).birth
                        event = events.RealNamed(birth=birth, record=record, birth_id=birth_id)
                if changed:
                    voided += int(record.voided)
                    real_named += int(not record.voided)
                    self._emit(db, event, birth_id)
        return real_named, voided

    def birth_id_of(self, registration_number: str) -> int | None:
        """The birth holding ``registration_number`` (the latest, should there be several)."""
        found = self.db.execute(
            "SELECT id FROM births WHERE registration_number = ? ORDER BY id DESC LIMIT 1", (registration_number,)
        ).fetchone()
        return int(found[0]) if found else None

    def void_in_doubt(self, registration_number: str) -> bool:
        """Whether an earlier yb04.13.01.22 for this number has an unknown outcome (its reply was
        lost): the centre may have voided it, so its "already void" now means success."""
        birth_id = self.birth_id_of(registration_number)
        found = self.db.execute(
            "SELECT 1 FROM exchanges WHERE funid = ? AND outcome IN ('sent', 'unknown')"
            " AND (birth_id = ? OR instr(request, ?) > 0) LIMIT 1",
            (Funid.VOID, birth_id, f'"{registration_number}"'.encode()),
        ).fetchone()
        return found is not None

    def voided(self, exchange_id: int, reply: bytes, registration_number: str, reason: str) -> int | None:
        """Record a successful yb04.13.01.22 and its event; returns the birth id if it is ours.

        The event is emitted only when this moves the birth to voided (a repeated void after a
        lost reply, or one the real-name poll already saw, emits nothing twice).
        """
        now = self.clock()
        with self._write() as db:
            self._finish_exchange(db, exchange_id, Outcome.OK, reply, None)
            birth_id = self.birth_id_of(registration_number)
            changed = 1
            if birth_id is not None:
                changed = db.execute(
                    "UPDATE births SET state = 'voided', reason = ?, updated_at = ? WHERE id = ? AND state != 'voided'",
                    (reason, now, birth_id),
                ).rowcount
            if changed:
                event = events.Voided(registration_number=registration_number, reason=reason, birth_id=birth_id)
                self._emit(db, event, birth_id)
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
        """Counts by state, deliveries by state, parked deliveries, births in review, durable
        subscribers with what waits for each, and the last run of each job.  Errors and reasons
        are scrubbed of personal data: this is what people and monitors read."""
        db = self.db
        births = dict(db.execute("SELECT state, count(*) FROM births GROUP BY state").fetchall())
        deliveries = dict(db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())
        parked = [
            {"event_id": r[0], "plugin": r[1], "hook": r[2], "attempts": r[3], "error": scrub(r[4] or ""), "birth_id": r[5]}
            for r in db.execute(
                "SELECT d.event_id, d.plugin, e.hook, d.attempts, d.last_error, e.birth_id FROM deliveries d"
                " JOIN events e ON e.id = d.event_id WHERE d.state = 'parked' ORDER BY e.created_at LIMIT 50"
            )
        ]
        review = [
            {"birth_id": r[0], "reason": scrub(r[1] or "")}
            for r in db.execute("SELECT id, reason FROM births WHERE state = 'needs_review' ORDER BY id LIMIT 50")
        ]
        subscribers: dict[str, dict[str, Any]] = {}
        for plugin, hook, since, loaded_at in db.execute(
            "SELECT plugin, hook, since, last_loaded_at FROM subscriptions WHERE forgotten_at IS NULL ORDER BY plugin, hook"
        ):
            entry = subscribers.setdefault(plugin, {"hooks": [], "since": since, "last_loaded_at": loaded_at})
            entry["hooks"].append(hook)
            entry["since"] = min(entry["since"], since)
            entry["last_loaded_at"] = max(entry["last_loaded_at"], loaded_at)
        for plugin, state, count in db.execute(
            "SELECT plugin, state, count(*) FROM deliveries WHERE state IN ('pending', 'parked') GROUP BY plugin, state"
        ):
            if plugin in subscribers:
                subscribers[plugin][state] = count
        runs = {
            r[0]: {"started_at": r[1], "finished_at": r[2], "summary": msgspec.json.decode(r[3]) if r[3] else None}
            for r in db.execute("SELECT job, started_at, finished_at, summary FROM runs")
        }
        return {
            "births": births, "deliveries": deliveries, "parked": parked, "needs_review": review, "runs": runs,
            "subscribers": subscribers,
        }


def start_new_journal(path: str | Path) -> Journal:
    """``ybplug init --new-journal``: a new empty journal where one was lost (the marker names
    it) or is damaged; a damaged file is moved aside, never deleted.  A readable journal
    holding births is never replaced (move it away first); an empty one is taken as it is."""
    path = Path(path)
    if identity.holds_a_journal(path):
        try:
            existing = Journal(path, new=True).open()
        except JournalError:
            stamp = time.strftime("%Y%m%d%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                old = path.with_name(path.name + suffix)
                if old.exists():
                    old.rename(old.with_name(f"{old.name}.damaged-{stamp}"))
        else:
            births = int(existing.db.execute("SELECT count(*) FROM births").fetchone()[0])
            if not births:  # an empty journal: it becomes the journal (its marker was rewritten)
                return existing
            existing.close()
            raise JournalError(
                f"journal {path} is readable and holds {births} births: ybplug never starts a new journal "
                "over one; move it away first if you really mean to"
            )
    return Journal(path, new=True).open()

