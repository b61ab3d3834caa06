"""The mistakes people make, each end to end against the sandbox: every dead end has a way out.

A second twin sent with the first's multiple-birth number, a corrected record under the same key,
a refused birth fixed and recorded again, a voided birth recorded again, a birth in review that a
person looked up at the centre, a registered birth corrected (void + new registration), the
real-name horizon, and looking a birth up.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import ybplug
from ybplug.codes import Funid
from ybplug.fields import InvalidMessage
from ybplug.fields import with_check_digit
from ybplug.host import Host
from ybplug.journal.model import BirthNotFound
from ybplug.lifecycle import BirthConflict, BirthState, InvalidTransition, ResolutionError
from ybplug.sandbox import SEED_MOTHERS, Fault, Sandbox

from recorder import Recorder
from support import birth_record, host_config


@pytest.fixture
async def ward(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> AsyncIterator[tuple[Host, Recorder]]:
    """A host on each backend (SQLite, PostgreSQL), uploading when a test asks."""
    seen = Recorder()
    config = host_config(tmp_path, sandbox, journal=journal_at)
    async with Host(config, plugins=[seen], entry_points=False, background=False) as host:
        yield host, seen


def live(sandbox: Sandbox, mother: str = "local") -> list[dict[str, Any]]:
    return [r for r in sandbox.registrations() if r["bkee35"] == SEED_MOTHERS[mother] and not r["voided"]]


@pytest.mark.anyio
async def test_the_second_twin_sent_with_bme027_1_is_a_conflict_not_a_merge(ward: tuple[Host, Recorder]) -> None:
    host, _ = ward
    first = await host.record_birth(birth_record(1, number=1, sex="1"))
    mistaken = {**birth_record(1, number=2, sex="2"), "bme027": 1}  # the second twin, numbered 1 by mistake
    with pytest.raises(BirthConflict) as caught:
        await host.record_birth(mistaken)
    error = caught.value
    assert (error.birth_id, error.state) == (first.birth_id, BirthState.PENDING)
    message = str(error)
    assert "aac004 新生儿性别" in message and "bke042 his流水号" in message
    assert "陈静之女" not in message and "陈静之子" not in message  # the newborn's name, masked
    assert "陈*" in message
    # Fixed (bme027 2), it is recorded as the second newborn.
    second = await host.record_birth(birth_record(1, number=2, sex="2"))
    assert second.created and second.birth_id != first.birth_id
    # The very same record again is idempotent.
    again = await host.record_birth(birth_record(1, number=1, sex="1"))
    assert (again.birth_id, again.created) == (first.birth_id, False)


@pytest.mark.anyio
async def test_the_same_his_serial_for_another_newborn_is_a_conflict(ward: tuple[Host, Recorder]) -> None:
    host, _ = ward
    first = await host.record_birth(birth_record(2))
    other = {**birth_record(3), "bke042": birth_record(2)["bke042"]}  # another birth time, same serial
    with pytest.raises(BirthConflict) as caught:
        await host.record_birth(other)
    assert caught.value.birth_id == first.birth_id
    assert "HIS serial" in str(caught.value) and "aac006 新生儿出生时间" in str(caught.value)


@pytest.mark.anyio
async def test_a_corrected_record_under_the_same_key_names_each_field_and_keeps_the_old(
    ward: tuple[Host, Recorder], sandbox: Sandbox
) -> None:
    host, seen = ward
    recorded = await host.record_birth(birth_record(4))
    await host.sync("upload")
    corrected = {**birth_record(4), "bkee37": "林静", "bkee33": 13900139000}
    with pytest.raises(BirthConflict) as caught:
        await host.record_birth(corrected)
    message = str(caught.value)
    assert caught.value.state == BirthState.REGISTERED and f"#{recorded.birth_id}" in message
    assert "bkee37 母亲姓名: '陈*' -> '林*'" in message or "bkee37 母亲姓名: 陈* -> 林*" in message
    assert "bkee33 母亲联系方式" in message and "13900139000" not in message and "13800138000" not in message
    assert "replace_birth" in message
    status = await host.birth(recorded.birth_id)
    assert status.state == BirthState.REGISTERED and status.birth.mother_name == "陈静"  # nothing merged
    assert len(seen.of("collection_result")) == 1


@pytest.mark.anyio
async def test_refused_fixed_and_recorded_again_is_uploaded_again(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    """The advice of collection_result's docstring, followed literally."""
    host, seen = ward
    sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="母亲姓名与证件不符"))
    first = await host.record_birth(birth_record(5))
    await host.sync("upload")
    [refused] = seen.of("collection_result", first.birth_id)
    assert not refused["result"].ok and (await host.birth(first.birth_id)).state == BirthState.REFUSED
    fixed = {**birth_record(5), "bkee37": "陈晶"}
    again = await host.record_birth(fixed)
    assert again.birth_id == first.birth_id and again.state == BirthState.PENDING
    await host.sync("upload")
    status = await host.birth(first.birth_id)
    assert status.state == BirthState.REGISTERED and status.birth.mother_name == "陈晶"
    results = seen.of("collection_result", first.birth_id)
    assert [r["result"].ok for r in results] == [False, True]
    assert [r["baz726"] for r in live(sandbox)] == [status.registration_number]
    assert any(a.action == "amend" and a.operator.startswith("HIS") for a in status.actions)


