"""The transactional outbox: a birth journaled in the HIS's own database transaction.

``await host.record_birth(birth, connection=his_connection)`` writes the journal's rows (the
birth, its ``birth_recorded`` event and deliveries) on the HIS's psycopg connection, inside the
transaction the HIS has open, so the HIS's own birth row and ybplug's journal entry commit or roll
back together: no birth the HIS committed is missing from the journal, none it rolled back is in
it, whatever dies in between.  The workers hear of it by a ``NOTIFY`` that PostgreSQL sends only
when the HIS commits.

It needs the journal on PostgreSQL, in the database the HIS's connection is to (its tables are
found in the journal's schema, whatever the HIS's ``search_path``, which is left as it was).
A sync connection (``psycopg.Connection``) is used from a worker thread, an async one
(``psycopg.AsyncConnection``) on the caller's event loop, statement by statement.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from ybplug.journal import BirthRow, Journal, JournalError
from ybplug.messages import Birth


class _Rows:
    """What an async statement returned, fetched (a cursor for the journal's sync code)."""

    def __init__(self, rows: list[Any], rowcount: int, returning: bool) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._returning = returning

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    @property
    def lastrowid(self) -> int | None:
        return int(self._rows[0][0]) if self._returning and self._rows else None


class _AsyncConnection:
    """An ``AsyncConnection`` for the journal's sync code in a worker thread: each statement runs
    on the event loop the connection belongs to."""

    def __init__(self, raw: Any, name: str) -> None:
        self.raw = raw
        self.name = name

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        from ybplug.journal.postgres import dialect, translate

        text, returning = dialect(sql, bool(parameters))

        async def run() -> _Rows:
            cursor = self.raw.cursor()
            await cursor.execute(text, tuple(parameters) if parameters else None)
            rows = await cursor.fetchall() if cursor.description else []
            return _Rows(rows, cursor.rowcount, returning)

        try:
            return anyio.from_thread.run(run)
        except Exception as exc:
            raise translate(exc, self.name) from None

    def executemany(self, sql: str, parameters: Any, /) -> _Rows:
        count = sum(self.execute(sql, p).rowcount for p in parameters)
        return _Rows([], count, False)


async def record_births(journal: Journal, births: list[Birth], connection: Any) -> list[tuple[BirthRow, bool]]:
    """Journal ``births`` in ``connection``'s open transaction (see the module's docstring)."""
    try:
        import psycopg

        from ybplug.journal.postgres import OutboxBackend, PgConnection, PostgresBackend
    except ImportError:
        raise JournalError("record_birth(connection=...) needs psycopg: pip install 'ybplug[postgresql]'") from None
    backend = journal.backend
    if not isinstance(backend, PostgresBackend):
        raise JournalError(
            f"record_birth(connection=...) needs the journal on PostgreSQL (journal = \"postgresql://...\"),"
            f" in the HIS's database; this journal is {journal.name}"
        )
    conn: Any
    if isinstance(connection, psycopg.AsyncConnection):
        conn = _AsyncConnection(connection, backend.name)
    elif isinstance(connection, psycopg.Connection):
        conn = PgConnection(connection, backend.name)
    else:
        raise TypeError(f"connection= takes a psycopg Connection or AsyncConnection, not {type(connection).__name__}")
    if connection.autocommit and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        raise JournalError(
            "record_birth(connection=...): the connection has no transaction open (autocommit, outside"
            " `with conn.transaction()`): the birth would commit on its own, not with the HIS's write"
        )
    view = journal.on_connection(OutboxBackend(conn, backend))
    work = functools.partial(_record, view, conn, births, backend.schema, backend.journal_id)
    return await anyio.to_thread.run_sync(work)


def _record(view: Journal, conn: Any, births: list[Birth], schema: str, journal_id: str) -> list[tuple[BirthRow, bool]]:
    quoted = '"' + schema.replace('"', '""') + '"'
    # The HIS's search_path, ours for this transaction, and whether the journal is there, in one round trip.
    [(path, _, meta)] = conn.execute(
        "SELECT current_setting('search_path'), set_config('search_path', ?, true), to_regclass(?)",
        (quoted, quoted + ".meta"),
    ).fetchall()
    try:
        found = None if meta is None else conn.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
        if found is None or found[0] != journal_id:
            raise JournalError(
                f"record_birth(connection=...): the connection is not to the journal's database ({view.name}):"
                " the HIS's transaction and the journal must be in one database"
            )
        return view.record_births(births)
    finally:
        try:
            conn.execute("SELECT set_config('search_path', ?, true)", (path,)).fetchall()
        except JournalError:
            pass  # the transaction failed: the HIS rolls it back, and its search_path with it
