"""The journal's connection: transactions and group commit, identity checks, events and
their durable subscriptions.  The operations on births, exchanges and deliveries build on it
(:mod:`ybplug.journal.births`, :mod:`ybplug.journal.store`)."""

from __future__ import annotations

import copy
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import msgspec

from ybplug import events
from ybplug.config import KEYWORDS_RULE, looks_like_keywords
from ybplug.fields import trusted
from ybplug.journal.model import BirthNotFound, BirthRow, Delivery, JournalError, default_owner
from ybplug.journal.sql import Backend, Connection
from ybplug.journal.sqlite import SqliteBackend
from ybplug.lifecycle import BirthState
from ybplug.messages import Birth
from ybplug.system import process_alive


_encode = msgspec.json.Encoder().encode
_decode_birth = msgspec.json.Decoder(Birth).decode


def _event_id() -> str:
    """32 hex digits in time order (nanoseconds, then 64 random bits).  Events and deliveries are
    keyed by it: new ones land at the end of those indexes, not each on a random page of years of
    history (a random page is a page read and a page written to the WAL for every event)."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


class JournalBase:
    """The durable store.

    ``path`` is a file (SQLite) or a ``postgresql://`` URL (see :func:`backend_for`).
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
        self.backend = backend_for(path)
        #: A file's path; for PostgreSQL its URL as a path (use :attr:`name` to show it).
        self.path = Path(path)
        self.loaded: frozenset[str] = frozenset()
        self.owner = owner or default_owner()
        self.lease = lease
        self.clock = clock
        self.new = new
        self.id = ""
        self._open = False
        self._thread: int | None = None
        self._in_group = False
        self._checked_claims: dict[str, float] = {}

    @property
    def name(self) -> str:
        """The journal as messages name it: its path, or its URL without a password."""
        return self.backend.name

    # --- connection ---------------------------------------------------------------------------

    def open(self) -> Self:
        """Open (or create) the journal; a place that cannot hold one is a :class:`JournalError`,
        a journal that was there and is gone or replaced a :class:`JournalLost`."""
        _, self.id = self.backend.open(new=self.new)
        self._open = True
        return self

    def close(self) -> None:
        """Give back this journal's claims (a host in the same process may start next), then close."""
        if self._open:
            try:
                with self._write() as db:
                    for table in ("births", "deliveries"):
                        db.execute(f"UPDATE {table} SET lease_until = 0 WHERE claimed_by = ?", (self.owner,))
            except JournalError:
                pass  # a lost or full journal: nothing to give back to
            finally:
                self._open = False
                self.backend.close()

    def on_connection(self, backend: Backend) -> Self:
        """This journal's operations on another connection, inside a transaction its owner
        commits or rolls back (the outbox: :mod:`ybplug.outbox`)."""
        view = copy.copy(self)
        view.backend, view._thread, view._in_group, view.loaded, view._checked_claims = backend, None, True, frozenset(), {}
        return view

    def bind(self, thread: int) -> None:
        """Only ``thread`` (the host's journal thread) may use the connection from now on."""
        self._thread = thread

    @property
    def db(self) -> Connection:
        if not self._open:
            raise RuntimeError("journal is not open")
        if self._thread is not None and threading.get_ident() != self._thread:
            raise RuntimeError(
                "the journal is used only on the host's journal thread: await host.records.<operation>(...) "
                "or host.run_journal(...) instead of calling it directly"
            )
        return self.backend.connection()

    def changed_elsewhere(self) -> bool:
        """Whether another connection (another process) committed since the last call: how a
        worker notices a birth the HIS recorded in its own process."""
        self.db  # noqa: B018 (the thread check)
        try:
            return self.backend.changed_elsewhere()
        except Exception as exc:
            raise self.backend.translate(exc) from None

    def _translate(self, exc: BaseException) -> BaseException:
        return self.backend.translate(exc)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One atomic write; claims by two processes cannot interleave.

        Inside :meth:`run_group` it is part of the group's transaction instead.
        """
        db = self.db
        if self._in_group:
            yield db
            return
        self._begin()
        db = self.db
        try:
            yield db
        except BaseException as exc:
            self.backend.rollback()
            raise self._translate(exc) from None
        self.backend.commit()

    def _begin(self) -> None:
        self.db  # noqa: B018 (the thread check)
        self.backend.begin()

    def run_group(self, operations: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        """Run several operations in one transaction: one fsync makes them all durable.

        This is group commit: while one commit is on its way to disk, the host queues what
        other tasks want to write, then writes all of it at once.  Each operation gets its own
        outcome, ``(True, value)`` or ``(False, error)``.  If one fails, the group is rolled back
        and each operation runs again in a transaction of its own, so one caller's error never
        takes another's write with it (operations touch only the database, so a rerun is safe).
        If the commit itself fails (disk full, journal lost), every operation gets that error.
        """
        results: list[tuple[bool, Any]] = []
        try:
            self._begin()
        except BaseException as exc:
            return [(False, exc)] * len(operations)
        self._in_group = True
        try:
            for operation in operations:
                results.append((True, operation()))
        except Exception:
            self._in_group = False
            self.backend.rollback()
            return [self._alone(operation) for operation in operations]
        finally:
            self._in_group = False
        try:
            self.backend.commit()
        except BaseException as exc:
            if self.backend.lost():  # the connection went, and the group with it: each runs again
                return [self._alone(operation) for operation in operations]
            return [(False, exc)] * len(operations)
        return results

    def _alone(self, operation: Callable[[], Any]) -> tuple[bool, Any]:
        """One operation in a transaction of its own (the slow path of :meth:`run_group`); run
        again, a few times, while the write was known not made because the connection was lost
        (see :meth:`Backend.lost <ybplug.journal.sql.Backend.lost>`)."""
        for attempt in range(1, 6):
            outcome = self._alone_once(operation)
            if outcome[0] or attempt == 5 or not self.backend.lost():
                return outcome
        raise AssertionError("unreachable")

    def _alone_once(self, operation: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            self._begin()
        except BaseException as exc:
            return (False, exc)
        self._in_group = True
        try:
            value = operation()
        except Exception as exc:
            self._in_group = False
            self.backend.rollback()
            return (False, self._translate(exc))
        finally:
            self._in_group = False
        try:
            self.backend.commit()
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
                " since = CASE WHEN subscriptions.forgotten_at IS NULL THEN subscriptions.since ELSE excluded.since END,"
                " forgotten_at = NULL",
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
                    f"no subscriber named {plugin!r} in journal {self.name} (subscribers: {', '.join(known) or 'none'})"
                )
            dropped = db.execute(
                "UPDATE deliveries SET state = 'forgotten', claimed_by = NULL, lease_until = NULL"
                " WHERE plugin = ? AND state IN ('pending', 'parked')",
                (plugin,),
            ).rowcount
            self._act(db, operator, "forget plugin", None, f"{plugin}: {hooks} hooks, {dropped} deliveries dropped")
        return hooks, dropped

    def _act(self, db: Connection, operator: str, action: str, birth_id: int | None, detail: str) -> None:
        """Journal an operator's action: who did what, to which birth, when."""
        db.execute(
            "INSERT INTO actions (at, operator, action, birth_id, detail) VALUES (?, ?, ?, ?, ?)",
            (self.clock(), operator, action, birth_id, detail),
        )

    # --- events ---------------------------------------------------------------------------------

    def _emit(
        self, db: Connection, event: events.Event, birth_id: int | None, claimed: list[Delivery] | None = None
    ) -> str:
        """Store ``event`` and a pending delivery per subscribed plugin, inside the caller's write.

        With ``claimed``, deliveries this process can make right away (no earlier delivery of
        the same birth to the same plugin still pending) are claimed in the same write and
        appended there, so the caller delivers them without another round trip to the journal.
        """
        event_id = _event_id()
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
        self.backend.announce(db)
        return event_id

    @staticmethod
    def _earlier_pending(db: Connection, birth_id: int, plugin: str) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM events e JOIN deliveries d ON d.event_id = e.id"
                " WHERE e.birth_id = ? AND d.plugin = ? AND d.state = 'pending' LIMIT 1",
                (birth_id, plugin),
            ).fetchone()
            is not None
        )

    def _birth_where(self, db: Connection, where: str, args: Iterable[Any], *, lock: bool = True) -> BirthRow:
        """The birth ``where`` finds; read inside a write, its row stays that write's until it commits."""
        row = db.execute(
            f"SELECT id, record, state, registration_number, reason, attempts FROM births WHERE {where}"
            + (self.backend.for_update if lock else ""),
            tuple(args),
        ).fetchone()
        if row is None:  # (every caller looks a birth up by its id)
            raise BirthNotFound(f"no birth #{', '.join(str(a) for a in args)} in journal {self.name}")
        return self._row(row)

    def _row(self, row: tuple[Any, ...]) -> BirthRow:
        with trusted():  # validated before it was recorded
            birth = _decode_birth(row[1])
        return BirthRow(row[0], birth, BirthState(row[2]), row[3], row[4], row[5])

    def birth(self, birth_id: int) -> BirthRow:
        return self._birth_where(self.db, "id = ?", (birth_id,), lock=False)

    def _release_dead_claims(self, db: Connection, table: str, now: float) -> None:
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



def backend_for(target: str | Path) -> Backend:
    """The engine a ``journal`` setting names: a ``postgresql://`` URL, or a file for SQLite."""
    text = str(target)
    if looks_like_keywords(text):
        raise JournalError(KEYWORDS_RULE)
    if text.startswith(("postgresql://", "postgres://")):
        from ybplug.journal.postgres import PostgresBackend  # psycopg only where it is used

        return PostgresBackend(text)
    return SqliteBackend(target)
