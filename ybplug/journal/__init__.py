"""The journal: the durable record of every birth, exchange, event and delivery.

:class:`Journal` is the SQLite implementation (:mod:`ybplug.journal.store`); its schema and
migrations are in :mod:`ybplug.journal.schema`, how it knows itself in
:mod:`ybplug.journal.identity`.  What a birth's state becomes after an answer is decided in
:mod:`ybplug.lifecycle`, not here.
"""

from ybplug.errors import Outcome
from ybplug.journal.model import (
    ActionInfo,
    Backoff,
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
    "ActionInfo", "Backoff", "BirthNotFound", "BirthRow", "BirthStatus", "ExchangeInfo", "BirthState", "Delivery", "Journal", "JournalError", "JournalFull", "JournalLost",
    "Outcome", "default_owner", "start_new_journal",
]
