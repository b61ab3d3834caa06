"""The journal: the durable record of every birth, exchange, event and delivery.

:class:`Journal` (:mod:`ybplug.journal.store`) is written once, over a backend
(:mod:`ybplug.journal.sql`): SQLite (:mod:`ybplug.journal.sqlite`, the default; its migrations in
:mod:`ybplug.journal.schema`, how the file knows itself in :mod:`ybplug.journal.identity`) or
PostgreSQL for several workers on several machines (:mod:`ybplug.journal.postgres`, its
migrations in :mod:`ybplug.journal.pg_schema`).  What a birth's state becomes after an answer is decided in
:mod:`ybplug.lifecycle`, not here.
"""

from pathlib import Path

from ybplug.errors import Outcome
from ybplug.journal.model import (
    ActionInfo,
    Backoff,
    BirthBusy,
    BirthNotFound,
    BirthRow,
    BirthStatus,
    Delivery,
    ExchangeInfo,
    JournalError,
    JournalFull,
    JournalLost,
    NewerJournal,
    default_owner,
)
from ybplug.journal.store import Journal
from ybplug.journal.store import start_new_journal as _start_new_file_journal
from ybplug.lifecycle import BirthState


def start_new_journal(path: str | Path) -> Journal:
    """``ybplug init --new-journal``: a new empty journal where one was lost or is damaged.

    On SQLite (a path) see :func:`ybplug.journal.store.start_new_journal`.  On PostgreSQL (a URL)
    the journal found at the URL becomes the one this machine expects there from now on (see
    :mod:`ybplug.journal.pg_identity`): in an emptied schema its tables are created anew; a journal
    restored or moved there is taken as it is (nothing in a database is ever dropped by ybplug)."""
    if str(path).startswith(("postgresql://", "postgres://")):
        return Journal(path, new=True).open()
    return _start_new_file_journal(path)


__all__ = [
    "ActionInfo", "Backoff", "BirthBusy", "BirthNotFound", "BirthRow", "BirthStatus", "ExchangeInfo", "BirthState", "Delivery", "Journal", "JournalError", "JournalFull", "JournalLost",
    "NewerJournal", "Outcome", "default_owner", "start_new_journal",
]