@pytest.mark.anyio
async def test_amend_a_refused_birth_uploads_the_corrected_record(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    host, seen = ward
    sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="母亲姓名与证件不符"))
    first = await host.record_birth(birth_record(6))
    await host.sync("upload")
    await host.amend_birth(first.birth_id, {**birth_record(6), "bkee37": "陈晶"}, operator="clerk 王")
    await host.sync("upload")
    status = await host.birth(first.birth_id)
    assert status.state == BirthState.REGISTERED and status.registration_number in {r["baz726"] for r in live(sandbox)}
    assert [a.operator for a in status.actions if a.action == "amend"] == ["clerk 王"]
    # A registered birth is not amended: replace it.
    with pytest.raises(InvalidTransition, match="replace"):
        await host.amend_birth(first.birth_id, {**birth_record(6), "bkee37": "陈静"})


@pytest.mark.anyio
async def test_a_voided_birth_recorded_again_is_a_new_registration(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    host, seen = ward
    first = await host.record_birth(birth_record(7))
    await host.sync("upload")
    number = (await host.birth(first.birth_id)).registration_number
    assert number is not None
    await host.void(number, "误作废后重新登记")
    again = await host.record_birth(birth_record(7))
    assert again.created and again.birth_id != first.birth_id
    await host.sync("upload")
    new = await host.birth(again.birth_id)
    assert new.state == BirthState.REGISTERED and new.registration_number != number
    at_centre = {r["baz726"]: r["voided"] for r in sandbox.registrations()}
    assert at_centre == {number: True, new.registration_number: False}
    assert (await host.birth(number)).birth_id == first.birth_id  # the old number still finds the old birth


@pytest.mark.anyio
async def test_replace_voids_and_registers_the_corrected_birth_with_the_hooks(
    ward: tuple[Host, Recorder], sandbox: Sandbox
) -> None:
    host, seen = ward
    first = await host.record_birth(birth_record(8))
    await host.sync("upload")
    old_number = (await host.birth(first.birth_id)).registration_number
    corrected = {**birth_record(8), "aac004": "2"}  # the sex was wrong
    new = await host.replace_birth(first.birth_id, corrected, "性别录错", operator="clerk 李")
    await host.sync("upload")
    new = await host.birth(new.birth_id)
    old = await host.birth(first.birth_id)
    assert old.state == BirthState.VOIDED and old.replaced_by == new.birth_id and new.replaces == first.birth_id
    assert new.state == BirthState.REGISTERED and new.birth.newborn_sex == "2"
    assert [r["baz726"] for r in live(sandbox)] == [new.registration_number]
    assert [v["registration_number"] for v in seen.of("collection_voided", first.birth_id)] == [old_number]
    [result] = seen.of("collection_result", new.birth_id)
    assert result["result"].registration_number == new.registration_number
    assert len(seen.event_ids()) == len(set(seen.event_ids()))  # each correction's events are new ones
    assert any(a.action == "replace" and a.operator == "clerk 李" for a in old.actions)


async def _in_review(host: Host, sandbox: Sandbox, n: int, *, committed: bool, sex: str = "1") -> int:
    """A birth whose upload's answer was lost (committed at the centre or not), then met a refusal."""
    recorded = await host.record_birth(birth_record(n, sex=sex))
    sandbox.inject(Fault("drop_after_commit", funid=Funid.COLLECT) if committed else Fault("http_error", funid=Funid.COLLECT))
    await host.sync("upload")
    if not committed:
        sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="系统繁忙"))
    await host.replay()
    await host.sync("upload")
    assert (await host.birth(recorded.birth_id)).state == BirthState.NEEDS_REVIEW
    return recorded.birth_id


