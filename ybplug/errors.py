"""The root of every error ybplug raises on purpose, and how an exchange with the centre ended.

A HIS writes ``except ybplug.Error`` once instead of collecting a class per module.  Where an
error is the end of an exchange (with the centre or the voucher library) it carries the
:class:`Outcome` the journal records for it, so the HIS, the journal and the observers agree.

This module imports nothing of ybplug: every other module may derive from it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class Outcome(StrEnum):
    """How an exchange ended (``sent``: about to leave, no answer recorded yet)."""

    SENT = "sent"
    OK = "ok"
    REFUSED = "refused"
    NOT_DELIVERED = "not_delivered"
    UNKNOWN = "unknown"
    AUTH_FAILED = "auth_failed"
    FAILED = "failed"


class Error(Exception):
    """Base of every error ybplug raises on purpose.

    ``outcome`` says how the exchange behind it ended, where there is one (refused, not
    delivered, unknown, failed...); ``None`` for errors that are not about an exchange (a bad
    config, an invalid field).
    """

    outcome: Outcome | None = None


class UsageError(Error):
    """A command asked for something that is not there (a file, a plugin's name): the person
    fixes the command line.  The CLI exits 2 for it, as for a configuration error."""


def outcome_of(error: BaseException) -> Outcome:
    """How a failed exchange is journaled: the error's own ``outcome`` (refused, unknown...),
    else failed."""
    return (error.outcome if isinstance(error, Error) else None) or Outcome.FAILED


def errors_in(group: BaseExceptionGroup[E]) -> list[E]:
    """The errors of a (nested) exception group, as a task group gathers them."""
    found: list[E] = []
    for exc in group.exceptions:
        found.extend(errors_in(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


__all__ = ["Error", "Outcome", "UsageError", "errors_in", "outcome_of"]
