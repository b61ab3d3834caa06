"""What the operations console and the alerts keep in the journal: incidents (one row per
incident, ``ybplug.alerts``) and the operators' audited acts that change nothing else (a reveal
of masked data, a replay).

Functions over a :class:`~ybplug.journal.Journal`, run on the journal's thread like its
methods (``host.run_journal(open_incidents, host.journal)``); kept in one place so the journal's
own classes stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from ybplug.journal.store import Journal


@dataclass(frozen=True)
class Incident:
    """One incident: open while ``resolved_at`` is None."""

    id: int
    key: str
    kind: str
    summary: str
    opened_at: float
    last_seen_at: float
    notified_at: float | None
    reminders: int
    resolved_at: float | None


_COLUMNS = "id, key, kind, summary, opened_at, last_seen_at, notified_at, reminders, resolved_at"


def _incident(row: tuple[object, ...]) -> Incident:
    return Incident(*row)  # type: ignore[arg-type]


def open_incidents(journal: Journal) -> dict[str, Incident]:
    """The incidents not yet resolved, by key."""
    rows = journal.db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE resolved_at IS NULL").fetchall()
    return {i.key: i for i in map(_incident, rows)}


def recent_incidents(journal: Journal, limit: int = 50) -> list[Incident]:
    """Open incidents first, then the latest resolved ones (the console's alerts page)."""
    rows = journal.db.execute(
        f"SELECT {_COLUMNS} FROM incidents ORDER BY resolved_at IS NOT NULL, coalesce(resolved_at, opened_at) DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_incident(r) for r in rows]


def open_incident(journal: Journal, key: str, kind: str, summary: str, now: float) -> Incident:
    """The open incident of ``key``, made now unless another process made it first (two workers
    on one journal: one incident still).  Not yet notified: :func:`claim_notice` before telling."""
    with journal._write() as db:
        db.execute(
            "INSERT INTO incidents (key, kind, summary, opened_at, last_seen_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) WHERE resolved_at IS NULL DO NOTHING",
            (key, kind, summary, now, now),
        )
        row = db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE key = ? AND resolved_at IS NULL", (key,)).fetchone()
    return _incident(row)


def incident_seen(journal: Journal, key: str, summary: str, now: float) -> None:
    """Still there: its latest summary (a count may have grown)."""
    with journal._write() as db:
        db.execute(
            "UPDATE incidents SET summary = ?, last_seen_at = ? WHERE key = ? AND resolved_at IS NULL", (summary, now, key)
        )


def claim_notice(journal: Journal, key: str, seen: float | None, now: float, *, reminder: bool) -> bool:
    """Take the telling of an alert (or a reminder) at ``now``: True when this process took it,
    False when another did since ``seen`` (its last notice as this process read it)."""
    with journal._write() as db:
        return db.execute(
            "UPDATE incidents SET notified_at = ?, reminders = reminders + ? WHERE key = ? AND resolved_at IS NULL"
            " AND notified_at IS NOT DISTINCT FROM ?",
            (now, int(reminder), key, seen),
        ).rowcount == 1


def release_notice(journal: Journal, key: str, seen: float | None, now: float, *, reminder: bool) -> None:
    """Nobody took the alert claimed at ``now``: put the last notice back, to tell it again at the next look."""
    with journal._write() as db:
        db.execute(
            "UPDATE incidents SET notified_at = ?, reminders = reminders - ? WHERE key = ? AND resolved_at IS NULL"
            " AND notified_at = ?",
            (seen, int(reminder), key, now),
        )


def resolve_incident(journal: Journal, key: str, now: float) -> bool:
    """Cleared: True when this process resolved it (and so tells), False when another did."""
    with journal._write() as db:
        return db.execute(
            "UPDATE incidents SET resolved_at = ? WHERE key = ? AND resolved_at IS NULL", (now, key)
        ).rowcount == 1


def audit(journal: Journal, operator: str, action: str, birth_id: int | None, detail: str) -> None:
    """Journal an operator's act that changes nothing else (who looked at what, who replayed)."""
    with journal._write() as db:
        journal._act(db, operator, action, birth_id, detail)


def event_birth(journal: Journal, event_id: str) -> int | None:
    """The birth an event is about (None: not about a birth, or no such event)."""
    row = journal.db.execute("SELECT birth_id FROM events WHERE id = ?", (event_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def event_known(journal: Journal, event_id: str) -> bool:
    """Whether the journal holds the event (a replay of one it does not is refused, not journaled)."""
    return journal.db.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is not None


def voids_unsettled(journal: Journal) -> list[tuple[int, str, str]]:
    """(birth id, registration number, reason) of every void of ours whose reply was lost and
    that no later answer settled: the ones the host stopped sending again included (for a person).
    A birth voided in doubt more than once is listed once, with its latest void's reason (picked
    here, not by a GROUP BY: PostgreSQL refuses a column neither grouped nor aggregated, and
    SQLite would take it from any of the rows)."""
    rows = journal.db.execute(
        "SELECT b.id, b.registration_number, e.request FROM exchanges e JOIN births b ON b.id = e.birth_id"
        " WHERE e.funid = 'yb04.13.01.22' AND e.outcome IN ('sent', 'unknown') AND e.request IS NOT NULL"
        " AND b.state != 'voided' AND b.registration_number IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM exchanges later WHERE later.funid = e.funid AND later.birth_id = e.birth_id"
        "      AND later.id > e.id AND later.outcome = 'ok')"
        " ORDER BY b.id, e.id DESC",
    ).fetchall()
    found: dict[int, tuple[int, str, str]] = {}
    for birth_id, number, request in rows:
        if int(birth_id) in found:
            continue  # an earlier void of the same birth
        try:
            reason = str(msgspec.json.decode(request).get("bae016") or "")
        except (msgspec.DecodeError, UnicodeError, AttributeError):
            continue
        found[int(birth_id)] = (int(birth_id), str(number), reason)
    return list(found.values())


def undelivered(journal: Journal, older_than: float) -> dict[str, int]:
    """Deliveries due ``older_than`` seconds ago and still waiting, by plugin: no running host
    has the plugin (uninstalled, excluded, its worker stopped), so the HIS is not getting its
    answers.  A delivery retried after a failure is not due yet, so not counted (parked ones are)."""
    since = journal.clock() - older_than
    rows = journal.db.execute(
        "SELECT d.plugin, count(*) FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.state = 'pending' AND d.next_attempt_at < ? AND e.created_at < ? GROUP BY d.plugin ORDER BY d.plugin",
        (since, since),
    ).fetchall()
    return {str(plugin): int(count) for plugin, count in rows}
