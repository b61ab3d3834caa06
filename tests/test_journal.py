"""The journal's group commit and claims on their own, on each backend (SQLite and PostgreSQL):
one caller's failure never takes another's write, a claim takes each birth once."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from ybplug.journal import Backoff, BirthState, Journal, NewerJournal
from ybplug.journal.schema import MIGRATIONS
from ybplug.messages import Birth, CollectionResult

from support import make_birth


def test_a_failing_operation_in_a_group_loses_no_other_write(journal_at: str) -> None:
    journal = Journal(journal_at).open()
    first, second, undone = make_birth(), make_birth(), make_birth()

    def fails() -> None:
        journal.record_births([undone])  # its own write, undone with it
        raise LookupError("this caller's mistake")

    results = journal.run_group(
        [lambda: journal.record_births([first]), fails, lambda: journal.record_births([second])]
    )
    assert [ok for ok, _ in results] == [True, False, True]
    assert isinstance(results[1][1], LookupError)
    journal.close()

    reopened = Journal(journal_at).open()
    assert reopened.find(undone.his_serial) == []
    kept = [reopened.birth(i) for b in (first, second) for i in reopened.find(b.his_serial)]
    assert sorted(row.birth.key for row in kept) == sorted([first.key, second.key])
    assert all(row.state == BirthState.PENDING for row in kept)
    reopened.close()


def test_recording_the_same_birth_twice_in_one_group_keeps_one(journal_at: str) -> None:
    journal = Journal(journal_at).open()
    birth: Birth = make_birth()
    (ok_a, [(row_a, created_a)]), (ok_b, [(row_b, created_b)]) = journal.run_group(
        [lambda: journal.record_births([birth]), lambda: journal.record_births([birth])]
    )
    assert ok_a and ok_b and created_a and not created_b
    assert row_a.id == row_b.id
    journal.close()


@pytest.mark.parametrize("count", [1, 50])
def test_claims_take_each_birth_once(journal_at: str, count: int) -> None:
    journal = Journal(journal_at).open()
    journal.record_births([make_birth() for _ in range(count)])
    first = journal.claim_births(count)
    assert len(first) == count and all(row.exchange_id for row in first)
    assert journal.claim_births(count) == []  # leased
    journal.close()


def test_a_claim_by_a_worker_on_another_machine_ends_with_its_lease(journal_at: str) -> None:
    """Its pid means nothing here: only the lease's time ends its claim."""
    now = [time.time()]
    elsewhere = Journal(journal_at, owner="ward-server-2:4242:abcd", lease=30, clock=lambda: now[0]).open()
    here = Journal(journal_at, lease=30, clock=lambda: now[0]).open()
    elsewhere.record_births([make_birth()])
    now[0] += 2
    [taken] = elsewhere.claim_births(10)
    assert here.claim_births(10) == []
    now[0] += 31  # the other machine died, or lost the network
    [again] = here.claim_births(10)
    assert again.id == taken.id
    here.close()
    elsewhere.close()


def test_workers_claiming_at_once_take_each_birth_once(journal_at: str) -> None:
    Journal(journal_at).open().record_births([make_birth() for _ in range(120)])
    workers = [Journal(journal_at).open() for _ in range(3)]
    taken: list[list[int]] = [[] for _ in workers]
    start = threading.Barrier(len(workers))

    def claim(i: int) -> None:
        start.wait()
        while rows := workers[i].claim_births(7):
            taken[i] += [row.id for row in rows]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [birth_id for ids in taken for birth_id in ids]
    assert len(everything) == len(set(everything)) == 120
    for journal in workers:
        journal.close()


def test_a_sqlite_journal_from_a_newer_ybplug_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(path).open()
    journal.record_births([make_birth()])
    journal.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(NewerJournal) as caught:
        Journal(path).open()
    said = str(caught.value)
    assert f"journal {path} was written by a newer ybplug" in said and "upgrade ybplug on this machine" in said
    assert f"at version {len(MIGRATIONS) + 1}" in said and f"versions up to {len(MIGRATIONS)}" in said
    db = sqlite3.connect(path)  # left as it was
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 1,)
    db.close()


