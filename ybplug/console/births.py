"""The births list: by state and the day they were recorded (China time), newest first.

Reads the journal's own columns (no record is decoded): the HIS serial and the registration
number name records, not people, so the list shows no personal field at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ybplug.fields import CHINA_TIME
from ybplug.journal import Journal
from ybplug.privacy import scrub


@dataclass(frozen=True)
class BirthLine:
    id: int
    his_serial: str
    multiple_birth_number: int
    state: str
    registration_number: str | None
    recorded_at: float


def births_on(journal: Journal, day: date | None, state: str | None, limit: int = 200) -> list[BirthLine]:
    """Births recorded on ``day`` (China time; None: any day) in ``state`` (None: any); run on the
    journal's thread (``host.run_journal``)."""
    if day is None:
        start, end = 0.0, 1e18
    else:
        midnight = datetime(day.year, day.month, day.day, tzinfo=CHINA_TIME)
        start, end = midnight.timestamp(), (midnight + timedelta(days=1)).timestamp()
    rows = journal.db.execute(
        "SELECT id, his_serial, multiple_birth_number, state, registration_number, created_at FROM births"
        " WHERE created_at >= ? AND created_at < ? AND (CAST(? AS TEXT) IS NULL OR state = ?) ORDER BY id DESC LIMIT ?",
        (start, end, state, state, limit),
    ).fetchall()
    return [BirthLine(int(r[0]), r[1], int(r[2]), r[3], r[4], float(r[5])) for r in rows]


@dataclass(frozen=True)
class DeliveryLine:
    """One hook delivery of one of the birth's events to one plugin."""

    hook: str
    plugin: str
    state: str
    attempts: int
    at: float
    error: str | None


def deliveries_of(journal: Journal, birth_id: int) -> list[DeliveryLine]:
    """The birth's events as delivered (or not) to each plugin; ``at``: when delivered, else when
    the event was made.  Run on the journal's thread.  Events made in one write share a time: the
    order they were made in breaks the tie (each engine would otherwise pick its own)."""
    rows = journal.db.execute(
        "SELECT e.hook, d.plugin, d.state, d.attempts, coalesce(d.delivered_at, e.created_at), d.last_error"
        " FROM events e JOIN deliveries d ON d.event_id = e.id WHERE e.birth_id = ? ORDER BY e.created_at, e.rowid, d.plugin",
        (birth_id,),
    ).fetchall()
    return [DeliveryLine(r[0], r[1], r[2], int(r[3]), float(r[4]), scrub(r[5]) if r[5] else None) for r in rows]
