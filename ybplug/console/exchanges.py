"""The exchanges page's rows: the latest exchanges with the centre (and EcTrans), filtered by
transaction and outcome.  Codes only in the filter, errors scrubbed: nothing personal is shown."""

from __future__ import annotations

from dataclasses import dataclass

from ybplug.journal import Journal
from ybplug.privacy import scrub


@dataclass(frozen=True)
class ExchangeRow:
    id: int
    funid: str
    outcome: str
    started_at: float
    elapsed: float | None
    birth_id: int | None
    error: str | None


def latest_exchanges(journal: Journal, funid: str | None, outcome: str | None, limit: int = 200) -> list[ExchangeRow]:
    """Newest first; run on the journal's thread (``host.run_journal``)."""
    rows = journal.db.execute(
        "SELECT id, funid, outcome, started_at, elapsed, birth_id, error FROM exchanges"
        " WHERE (? IS NULL OR funid = ?) AND (? IS NULL OR outcome = ?) ORDER BY id DESC LIMIT ?",
        (funid, funid, outcome, outcome, limit),
    ).fetchall()
    return [
        ExchangeRow(int(r[0]), r[1], r[2], float(r[3]), None if r[4] is None else float(r[4]),
                    None if r[5] is None else int(r[5]), scrub(r[6]) if r[6] else None)
        for r in rows
    ]
