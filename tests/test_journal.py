"""The journal's group commit on its own: one caller's failure never takes another's write."""

from __future__ import annotations

from pathlib import Path

import pytest

from ybplug.journal import BirthState, Journal
from ybplug.messages import Birth

from support import make_birth


def test_a_failing_operation_in_a_group_loses_no_other_write(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db").open()
    first, second = make_birth(), make_birth()

    def fails() -> None:
        journal.record_births([make_birth()])  # its own write, undone with it
        raise LookupError("this caller's mistake")

    results = journal.run_group(
        [lambda: journal.record_births([first]), fails, lambda: journal.record_births([second])]
    )
    assert [ok for ok, _ in results] == [True, False, True]
    assert isinstance(results[1][1], LookupError)
    journal.close()

    reopened = Journal(tmp_path / "journal.db").open()
    kept = [reopened.birth(i) for i in (1, 2, 3) if _exists(reopened, i)]
    assert sorted(row.birth.key for row in kept) == sorted([first.key, second.key])
    assert all(row.state == BirthState.PENDING for row in kept)


def _exists(journal: Journal, birth_id: int) -> bool:
    try:
        journal.birth(birth_id)
    except LookupError:
        return False
    return True


def test_recording_the_same_birth_twice_in_one_group_keeps_one(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db").open()
    birth: Birth = make_birth()
    (ok_a, [(row_a, created_a)]), (ok_b, [(row_b, created_b)]) = journal.run_group(
        [lambda: journal.record_births([birth]), lambda: journal.record_births([birth])]
    )
    assert ok_a and ok_b and created_a and not created_b
    assert row_a.id == row_b.id


@pytest.mark.parametrize("count", [1, 50])
def test_claims_take_each_birth_once(tmp_path: Path, count: int) -> None:
    journal = Journal(tmp_path / "journal.db").open()
    journal.record_births([make_birth() for _ in range(count)])
    first = journal.claim_births(count)
    assert len(first) == count and all(row.exchange_id for row in first)
    assert journal.claim_births(count) == []  # leased
