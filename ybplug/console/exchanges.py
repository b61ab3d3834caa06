"""The exchanges page's rows: the latest exchanges with the centre (and EcTrans), filtered by
transaction and outcome, and one exchange's request and reply.  Codes only in the filter, errors
scrubbed, the personal fields of requests and replies masked: nothing personal is shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ybplug import messages
from ybplug.journal import Journal
from ybplug.privacy import mask, scrub

#: Every wire name that holds personal data in some message (a name, an ID number, a phone, a QR code).
PERSONAL_KEYS = frozenset(
    f.encode_name
    for kind in (messages.Birth, messages.RealNameRecord, messages.QrRequest, messages.QrIdentity)
    for f in msgspec.structs.fields(kind) if f.name in kind.personal
)


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
        " WHERE (CAST(? AS TEXT) IS NULL OR funid = ?) AND (CAST(? AS TEXT) IS NULL OR outcome = ?) ORDER BY id DESC LIMIT ?",
        (funid, funid, outcome, outcome, limit),
    ).fetchall()
    return [
        ExchangeRow(int(r[0]), r[1], r[2], float(r[3]), None if r[4] is None else float(r[4]),
                    None if r[5] is None else int(r[5]), scrub(r[6]) if r[6] else None)
        for r in rows
    ]


@dataclass(frozen=True)
class ExchangeDetail:
    row: ExchangeRow
    request: str | None
    reply: str | None


def masked(value: Any) -> Any:
    """A decoded request or reply with every personal field masked and every text scrubbed."""
    if isinstance(value, dict):
        return {k: mask(v) if k in PERSONAL_KEYS and v not in (None, "") else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return scrub(value) if isinstance(value, str) else value


def _shown(payload: bytes | None) -> str | None:
    if payload is None:
        return None
    try:
        decoded = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeError):
        return scrub(payload.decode("utf-8", "replace"))
    return msgspec.json.format(msgspec.json.encode(masked(decoded)), indent=2).decode()


def exchange_detail(journal: Journal, exchange_id: int) -> ExchangeDetail | None:
    """One exchange with its request and reply, masked (run on the journal's thread)."""
    r = journal.db.execute(
        "SELECT id, funid, outcome, started_at, elapsed, birth_id, error, request, reply FROM exchanges WHERE id = ?",
        (exchange_id,),
    ).fetchone()
    if r is None:
        return None
    row = ExchangeRow(int(r[0]), r[1], r[2], float(r[3]), None if r[4] is None else float(r[4]),
                      None if r[5] is None else int(r[5]), scrub(r[6]) if r[6] else None)
    return ExchangeDetail(row, _shown(r[7]), _shown(r[8]))