# --- a lease that ran out while a worker's upload was still under way --------------------------

OK = CollectionResult(flag=1, registration_number="XSE2612010000001", eligibility="1")
OK_TOO = CollectionResult(flag=1, registration_number="XSE2612010000002", eligibility="1")
DUPLICATE = CollectionResult(flag=0, cause="重复申报")


def _two_workers(journal_at: str) -> tuple[Journal, Journal, list[float]]:
    """Worker A on one machine, worker B on another, one clock; A claims a birth, then its lease runs out."""
    now = [time.time()]
    a = Journal(journal_at, owner="ward-server-1:1:a", lease=60, clock=lambda: now[0]).open()
    b = Journal(journal_at, owner="ward-server-2:2:b", lease=60, clock=lambda: now[0]).open()
    a.subscribe({"collection_result": ["hospital"], "birth_needs_review": ["hospital"]})
    a.record_births([make_birth()])
    now[0] += 2
    return a, b, now


def _events(journal: Journal, hook: str) -> int:
    return int(journal.db.execute("SELECT count(*) FROM events WHERE hook = ?", (hook,)).fetchone()[0])


def test_a_late_failure_does_not_undo_the_registration_another_worker_made(journal_at: str) -> None:
    a, b, now = _two_workers(journal_at)
    [mine] = a.claim_births(10)
    assert a.keep_claim(mine.id)  # still A's: renewed
    now[0] += 61  # A's upload is slow; its lease runs out
    [theirs] = b.claim_births(10)
    assert not a.keep_claim(mine.id)  # B's now: A must not send it
    b.upload_answered(theirs, theirs.exchange_id or 0, OK, duplicate=False)
    state, _ = a.upload_failed(mine, "read timeout", Backoff())  # A's upload times out at last...
    assert state == BirthState.UPLOADING  # ...and is told the birth is not its own any more
    row = b.birth(mine.id)
    assert row.state == BirthState.REGISTERED and row.registration_number == "XSE2612010000001"
    assert _events(b, "collection_result") == 1
    a.close()
    b.close()


def test_the_centres_late_registration_wins_over_the_duplicate_it_caused(journal_at: str) -> None:
    """A's upload reached the centre but its answer was slow; B sent the birth again and heard
    "duplicate" (to review, the number unknown); then A's answer arrives with the number."""
    a, b, now = _two_workers(journal_at)
    [mine] = a.claim_births(10)
    now[0] += 61
    [theirs] = b.claim_births(10)
    assert b.upload_answered(theirs, theirs.exchange_id or 0, DUPLICATE, duplicate=True)[0] == BirthState.NEEDS_REVIEW
    state, _ = a.upload_answered(mine, mine.exchange_id or 0, OK, duplicate=False)
    row = a.birth(mine.id)
    assert state == row.state == BirthState.REGISTERED and row.registration_number == "XSE2612010000001"
    assert _events(a, "birth_needs_review") == 1 and _events(a, "collection_result") == 1
    # ...and the other order: the number first, the duplicate after changes nothing
    a.record_births([second := make_birth()])
    now[0] += 2
    [mine] = a.claim_births(10)
    now[0] += 61
    [theirs] = b.claim_births(10)
    a.upload_answered(mine, mine.exchange_id or 0, OK_TOO, duplicate=False)
    assert b.upload_answered(theirs, theirs.exchange_id or 0, DUPLICATE, duplicate=True)[0] == BirthState.REGISTERED
    assert a.birth(a.find(second.his_serial)[0]).registration_number == "XSE2612010000002"
    assert _events(a, "birth_needs_review") == 1 and _events(a, "collection_result") == 2
    a.close()
    b.close()
