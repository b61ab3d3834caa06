"""PostgreSQL for the tests: the server ``YBPLUG_TEST_POSTGRES`` names (default: the CI machine's
127.0.0.1:5432, user postgres, database test), a schema of its own for each journal, dropped after.

Without a reachable server the PostgreSQL tests skip, saying why; under ``CI=true`` they fail
instead (CI has the server, so a skip there would hide a broken setup).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest

SERVER = os.environ.get("YBPLUG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_numbers = itertools.count(1)
_unreachable: list[str] = []


def shown(text: str) -> str:
    """``text`` with the test server's password masked: skip and fail messages end up in CI logs."""
    from ybplug.config import without_password

    for secret in re.findall(r"://[^:/@]*:([^@/]*)@", SERVER) + re.findall(r"password=([^&\s]*)", SERVER):
        if secret:
            text = text.replace(secret, "***")
    return without_password(text)


def in_schema(url: str, schema: str) -> str:
    """``url`` with its search_path set to ``schema`` (where the journal's tables go)."""
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"


def require_server() -> None:
    """Skip (fail under CI=true) when no PostgreSQL server answers at ``SERVER``."""
    if not _unreachable:
        try:
            import psycopg

            with psycopg.connect(SERVER, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            _unreachable.append("")
        except Exception as exc:  # psycopg missing, or no server
            _unreachable.append(shown(f"no PostgreSQL server at {SERVER} ({str(exc).strip() or type(exc).__name__});"
                                      " set YBPLUG_TEST_POSTGRES to one"))
    reason = _unreachable[0]
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new empty schema on the test server; yields a journal URL pointing at it; drops it after."""
    import psycopg

    require_server()
    schema = f"ybplug_test_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield in_schema(SERVER, schema)
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")  # a test that left a transaction open: its schema stays
            with contextlib.suppress(psycopg.errors.LockNotAvailable):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def journal_rows(journal: str, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``?`` placeholders) straight on the journal at ``journal`` (a file, or a
    ``postgresql://`` URL, as ``journal_at`` gives them), committed; its rows (none for a write).
    Tests check the console's figures against the journal's own rows with it, not through ybplug."""
    if not journal.startswith(("postgresql://", "postgres://")):
        import sqlite3

        db = sqlite3.connect(journal)
        try:
            rows = db.execute(sql, tuple(parameters)).fetchall()
            db.commit()
            return rows
        finally:
            db.close()
    import psycopg

    with psycopg.connect(journal) as conn:
        cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(parameters))
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []
