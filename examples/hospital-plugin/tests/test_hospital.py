"""The example hospital plugin, tested only through ybplug's kit (``ybplug[testing]``): no
conftest, no ybplug internals; the plugin is found through its entry point, as in production."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ybplug.codes import Funid
from ybplug.fields import with_check_digit
from ybplug.sandbox import Fault

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def hospital_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin's own database, in the test's folder."""
    path = tmp_path / "hospital.db"
    monkeypatch.setenv("YBPLUG_EXAMPLE_DB", str(path))
    return path


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def test_the_plugin_keeps_each_registration_number(ybplug_host, ybplug_birth, hospital_db):
    twins = ybplug_birth.twins("local")
    for birth in [*twins, ybplug_birth("not_insured")]:
        await ybplug_host.record_birth(birth)
    await ybplug_host.sync("upload")
    kept = rows(hospital_db, "SELECT his_serial, baz726, eligible FROM registrations ORDER BY his_serial")
    assert [row[0] for row in kept] == sorted([*[b.his_serial for b in twins], kept[-1][0]])
    by_serial = {serial: (baz726, eligible) for serial, baz726, eligible in kept}
    assert all(by_serial[b.his_serial][0] and by_serial[b.his_serial][1] == 1 for b in twins)
    assert len({baz726 for baz726, _ in by_serial.values()}) == 3  # three newborns, three numbers
    assert sorted(eligible for _, eligible in by_serial.values()) == [0, 1, 1]


async def test_a_redelivered_event_changes_nothing(ybplug_host, ybplug_birth, ybplug_redeliver, hospital_db):
    await ybplug_host.record_birth(ybplug_birth("nonlocal"))
    await ybplug_host.sync("upload")
    before = rows(hospital_db, "SELECT * FROM registrations")
    assert await ybplug_redeliver() >= 1
    assert rows(hospital_db, "SELECT * FROM registrations") == before


async def test_real_name_and_void_reach_the_hospital(ybplug_host, ybplug_sandbox, ybplug_birth, hospital_db):
    first, second = ybplug_birth("local"), ybplug_birth("local")
    await ybplug_host.record_birth(first)
    await ybplug_host.record_birth(second)
    await ybplug_host.sync("upload")
    numbers = dict(rows(hospital_db, "SELECT his_serial, baz726 FROM registrations"))
    real_id = with_check_digit("35020320261125001")
    ybplug_sandbox.real_name(numbers[first.his_serial], id_number=real_id, name="陈小宝")
    await ybplug_host.sync("realname")
    assert rows(hospital_db, "SELECT baz726, id_number, name FROM real_names") == [
        (numbers[first.his_serial], real_id, "陈小宝")
    ]
    await ybplug_host.void(numbers[second.his_serial], "重复上传")
    assert rows(hospital_db, "SELECT baz726, reason FROM voids") == [(numbers[second.his_serial], "重复上传")]


async def test_an_unanswered_upload_goes_on_the_review_list(ybplug_host, ybplug_sandbox, ybplug_birth, hospital_db):
    """The centre commits the birth but the answer is lost: ybplug asks a person to look it up,
    and the plugin puts it on the hospital's work list."""
    birth = ybplug_birth("local")
    ybplug_sandbox.inject(Fault("drop_after_commit", funid=Funid.COLLECT))
    await ybplug_host.record_birth(birth)
    await ybplug_host.sync("upload")
    await ybplug_host.replay()  # the waiting upload is due now, not after its backoff
    await ybplug_host.sync("upload")  # the retry meets the centre's "duplicate": review
    assert [row[0] for row in rows(hospital_db, "SELECT his_serial FROM reviews")] == [birth.his_serial]
