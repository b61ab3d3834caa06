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

from ybplug.errors import Error
from ybplug.journal import BirthRow, Journal, JournalError
from ybplug.messages import Birth


class HisTransactionFailed(Error):
    """The HIS's transaction had already failed before ``record_birth(connection=...)`` (one of the
    HIS's own statements failed; PostgreSQL ignores everything until the transaction ends): the
    HIS's to roll back.  Not a journal error: the journal is fine, and nothing was journaled."""


_FAILED = (
    "record_birth(connection=...): the HIS's transaction had already failed (an earlier statement of the HIS's "
    "failed; PostgreSQL ignores the rest until it ends): roll it back, and record the birth in a new transaction; "
    "nothing was journaled"
)


def _no_rights(role: str, schema: str) -> JournalError:
    return JournalError(
        f"record_birth(connection=...): permission denied: the HIS connection's role {role} has no rights on the "
        f"journal's schema {schema}: GRANT USAGE ON SCHEMA {schema} and SELECT, INSERT, UPDATE on its tables "
        f"TO {role}, or connect as the journal's role"
    )


def _translator(name: str, schema: str, role: str) -> Any:
    """The driver's errors on the HIS's connection: a transaction the HIS's own statement aborted,
    and rights the HIS's role lacks, said as such; anything else as the journal says it."""

    def translated(exc: BaseException) -> BaseException:
        import psycopg

        from ybplug.journal.postgres import translate

        if isinstance(exc, psycopg.errors.InFailedSqlTransaction):
            return HisTransactionFailed(_FAILED)
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return _no_rights(role, schema)
        return translate(exc, name)

    return translated


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

    def __init__(self, raw: Any, name: str, translate: Any) -> None:
        self.raw = raw
        self.name = name
        self.translate = translate

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        from ybplug.journal.postgres import dialect

        text, returning = dialect(sql, bool(parameters))

        async def run() -> _Rows:
            cursor = self.raw.cursor()
            await cursor.execute(text, tuple(parameters) if parameters else None)
            rows = await cursor.fetchall() if cursor.description else []
            return _Rows(rows, cursor.rowcount, returning)

        try:
            return anyio.from_thread.run(run)
        except Exception as exc:
            raise self.translate(exc) from None

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
    if not isinstance(connection, (psycopg.AsyncConnection, psycopg.Connection)):
        raise TypeError(f"connection= takes a psycopg Connection or AsyncConnection, not {type(connection).__name__}")
    translator = _translator(backend.name, backend.schema, str(connection.info.user))
    conn: Any
    if isinstance(connection, psycopg.AsyncConnection):
        conn = _AsyncConnection(connection, backend.name, translator)
    else:
        conn = PgConnection(connection, backend.name, translator)
    if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
        raise HisTransactionFailed(_FAILED)
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
    # The HIS's search_path, ours for this transaction, whether the journal is there and whether the
    # HIS's role may use its schema (read in the catalog, which needs no rights), in one round trip.
    [(path, _, usable, meta, role)] = conn.execute(
        "SELECT current_setting('search_path'), set_config('search_path', ?, true),"
        " coalesce(has_schema_privilege(n.oid, 'USAGE'), false),"
        " EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'meta'), current_user"
        " FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = ?",
        (quoted, schema),
    ).fetchall()
    try:
        if meta and not usable:
            raise _no_rights(str(role), schema)
        found = conn.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone() if meta else None
        if found is None or found[0] != journal_id:
            raise JournalError(
                f"record_birth(connection=...): the connection is not to the journal's database ({view.name}):"
                " the HIS's transaction and the journal must be in one database"
            )
        return view.record_births(births)
    finally:
        try:
            conn.execute("SELECT set_config('search_path', ?, true)", (path,)).fetchall()
        except (JournalError, HisTransactionFailed):
            pass  # the transaction failed: the HIS rolls it back, and its search_path with it
