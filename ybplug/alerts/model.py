"""What ``ybplug_alert`` receives: one alert about one incident.  Codes and counts only: an
alert leaves the hospital (a chat group), so it never holds a name, an ID number or a birth's
record, only what happened, how many, and what to do."""

from __future__ import annotations

from typing import Literal

import msgspec

Status = Literal["firing", "reminder", "resolved"]
STATUS_LABELS = {"firing": "告警", "reminder": "提醒（仍未处理）", "resolved": "已恢复"}


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """Something that needs a person now, as one look at the journal found it."""

    kind: str
    title: str
    text: str
    count: int = 1


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert about one incident.

    ``key`` names the incident (``parked:st_mary``, ``review``, ``signin``, ``upload``,
    ``voucher``, ``stale``): the same key until it clears.  ``status`` is ``firing`` (first
    alert), ``reminder`` (still open after ``remind_minutes``) or ``resolved``.  ``text`` says
    what happened and what to do, in Chinese, with no personal data.
    """

    key: str
    kind: str
    status: Status
    title: str
    text: str
    count: int
    opened_at: float
    at: float

    def message(self) -> str:
        """The alert as one chat message."""
        return f"【ybplug {STATUS_LABELS[self.status]}】{self.title}\n{self.text}"
