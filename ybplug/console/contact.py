"""The centre's reachability as the journal saw it: the last exchange with it, and the last one
it answered.

Not a live probe (the interface has no harmless transaction to send just to see): the worker
exchanges with the centre at every upload and real-name poll, so the journal's latest exchanges
are what the overview can honestly show.  EcTrans calls (the QR library) are not the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

from ybplug.codes import Funid
from ybplug.journal import Journal
from ybplug.privacy import scrub

#: Outcomes in which the centre answered (a refusal is an answer: the centre is there).
ANSWERED = ("ok", "refused")


@dataclass(frozen=True)
class Exchange:
    funid: str
    outcome: str
    started_at: float
    error: str | None


@dataclass(frozen=True)
class Contact:
    last: Exchange | None
    last_answered: Exchange | None

    @property
    def reachable(self) -> bool | None:
        """Whether the last exchange got an answer; None before any exchange."""
        return None if self.last is None else self.last.outcome in ANSWERED


def _centre_exchange(journal: Journal, outcomes: tuple[str, ...] = ()) -> Exchange | None:
    """The latest finished exchange with the centre (EcTrans excluded), of ``outcomes`` if given."""
    funids = [str(f) for f in Funid]
    extra = f" AND outcome IN ({','.join('?' * len(outcomes))})" if outcomes else ""
    row = journal.db.execute(
        f"SELECT funid, outcome, started_at, error FROM exchanges WHERE funid IN ({','.join('?' * len(funids))})"
        f" AND outcome != 'sent'{extra} ORDER BY id DESC LIMIT 1",
        (*funids, *outcomes),
    ).fetchone()
    return None if row is None else Exchange(row[0], row[1], float(row[2]), scrub(row[3]) if row[3] else None)


def last_contact(journal: Journal) -> Contact:
    """Read on the journal's thread: ``host.run_journal(last_contact, journal)``."""
    return Contact(_centre_exchange(journal), _centre_exchange(journal, ANSWERED))


def last_centre_outcome(journal: Journal) -> str | None:
    """The outcome of the latest finished exchange with the centre (the alerts' sign-in check)."""
    last = _centre_exchange(journal)
    return None if last is None else last.outcome


def voucher_crashes(journal: Journal, since: float) -> int:
    """EcTrans calls that crashed since ``since`` (the console's health line and the voucher alert)."""
    (n,) = journal.db.execute(
        "SELECT count(*) FROM exchanges WHERE funid = 'EcTrans' AND started_at >= ? AND error LIKE '%crashed%'",
        (since,),
    ).fetchone()
    return int(n)


@dataclass(frozen=True)
class VoucherHealth:
    """The voucher library as the journal saw it: its last call, and its crashes in the last hour."""

    last: Exchange | None
    crashes_last_hour: int


def voucher_health(journal: Journal, now: float) -> VoucherHealth:
    """Read on the journal's thread.  Every EcTrans call is journaled (``funid`` ``EcTrans``)."""
    row = journal.db.execute(
        "SELECT funid, outcome, started_at, error FROM exchanges WHERE funid = 'EcTrans' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    last = None if row is None else Exchange(row[0], row[1], float(row[2]), scrub(row[3]) if row[3] else None)
    return VoucherHealth(last, voucher_crashes(journal, now - 3600))