@pytest.mark.anyio
async def test_review_resolved_with_the_baz726_found_at_the_centre_is_registered_and_real_named(
    ward: tuple[Host, Recorder], sandbox: Sandbox
) -> None:
    host, seen = ward
    birth_id = await _in_review(host, sandbox, 9, committed=True)
    [found] = live(sandbox)  # what the clerk sees in 定点机构管理系统
    status = await host.resolve_review(birth_id, operator="clerk 张", registration_number=found["baz726"], eligible=True)
    await host.deliver_due()
    assert status.state == BirthState.REGISTERED and status.registration_number == found["baz726"] and status.eligible
    [result] = seen.of("collection_result", birth_id)
    assert result["resolved_by"] == "clerk 张" and result["result"].registration_number == found["baz726"]
    assert status.actions[-1].operator == "clerk 张" and status.actions[-1].action == "resolve review"
    sandbox.real_name(found["baz726"], id_number=with_check_digit("35020320261125002"), name="陈小红")
    asked = sandbox.calls(Funid.REALNAME)
    await host.sync("realname")
    assert sandbox.calls(Funid.REALNAME) == asked + 1
    assert (await host.birth(birth_id)).state == BirthState.REAL_NAMED
    assert len(seen.of("realname_resolved", birth_id)) == 1
    assert sandbox.calls(Funid.COLLECT) == 2  # never uploaded a third time


