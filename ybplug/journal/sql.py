"""The seam between the journal's logic and the database engine under it.

The journal's operations (:mod:`ybplug.journal.births`, :mod:`ybplug.journal.store`) are written
once, in the SQL both engines speak, against :class:`Connection`: ``execute`` with ``?``
placeholders, a cursor with ``fetchone``, ``fetchall``, ``rowcount`` and ``lastrowid``, as
:mod:`sqlite3` has them.  What differs between engines lives behind :class:`Backend`: connecting,
the schema and its migrations, transactions, locking rows a claim takes, telling other processes
that something changed, and turning the driver's errors into :class:`~ybplug.journal.JournalError`.

Two backends: SQLite (:mod:`ybplug.journal.sqlite`, the embedded default, one machine) and
PostgreSQL (:mod:`ybplug.journal.postgres`, many workers on many machines), chosen by the
``journal`` setting: a path, or a ``postgresql://`` URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class Cursor(Protocol):
    """What a statement returns (sqlite3's cursor has exactly this)."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...


class Connection(Protocol):
    """A connection the journal's SQL runs on (``?`` placeholders)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


class Backend:
    """One engine under the journal.  The defaults are SQLite's, where a process's own writes
    are serialized by the file lock and nothing needs announcing."""

    #: Appended to a claim's SELECT: rows another worker is claiming right now are skipped, not waited for.
    skip_locked = ""
    #: The same for a claim joining deliveries to their events (only the deliveries are locked).
    skip_locked_deliveries = ""
    #: Appended to the SELECT that reads a birth inside a write: the row stays this write's until it commits.
    for_update = ""
    #: How often the host asks :meth:`changed_elsewhere` (seconds).
    watch_interval = 0.5

    def __init__(self, target: str | Path) -> None:
        self.target = target

    @property
    def name(self) -> str:
        """How errors name the journal (a path, or a URL without its password)."""
        return str(self.target)

    def open(self, *, new: bool) -> tuple[Connection, str]:
        """Connect, bring the schema up to date; the connection and the journal's id."""
        raise NotImplementedError

    def connection(self) -> Connection:
        """The open connection (reconnected first if the engine allows and it was lost)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        """Start a write transaction (errors already translated)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Commit the write transaction; on failure it is rolled back and the error translated."""
        raise NotImplementedError

    def rollback(self) -> None:
        """Roll back the open transaction, if there is one; never raises."""
        raise NotImplementedError

    def translate(self, exc: BaseException) -> BaseException:
        """The driver's error as a JournalError (other errors unchanged)."""
        return exc

    def lost(self) -> bool:
        """Whether the last write failed because the connection was lost, and is known not to
        have been made (so running it again is safe)."""
        return False

    def changed_elsewhere(self) -> bool:
        """Whether another connection committed something a worker should look at."""
        raise NotImplementedError

    def announce(self, db: Connection) -> None:
        """Inside a write that recorded births or events: wake the other workers once it commits."""

    def lock_birth(self, db: Connection, keys: tuple[str, ...]) -> None:
        """Inside a write: hold off other writers recording a birth with these keys until it commits."""
