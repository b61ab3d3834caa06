"""The journal: the durable record of every birth, exchange, event and delivery.

:class:`Journal` (:mod:`ybplug.journal.store`) is written once, over a backend
(:mod:`ybplug.journal.sql`): SQLite (:mod:`ybplug.journal.sqlite`, the default; its migrations in
:mod:`ybplug.journal.schema`, how the file knows itself in :mod:`ybplug.journal.identity`) or
PostgreSQL for several workers on several machines (:mod:`ybplug.journal.postgres`, its
migrations in :mod:`ybplug.journal.pg_schema`).  What a birth's state becomes after an answer is decided in
:mod:`ybplug.lifecycle`, not here.
"""

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
    default_owner,
)
from ybplug.journal.store import Journal, start_new_journal
from ybplug.lifecycle import BirthState

__all__ = [
    "ActionInfo", "Backoff", "BirthBusy", "BirthNotFound", "BirthRow", "BirthStatus", "ExchangeInfo", "BirthState", "Delivery", "Journal", "JournalError", "JournalFull", "JournalLost",
    "Outcome", "default_owner", "start_new_journal",
]