@pytest.mark.anyio
async def test_review_with_nothing_at_the_centre_is_sent_again(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    host, seen = ward
    birth_id = await _in_review(host, sandbox, 10, committed=False)
    assert live(sandbox) == []
    await host.resolve_review(birth_id, operator="clerk 张", send_again=True)
    await host.sync("upload")
    status = await host.birth(birth_id)
    assert status.state == BirthState.REGISTERED and [r["baz726"] for r in live(sandbox)] == [status.registration_number]
    assert [r["resolved_by"] for r in seen.of("collection_result", birth_id)] == [None]  # the centre answered


@pytest.mark.anyio
async def test_review_found_refused_is_refused_with_the_cause(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    host, seen = ward
    birth_id = await _in_review(host, sandbox, 11, committed=False)
    status = await host.resolve_review(birth_id, operator="clerk 张", refused="母亲未参保")
    await host.deliver_due()
    assert status.state == BirthState.REFUSED and status.reason == "母亲未参保"
    [result] = seen.of("collection_result", birth_id)
    assert result["result"].cause == "母亲未参保" and result["resolved_by"] == "clerk 张"
    with pytest.raises(InvalidTransition):  # resolved once; now it is refused, not in review
        await host.resolve_review(birth_id, operator="clerk 张", send_again=True)


@pytest.mark.anyio
async def test_lookups_by_id_serial_and_registration_number(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    host, _ = ward
    twin1 = await host.record_birth({**birth_record(12, number=1), "bke042": "ZY-TWINS-12"})
    twin2 = await host.record_birth({**birth_record(12, number=2, sex="2"), "bke042": "ZY-TWINS-12"})
    sandbox.inject(Fault("http_error", funid=Funid.COLLECT, times=2))
    await host.sync("upload")
    waiting = await host.birth(twin1.birth_id)
    assert waiting.state == BirthState.PENDING and waiting.attempts == 1 and waiting.next_attempt_at is not None
    assert waiting.last_error and [e.outcome for e in waiting.exchanges] == ["unknown"]
    with pytest.raises(BirthNotFound, match="multiple_birth_number"):
        await host.birth("ZY-TWINS-12")
    assert (await host.birth("ZY-TWINS-12", multiple_birth_number=2)).birth_id == twin2.birth_id
    await host.replay()
    await host.sync("upload")
    status = await host.birth(twin1.birth_id)
    assert status.registration_number is not None
    assert (await host.birth(status.registration_number)).birth_id == twin1.birth_id
    assert [e.funid for e in status.exchanges] == [Funid.COLLECT, Funid.COLLECT]
    assert [e.outcome for e in status.exchanges] == ["unknown", "ok"] and status.exchanges[-1].elapsed is not None
    with pytest.raises(BirthNotFound):
        await host.birth("XSE0000000000000")


@pytest.mark.anyio
async def test_past_the_real_name_horizon_a_birth_is_stale_left_out_daily_and_asked_on_demand(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    config = host_config(tmp_path, sandbox, realname_horizon_days=1 / 86400)  # one second
    async with Host(config, entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth_record(13))
        await host.sync("upload")
        number = (await host.birth(recorded.birth_id)).registration_number
        assert number is not None
        host.journal.clock = lambda: time.time() + 2  # two seconds later, for the journal
        asked = sandbox.calls(Funid.REALNAME)
        summary = await host.sync("realname")
        assert summary.get("went_stale") == 1 and sandbox.calls(Funid.REALNAME) == asked  # not asked daily
        assert (await host.birth(recorded.birth_id)).state == BirthState.STALE
        assert (await host.status())["births"] == {"stale": 1}
        await host.sync("realname")
        assert sandbox.calls(Funid.REALNAME) == asked
        sandbox.real_name(number, id_number=with_check_digit("35020320261125003"), name="陈小华")
        summary = await host.sync("stale")
        assert sandbox.calls(Funid.REALNAME) == asked + 1 and summary["real_named"] == 1
        assert (await host.birth(recorded.birth_id)).state == BirthState.REAL_NAMED


@pytest.mark.anyio
async def test_a_review_cannot_take_another_births_number_and_an_all_digit_serial_is_found(
    ward: tuple[Host, Recorder], sandbox: Sandbox
) -> None:
    host, _ = ward
    other = await host.record_birth({**birth_record(14), "bke042": "20240001"})
    await host.sync("upload")
    taken = (await host.birth("20240001")).registration_number  # all digits: a serial, not a birth id
    assert taken is not None and (await host.birth("20240001")).birth_id == other.birth_id
    birth_id = await _in_review(host, sandbox, 15, committed=True)
    with pytest.raises(ResolutionError, match=f"#{other.birth_id}"):
        await host.resolve_review(birth_id, operator="clerk", registration_number=taken, eligible=True)
    assert (await host.birth(birth_id)).state == BirthState.NEEDS_REVIEW
    fresh = await host.record_birth(birth_record(16))
    assert (await host.birth(fresh.birth_id)).next_attempt_at is None  # goes with the next upload, not "1970"


@pytest.mark.anyio
async def test_a_refusal_fixed_in_the_mothers_id_is_the_same_birth_by_its_his_serial(
    ward: tuple[Host, Recorder], sandbox: Sandbox
) -> None:
    """The commonest fix changes the centre's key itself (the mother's ID was mistyped): the HIS
    serial still names the refused birth, so it is amended and sent again, not a second birth."""
    host, seen = ward
    sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="母亲证件号码与姓名不符"))
    first = await host.record_birth(birth_record(17))
    await host.sync("upload")
    fixed = {**birth_record(17), "bkee35": SEED_MOTHERS["not_insured"]}
    again = await host.record_birth(fixed)
    assert (again.birth_id, again.created) == (first.birth_id, False)
    await host.sync("upload")
    status = await host.birth(first.birth_id)
    assert status.state == BirthState.REGISTERED and status.eligible is False
    assert [r["bkee35"] for r in sandbox.registrations()] == [SEED_MOTHERS["not_insured"]]
    assert (await host.status())["births"] == {"registered": 1}


@pytest.mark.anyio
async def test_a_replacement_the_void_would_refuse_journals_nothing(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    """A bad void reason (or a corrected record outside the centre's charset) is refused before
    the replacement is journaled: the registration stays live, and a fixed replacement goes through."""
    host, _ = ward
    first = await host.record_birth(birth_record(20))
    await host.sync("upload")
    corrected = {**birth_record(20), "aac004": "2"}
    for reason in ("", "理由" * 60):
        with pytest.raises(InvalidMessage, match="bae016 作废原因"):
            await host.replace_birth(first.birth_id, corrected, reason, operator="clerk 李")
    outside_gbk = {**corrected, "bkee31": "𠀀芳"}  # a mother's name GBK cannot hold (the config's charset)
    with pytest.raises(InvalidMessage, match="bkee31"):
        await host.replace_birth(first.birth_id, ybplug.load(ybplug.Birth, outside_gbk, charset="gb18030"), "性别录错", operator="clerk 李")
    status = await host.birth(first.birth_id)
    assert status.state == BirthState.REGISTERED and not [a for a in status.actions if a.action == "replace"]
    assert len(live(sandbox)) == 1
    new = await host.replace_birth(first.birth_id, corrected, "性别录错", operator="clerk 李")  # no replacement stuck
    assert new.replaces == first.birth_id


@pytest.mark.anyio
async def test_what_a_person_types_to_name_a_birth_is_never_a_traceback(ward: tuple[Host, Recorder]) -> None:
    host, _ = ward
    first = await host.record_birth(birth_record(21))
    for key in ("\udcff", "a\x00b", "x" * 100_000, "   ", 10**30, 0, -1, "#99999999"):
        with pytest.raises(BirthNotFound):
            await host.birth(key)
    for wrong_type in (None, 1.5, True, b"HIS"):
        with pytest.raises(TypeError, match="looked up by"):
            await host.birth(wrong_type)  # type: ignore[arg-type]
    assert (await host.birth(f"#{first.birth_id}")).birth_id == first.birth_id
    for action in (
        lambda birth_id: host.amend_birth(birth_id, birth_record(21), operator="clerk"),
        lambda birth_id: host.resolve_review(birth_id, operator="clerk", send_again=True),
        lambda birth_id: host.replace_birth(birth_id, birth_record(21), "录错", operator="clerk"),
    ):
        for unknown in (999_999, 10**30):
            with pytest.raises(BirthNotFound):
                await action(unknown)
    for operator in ("", "  ", "\udcff", "x" * 65, "a\nb"):
        with pytest.raises(ResolutionError, match="operator"):
            await host.amend_birth(first.birth_id, birth_record(21), operator=operator)


@pytest.mark.anyio
async def test_a_numeric_serial_and_a_birth_id_that_differ_are_named_not_guessed(ward: tuple[Host, Recorder]) -> None:
    host, _ = ward
    births = [await host.record_birth({**birth_record(30 + n), "bke042": f"S{n}"}) for n in range(3)]
    serial_one = await host.record_birth({**birth_record(40), "bke042": str(births[2].birth_id)})
    with pytest.raises(BirthNotFound, match=f"write #{births[2].birth_id} for the id"):
        await host.birth(str(births[2].birth_id))
    assert (await host.birth(f"#{births[2].birth_id}")).birth_id == births[2].birth_id
    assert (await host.birth(births[2].birth_id)).birth_id == births[2].birth_id  # an int is an id
    assert (await host.birth(str(serial_one.birth_id))).birth_id == serial_one.birth_id  # no other birth has that serial


@pytest.mark.anyio
async def test_a_review_needs_a_cause_to_be_refused(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    host, _ = ward
    birth_id = await _in_review(host, sandbox, 22, committed=True)
    for cause in ("", "   "):
        with pytest.raises(ResolutionError, match="cause"):
            await host.resolve_review(birth_id, operator="clerk", refused=cause)
    number = sandbox.registrations()[-1]["baz726"]
    status = await host.resolve_review(birth_id, operator="clerk", registration_number=number.lower(), eligible=True)
    assert status.state == BirthState.REGISTERED and (await host.birth(number.lower())).birth_id == birth_id


@pytest.mark.anyio
async def test_a_review_takes_only_a_number_the_centre_holds_live(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    """A typo of the right shape, or another newborn's voided number, is refused; the review stays."""
    host, seen = ward
    birth_id = await _in_review(host, sandbox, 23, committed=True)
    with pytest.raises(ResolutionError, match="centre does not know baz726 XSE2612319999999"):
        await host.resolve_review(birth_id, operator="clerk", registration_number="XSE2612319999999", eligible=True)
    gone = await host.record_birth(birth_record(24))
    await host.sync("upload")
    dead = (await host.birth(gone.birth_id)).registration_number
    assert dead is not None
    await host.void(dead, "重复上传")
    with pytest.raises(ResolutionError, match="voided"):
        await host.resolve_review(birth_id, operator="clerk", registration_number=dead, eligible=True)
    status = await host.birth(birth_id)
    assert status.state == BirthState.NEEDS_REVIEW and seen.of("collection_result", birth_id) == []


@pytest.mark.anyio
async def test_an_amend_into_another_births_very_record_says_so(ward: tuple[Host, Recorder]) -> None:
    host, _ = ward
    first = await host.record_birth(birth_record(25))
    other = await host.record_birth(birth_record(26))
    with pytest.raises(BirthConflict) as caught:
        await host.amend_birth(first.birth_id, birth_record(26), operator="clerk")
    assert f"#{other.birth_id}" in str(caught.value) and "the very same data" in str(caught.value)
    assert "other data: ." not in str(caught.value)



@pytest.mark.anyio
async def test_a_review_resolved_with_another_newborns_number_never_hands_the_his_that_childs_identity(
    ward: tuple[Host, Recorder], sandbox: Sandbox
) -> None:
    """The centre confirms a number is live, not whose: a boy's review resolved with a girl's
    number (typed from the wrong line) goes back to review, the number taken off him, when the
    centre real-names the girl; the HIS never receives her identity as his, and her own review
    can then take her number."""
    host, seen = ward
    boy = await _in_review(host, sandbox, 27, committed=False)  # the centre holds nothing of his
    girl = await _in_review(host, sandbox, 28, committed=True, sex="2")  # hers is registered there
    girls_birth_time = (await host.birth(girl)).birth.birth_time
    girls_number = next(r["baz726"] for r in sandbox.registrations() if int(r["aac006"]) == girls_birth_time)
    await host.resolve_review(boy, operator="clerk", registration_number=girls_number, eligible=True)  # the wrong line
    sandbox.real_name(girls_number, id_number=with_check_digit("35020320261125004"), name="陈小红", sex="2")
    await host.sync("realname")
    status = await host.birth(boy)
    assert status.state == BirthState.NEEDS_REVIEW and status.registration_number is None
    assert "probably another newborn's" in (status.reason or "")
    assert seen.of("realname_resolved") == []  # her identity never reached the HIS as his
    assert [r["reason"] for r in seen.of("birth_needs_review", boy)][-1] == status.reason
    await host.resolve_review(girl, operator="clerk", registration_number=girls_number, eligible=True)
    await host.sync("realname")
    assert (await host.birth(girl)).state == BirthState.REAL_NAMED
    assert len(seen.of("realname_resolved")) == len(seen.of("realname_resolved", girl)) == 1
    with pytest.raises(ResolutionError, match="probably another newborn's"):  # and now the centre can tell
        await host.resolve_review(boy, operator="clerk", registration_number=girls_number, eligible=True)


@pytest.mark.anyio
async def test_a_correction_is_sent_alone_not_with_the_days_waiting_births(ward: tuple[Host, Recorder], sandbox: Sandbox) -> None:
    """Daily mode: the day's births wait for 02:00; a clerk's amend of a refused birth goes now, alone."""
    host, _ = ward
    refused = await host.record_birth(birth_record(31))
    sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="母亲证件号码错误"))
    await host.sync("upload", births=[refused.birth_id])
    waiting = [await host.record_birth(birth_record(32 + n)) for n in range(3)]
    await host.amend_birth(refused.birth_id, {**birth_record(31), "bkee33": "13800138001"}, operator="clerk")
    summary = await host.sync("upload", births=[refused.birth_id])
    assert summary["uploaded"] == 1 and (await host.birth(refused.birth_id)).state == BirthState.REGISTERED
    assert [(await host.birth(w.birth_id)).state for w in waiting] == [BirthState.PENDING] * 3
    assert sandbox.calls(Funid.COLLECT) == 2
