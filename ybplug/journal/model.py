"""What the journal hands out: rows, deliveries, backoff, and its errors."""

from __future__ import annotations

import os
import socket
import uuid

import msgspec

from ybplug import events
from ybplug.errors import Error
from ybplug.lifecycle import BirthState
from ybplug.messages import Birth


class JournalError(Error):
    """The journal cannot be used: where the configuration puts it, or any longer."""


class JournalLost(JournalError):
    """The journal file was deleted, emptied or replaced: the host stops rather than acknowledge
    births into a file that is gone.  A new empty journal takes ``ybplug init --new-journal``."""


class NewerJournal(JournalError):
    """The journal records a schema step this ybplug does not know: a newer ybplug wrote it, and
    this one would misread it.  Nothing is changed; upgrading ybplug on this machine is the cure."""

    def __init__(self, name: str, step: int, known: int) -> None:
        super().__init__(
            f"journal {name} was written by a newer ybplug: its tables are at version {step}, this ybplug "
            f"({_version()}) knows versions up to {known}; upgrade ybplug on this machine (the journal was left as it is)"
        )
        self.step = step
        self.known = known


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ybplug")
    except PackageNotFoundError:  # a source tree that is not installed
        return "not installed"


class JournalFull(JournalError):
    """The disk holding the journal is full; nothing already acknowledged was lost."""


class BirthBusy(JournalError):
    """Another open transaction is recording a birth with the same keys (the HIS's own, through
    :mod:`ybplug.outbox`, not yet committed): the host tries again until it ends, then says so."""

    def __init__(self) -> None:
        super().__init__(
            "a birth with the same HIS serial or the same mother, birth time and multiple-birth number"
            " is being recorded in another transaction still open (the HIS's, recording with"
            " connection=...); record it again once that transaction commits or rolls back"
        )


class BirthRow(msgspec.Struct, frozen=True):
    """A birth as the journal holds it."""

    id: int
    birth: Birth
    state: BirthState
    registration_number: str | None
    reason: str | None
    attempts: int
    #: The exchange committed with the claim ("about to leave"), for the upload to use.
    exchange_id: int | None = None


class Delivery(msgspec.Struct, frozen=True):
    """One event due to one plugin."""

    event_id: str
    plugin: str
    hook: str
    event: events.Event
    attempts: int


class Backoff(msgspec.Struct, frozen=True):
    """Capped exponential backoff: ``base * 2**(attempt-1)``, at most ``cap`` seconds."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))


def default_owner() -> str:
    """``host:pid:tag``: the pid lets a restarted worker see that a claim's owner on this machine
    is dead; the tag keeps two hosts in one process (a HIS reloading its config) apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ExchangeInfo(msgspec.Struct, frozen=True):
    """One exchange with the centre, as a lookup shows it (errors scrubbed)."""

    funid: str
    outcome: str
    started_at: float
    elapsed: float | None
    error: str | None


class ActionInfo(msgspec.Struct, frozen=True):
    """One person's action on a birth."""

    at: float
    operator: str
    action: str
    detail: str | None


class BirthStatus(msgspec.Struct, frozen=True):
    """Where a birth stands, for the HIS, the CLI and the console: no caller needs the journal's
    tables.  ``last_error`` and the exchanges' errors are scrubbed of personal data; ``birth``
    masks itself in ``repr``."""

    birth_id: int
    birth: Birth
    state: BirthState
    registration_number: str | None
    eligible: bool | None
    reason: str | None
    attempts: int
    #: When a failed upload is tried again; None when not waiting for a retry (a new birth goes
    #: with the next scheduled upload).
    next_attempt_at: float | None
    last_error: str | None
    recorded_at: float
    registered_at: float | None
    replaces: int | None
    replaced_by: int | None
    exchanges: tuple[ExchangeInfo, ...]
    actions: tuple[ActionInfo, ...]

    @property
    def his_serial(self) -> str:
        return self.birth.his_serial


class BirthNotFound(JournalError):
    """No journaled birth answers to the id, serial or registration number given."""
