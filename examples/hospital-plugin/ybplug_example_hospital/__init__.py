"""An example hospital plugin, installed as its own distribution and found through the
``ybplug`` entry-point group.

It keeps the hospital's side of the newborn registrations in its own SQLite database
(``YBPLUG_EXAMPLE_DB``, default ``ybplug-example-hospital.db`` in the working directory):
the ``baz726`` the centre issued, eligibility, and the real identity once the newborn is
real-named, the registrations voided, and the births a person must review.  Each write is keyed
by ``event_id``, so a redelivered event changes nothing.

Hooks are plain functions: ybplug runs them on a worker thread, so blocking database calls are
fine here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ybplug.hooks import hookimpl
from ybplug.messages import Birth, CollectionResult, RealNameRecord

_lock = threading.Lock()


@contextmanager
def _db() -> Iterator[sqlite3.Connection]:
    """One short transaction on the hospital's database, committed on success, always closed."""
    db = sqlite3.connect(os.environ.get("YBPLUG_EXAMPLE_DB", "ybplug-example-hospital.db"), timeout=30)
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS registrations (
            event_id TEXT PRIMARY KEY,
            birth_id INTEGER NOT NULL,
            his_serial TEXT NOT NULL,
            baz726 TEXT,
            eligible INTEGER,
            refused_cause TEXT
        );
        CREATE TABLE IF NOT EXISTS real_names (
            event_id TEXT PRIMARY KEY,
            birth_id INTEGER NOT NULL,
            baz726 TEXT NOT NULL,
            id_number TEXT,
            name TEXT
        );
        CREATE TABLE IF NOT EXISTS voids (
            event_id TEXT PRIMARY KEY,
            birth_id INTEGER,
            baz726 TEXT NOT NULL,
            reason TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS reviews (
            event_id TEXT PRIMARY KEY,
            birth_id INTEGER NOT NULL,
            his_serial TEXT NOT NULL,
            reason TEXT NOT NULL
        );
        """
    )
    try:
        with db:
            yield db
    finally:
        db.close()


@hookimpl
def collection_result(birth: Birth, result: CollectionResult, birth_id: int, event_id: str) -> None:
    with _lock, _db() as db:
        db.execute(
            "INSERT OR IGNORE INTO registrations VALUES (?, ?, ?, ?, ?, ?)",
            (
                event_id,
                birth_id,
                birth.his_serial,
                str(result.registration_number) if result.ok else None,
                int(result.eligible) if result.ok else None,
                None if result.ok else result.cause,
            ),
        )


@hookimpl
def realname_resolved(record: RealNameRecord, birth_id: int, event_id: str) -> None:
    with _lock, _db() as db:
        db.execute(
            "INSERT OR IGNORE INTO real_names VALUES (?, ?, ?, ?, ?)",
            (event_id, birth_id, str(record.registration_number), record.id_number, record.name),
        )


@hookimpl
def collection_voided(registration_number: str, reason: str, birth_id: int | None, event_id: str) -> None:
    with _lock, _db() as db:
        db.execute(
            "INSERT OR IGNORE INTO voids VALUES (?, ?, ?, ?)", (event_id, birth_id, registration_number, reason)
        )


@hookimpl
def birth_needs_review(birth: Birth, reason: str, birth_id: int, event_id: str) -> None:
    """A person must look this birth up at the centre: the hospital keeps it on a work list."""
    with _lock, _db() as db:
        db.execute(
            "INSERT OR IGNORE INTO reviews VALUES (?, ?, ?, ?)", (event_id, birth_id, birth.his_serial, reason)
        )
