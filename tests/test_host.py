"""The host against the sandbox over loopback: the flow, the hooks, the journal's guarantees."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import ybplug
from ybplug.caller import PluginError
from ybplug.hooks import hookimpl
from ybplug.host import Host, Refused
from ybplug.journal import BirthState
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Fault, Sandbox
from ybplug.wire import AuthenticationFailed

from support import birth_record as birth
from support import host_config

COLLECT = "yb04.13.01.21"




config = host_config


class Recorder:
    """A hospital plugin that remembers every delivery it got (async and sync hooks mixed)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == hook]

    @hookimpl
    async def birth_recorded(self, birth: ybplug.Birth, birth_id: int, event_id: str) -> None:
        self.calls.append(("birth_recorded", {"birth": birth, "birth_id": birth_id, "event_id": event_id}))

    @hookimpl
    def collection_result(self, birth: ybplug.Birth, result: ybplug.CollectionResult, birth_id: int, event_id: str) -> None:
        self.calls.append(("collection_result", {"birth": birth, "result": result, "birth_id": birth_id, "event_id": event_id}))

    @hookimpl
    async def birth_needs_review(self, reason: str, birth_id: int, event_id: str) -> None:
        self.calls.append(("birth_needs_review", {"reason": reason, "birth_id": birth_id, "event_id": event_id}))

    @hookimpl
    async def realname_resolved(self, record: ybplug.RealNameRecord, birth_id: int, event_id: str) -> None:
        self.calls.append(("realname_resolved", {"record": record, "birth_id": birth_id, "event_id": event_id}))

    @hookimpl
    async def collection_voided(self, registration_number: str, reason: str, birth_id: int | None, event_id: str) -> None:
        self.calls.append(("collection_voided", {"registration_number": registration_number, "reason": reason, "birth_id": birth_id}))

    @hookimpl
    def ybplug_transaction(self, funid: str, outcome: str, elapsed: float, transaction_id: int) -> None:
        self.calls.append(("ybplug_transaction", {"funid": funid, "outcome": outcome, "elapsed": elapsed}))


@pytest.mark.anyio
async def test_whole_flow_delivers_each_hook_with_its_arguments(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    seen = Recorder()
    async with Host(config(tmp_path, sandbox, journal=journal_at), plugins=[seen], entry_points=False) as host:
        twins = [await host.record_birth(birth(1, number=1)), await host.record_birth(birth(1, number=2, sex="2"))]
        other = await host.record_birth(birth(2, mother="not_insured"))
        summary = await host.sync("upload")
        assert summary["uploaded"] == 3

        results = {c["birth_id"]: c for c in seen.of("collection_result")}
        assert set(results) == {twins[0].birth_id, twins[1].birth_id, other.birth_id}
        sandbox_numbers = {r["baz726"] for r in sandbox.registrations()}
        first = results[twins[0].birth_id]["result"]
        assert first.ok and first.eligible and first.registration_number in sandbox_numbers
        assert results[twins[1].birth_id]["birth"].newborn_name == "陈静之女"
        not_insured = results[other.birth_id]["result"]
        assert not_insured.ok and not not_insured.eligible and not_insured.ineligibility_reason == "母亲未参保"
        assert {c["birth_id"] for c in seen.of("birth_recorded")} == set(results)

        sandbox.real_name(first.registration_number, id_number=ybplug.fields.with_check_digit("35020320261125001"), name="陈小宝")
        summary = await host.sync("realname")
        assert summary["real_named"] == 1
        [resolved] = seen.of("realname_resolved")
        assert resolved["birth_id"] == twins[0].birth_id and resolved["record"].name == "陈小宝"

        second = results[twins[1].birth_id]["result"].registration_number
        voided = await host.void(second, "重复上传")
        assert voided.ok
        [void_event] = seen.of("collection_voided")
        assert void_event == {"registration_number": second, "reason": "重复上传", "birth_id": twins[1].birth_id}
        with pytest.raises(Refused, match="already"):
            await host.void(second, "again")

        status = await host.status()
        assert status["births"] == {"real_named": 1, "voided": 1, "registered": 1}
        observed = seen.of("ybplug_transaction")
        assert {o["funid"] for o in observed} >= {COLLECT, "yb04.13.01.22", "yb04.13.01.24"}
        assert all(o["outcome"] in ("ok", "refused") for o in observed)


@pytest.mark.anyio
async def test_recording_the_same_birth_again_never_uploads_twice(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(config(tmp_path, sandbox, journal=journal_at), entry_points=False) as host:
        first = await host.record_birth(birth(5))
        again = await host.record_birth(birth(5))
        assert again.birth_id == first.birth_id and first.created and not again.created
        await host.sync("upload")
        after = await host.record_birth(birth(5))
        assert after.state == BirthState.REGISTERED and after.registration_number
        await host.sync("upload")
    assert sandbox.calls(COLLECT) == 1


@pytest.mark.anyio
async def test_invalid_birth_is_refused_by_field_and_nothing_accepted_is_lost(tmp_path: Path, sandbox: Sandbox) -> None:
    async with Host(config(tmp_path, sandbox), entry_points=False) as host:
        good = await host.record_birth(birth(7))
        bad = birth(8)
        bad["bkee35"] = bad["bkee35"][:-1] + ("0" if bad["bkee35"][-1] != "0" else "1")
        with pytest.raises(ybplug.InvalidMessage, match="bkee35 母亲证件号码: check digit is wrong"):
            await host.record_birth(bad)
        status = await host.status()
        assert status["births"] == {"pending": 1}
        assert (await host.run_journal(host.journal.birth, good.birth_id)).state == BirthState.PENDING


class Flaky:
    """The hospital's database is down for the first ``failures`` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.event_ids: list[str] = []

    @hookimpl
    async def collection_result(self, event_id: str) -> None:
        self.event_ids.append(event_id)
        if len(self.event_ids) <= self.failures:
            raise ConnectionError("HIS database is down")


@pytest.mark.anyio
async def test_failed_delivery_is_retried_with_the_same_event_id(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    flaky = Flaky(failures=2)
    async with Host(config(tmp_path, sandbox, journal=journal_at), plugins=[flaky], entry_points=False) as host:
        await host.record_birth(birth(10))
        await host.sync("upload")
        with anyio.fail_after(5):
            while len(flaky.event_ids) < 3:
                await anyio.sleep(0.05)
        assert len(set(flaky.event_ids)) == 1
        await anyio.sleep(0.3)
        assert len(flaky.event_ids) == 3  # delivered once it succeeded, not again
        assert (await host.status())["deliveries"] == {"delivered": 1}


@pytest.mark.anyio
async def test_delivery_is_parked_after_its_attempts_and_replayed(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    flaky = Flaky(failures=3)
    async with Host(config(tmp_path, sandbox, journal=journal_at, delivery_attempts=3), plugins=[flaky], entry_points=False) as host:
        await host.record_birth(birth(11))
        await host.sync("upload")
        with anyio.fail_after(5):
            while not (await host.status())["parked"]:
                await anyio.sleep(0.05)
        [parked] = (await host.status())["parked"]
        assert parked["hook"] == "collection_result" and "HIS database is down" in parked["error"]
        assert await host.replay() == 1
        await host.deliver_due()
        assert (await host.status())["parked"] == []
        assert len(flaky.event_ids) == 4 and len(set(flaky.event_ids)) == 1


class Hangs:
    @hookimpl
    async def collection_result(self) -> None:
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_hanging_plugin_does_not_stop_the_others(tmp_path: Path, sandbox: Sandbox) -> None:
    seen = Recorder()
    async with Host(config(tmp_path, sandbox, hook_timeout=0.3), plugins=[Hangs(), seen], entry_points=False) as host:
        await host.record_birth(birth(12))
        with anyio.fail_after(5):
            await host.sync("upload")
        assert len(seen.of("collection_result")) == 1
        status = await host.status()
        assert status["deliveries"].get("pending", 0) >= 1  # the hanging one waits for a retry


@pytest.mark.anyio
async def test_reply_lost_after_commit_goes_to_review_not_to_a_second_registration(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    seen = Recorder()
    sandbox.inject(Fault(kind="drop_after_commit", funid=COLLECT, times=1))
    async with Host(config(tmp_path, sandbox, journal=journal_at), plugins=[seen], entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(20))
        summary = await host.sync("upload")
        assert summary["upload_failed"] == 1
        await anyio.sleep(0.1)  # the backoff
        summary = await host.sync("upload")
        assert summary["needs_review"] == 1
        row = await host.run_journal(host.journal.birth, recorded.birth_id)
        assert row.state == BirthState.NEEDS_REVIEW and "earlier upload" in (row.reason or "")
        [review] = seen.of("birth_needs_review")
        assert review["birth_id"] == recorded.birth_id
        assert seen.of("collection_result") == []
    assert len(sandbox.registrations()) == 1


@pytest.mark.anyio
async def test_server_error_and_unreachable_centre_are_retried_until_registered(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    sandbox.inject(Fault(kind="http_error", funid=COLLECT, times=1, status=503))
    async with Host(config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(21))
        assert (await host.sync("upload"))["upload_failed"] == 1
        await anyio.sleep(0.1)
        assert (await host.sync("upload"))["uploaded"] == 1
        assert (await host.run_journal(host.journal.birth, recorded.birth_id)).state == BirthState.REGISTERED

    closed = config(tmp_path / "b", sandbox)
    closed.wire.url = "http://127.0.0.1:9"  # nothing listens on the discard port
    async with Host(closed, entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(22))
        assert (await host.sync("upload"))["upload_failed"] == 1
        row = await host.run_journal(host.journal.birth, recorded.birth_id)
        assert row.state == BirthState.PENDING and row.attempts == 1
    assert len(sandbox.registrations()) == 1


@pytest.mark.anyio
async def test_wrong_password_is_a_clear_error(tmp_path: Path, sandbox: Sandbox) -> None:
    wrong = config(tmp_path, sandbox)
    wrong.wire.pwd = "not-the-password"
    async with Host(wrong, entry_points=False) as host:
        await host.record_birth(birth(30))
        with pytest.raises(AuthenticationFailed, match="check usr/pwd"):
            await host.sync("upload")
        assert (await host.status())["births"] == {"pending": 1}


class ReplacesTheWire:
    """A hospital whose vendor wraps the envelope differently supplies its own transport."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def ybplug_transport(self, config: Any) -> Any:
        plugin = self

        class Canned:
            async def call(self, funid: str, data: dict[str, Any]) -> Any:
                plugin.calls.append(funid)
                from ybplug.wire import CentreReply

                return CentreReply(flag=1, cause="", data={"baz726": "XSE0000000000042", "bkee45": "1"})

            async def aclose(self) -> None:
                pass

        return Canned()


@pytest.mark.anyio
async def test_a_hospital_transport_wins_over_the_default(tmp_path: Path, sandbox: Sandbox) -> None:
    wire = ReplacesTheWire()
    seen = Recorder()
    async with Host(config(tmp_path, sandbox), plugins=[wire, seen], entry_points=False) as host:
        await host.record_birth(birth(40))
        await host.sync("upload")
    assert wire.calls == [COLLECT]
    assert seen.of("collection_result")[0]["result"].registration_number == "XSE0000000000042"
    assert sandbox.calls(COLLECT) == 0


class Misspelled:
    @hookimpl
    def colection_result(self) -> None:  # one "l": must fail at start-up, not be ignored
        pass


@pytest.mark.anyio
async def test_a_misspelled_hook_fails_at_start_up(tmp_path: Path, sandbox: Sandbox) -> None:
    with pytest.raises(PluginError, match="colection_result"):
        async with Host(config(tmp_path, sandbox), plugins=[Misspelled()], entry_points=False):
            pass


@pytest.mark.anyio
async def test_ybplug_plugins_limits_what_loads(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YBPLUG_PLUGINS", "ybplug.transport,ybplug.collection")
    async with Host(config(tmp_path, sandbox), entry_points=False) as host:
        names = {host.pm.get_name(p) for p in host.pm.get_plugins()}
        assert names == {"ybplug.transport", "ybplug.collection"}


@pytest.mark.anyio
async def test_immediate_mode_uploads_without_sync(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    seen = Recorder()
    async with Host(config(tmp_path, sandbox, journal=journal_at, upload="immediate"), plugins=[seen], entry_points=False) as host:
        await host.record_birth(birth(50))
        with anyio.fail_after(5):
            while not seen.of("collection_result"):
                await anyio.sleep(0.02)
    assert len(sandbox.registrations()) == 1


@pytest.mark.anyio
async def test_realname_polls_in_batches_of_the_configured_size(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(config(tmp_path, sandbox, journal=journal_at, realname_batch=2), entry_points=False) as host:
        for n in range(5):
            await host.record_birth(birth(60 + n))
        await host.sync("upload")
        before = sandbox.calls("yb04.13.01.24")
        summary = await host.sync("realname")
        assert summary["realname_checked"] == 5
        assert sandbox.calls("yb04.13.01.24") - before == 3


def test_journal_keeps_the_reply_of_every_exchange(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Sandbox(tmp_path / "sandbox.db") as sandbox:
            async with Host(config(tmp_path, sandbox), entry_points=False) as host:
                await host.record_birth(birth(70))
                await host.sync("upload")

    anyio.run(scenario)
    db = sqlite3.connect(tmp_path / "journal.db")
    [(funid, outcome, reply)] = db.execute("SELECT funid, outcome, reply FROM exchanges").fetchall()
    assert funid == COLLECT and outcome == "ok"
    assert msgspec.json.decode(reply)["baz726"].startswith("XSE")


@pytest.mark.anyio
async def test_daily_mode_leaves_new_births_for_the_next_run_but_retries_failed_ones(
    tmp_path: Path, sandbox: Sandbox, journal_at: str
) -> None:
    from datetime import datetime, timedelta

    from ybplug.fields import CHINA_TIME
    from ybplug.plugins.collection import last_slot

    now = datetime(2026, 11, 25, 8, 30, tzinfo=CHINA_TIME)
    assert last_slot(2, 0, now) == datetime(2026, 11, 25, 2, 0, tzinfo=CHINA_TIME)
    assert last_slot(9, 0, now) == datetime(2026, 11, 24, 9, 0, tzinfo=CHINA_TIME)

    slot = (datetime.now(CHINA_TIME) - timedelta(minutes=1)).strftime("%H:%M")
    sandbox.inject(Fault(kind="http_error", funid=COLLECT, times=1))
    async with Host(config(tmp_path, sandbox, upload=f"daily at {slot}"), entry_points=False) as host:
        failed = await host.record_birth(birth(80))
        assert (await host.sync("upload"))["upload_failed"] == 1  # now it is a retry
        fresh = await host.record_birth(birth(81))
        with anyio.fail_after(5):  # the background schedule retries the failed one on its backoff
            while (await host.run_journal(host.journal.birth, failed.birth_id)).state != BirthState.REGISTERED:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        # recorded after today's slot: waits for tomorrow's run (or host.sync)
        assert (await host.run_journal(host.journal.birth, fresh.birth_id)).state == BirthState.PENDING


class LeaksInItsError:
    @hookimpl
    def collection_result(self, birth: ybplug.Birth) -> None:
        raise RuntimeError(f"duplicate key (mother)=({birth.mother_id_number}), phone 13800138000")


@pytest.mark.anyio
async def test_a_plugin_error_quoting_personal_data_is_logged_masked(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with Host(config(tmp_path, sandbox), plugins=[LeaksInItsError()], entry_points=False) as host:
        await host.record_birth(birth(90))
        await host.sync("upload")
    from ybplug.sandbox import SEED_MOTHERS

    assert "duplicate key" in caplog.text  # the error is reported...
    assert SEED_MOTHERS["local"] not in caplog.text and "13800138000" not in caplog.text  # ...masked


class Hospital:
    """The same hospital plugin across two hosts: the first hangs, the second works."""

    ybplug_name = "hospital"

    def __init__(self, hangs: bool) -> None:
        self.hangs = hangs
        self.got: list[str] = []

    @hookimpl
    async def collection_result(self, event_id: str) -> None:
        if self.hangs:
            await anyio.sleep_forever()
        self.got.append(event_id)


@pytest.mark.anyio
async def test_a_host_restarted_in_the_same_process_takes_over_claims_at_once(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    first = Hospital(hangs=True)
    async with Host(config(tmp_path, sandbox, journal=journal_at, hook_timeout=30.0), plugins=[first], entry_points=False) as host:
        await host.record_birth(birth(95))
        # host.sync would wait for the stuck delivery; run only the upload job
        await host.caller.call_each("ybplug_sync", timeout=None, host=host, job="upload", births=None)
        await anyio.sleep(0.2)  # the answer's delivery is now stuck in the hanging plugin
    second = Hospital(hangs=False)
    async with Host(config(tmp_path, sandbox, journal=journal_at), plugins=[second], entry_points=False) as host:
        with anyio.fail_after(5):  # not the 120 s lease
            while not second.got:
                await host.deliver_due()
                await anyio.sleep(0.05)


class StartsFaultyWork:
    """A hospital plugin whose own background work dies of a bug quoting an ID number."""

    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        async def faulty() -> None:
            raise ValueError("no such mother: 350204198001010001")

        host.start_soon(faulty, name="hospital cache refresh")


@pytest.mark.anyio
async def test_a_bug_in_background_work_is_logged_masked_and_the_host_goes_on(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Recorder()
    plugins = [StartsFaultyWork(), seen]
    async with Host(config(tmp_path, sandbox, upload="immediate"), plugins=plugins, entry_points=False) as host:
        await anyio.sleep(0.1)  # the faulty work has died by now
        await host.record_birth(birth(51))
        with anyio.fail_after(5):
            while not seen.of("collection_result"):
                await anyio.sleep(0.02)
        assert host.failure is None
    assert len(sandbox.registrations()) == 1
    line = next(r.getMessage() for r in caplog.records if "hospital cache refresh" in r.getMessage())
    assert "a bug" in line and "Traceback" in line and "ValueError" in line
    assert "350204198001010001" not in caplog.text and "3502**********0001" in line


@pytest.mark.anyio
async def test_a_bug_in_the_upload_schedule_is_retried_not_the_end_of_uploads(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.inject(Fault(kind="http_error", funid=COLLECT, times=1, status=503))
    seen = Recorder()
    async with Host(config(tmp_path, sandbox), plugins=[seen], entry_points=False) as host:
        claim = host.records.claim_births
        bugs: list[Exception] = []

        async def buggy_claim(*args: Any, **kwargs: Any) -> Any:
            if bugs:
                raise bugs.pop()
            return await claim(*args, **kwargs)

        host.records.claim_births = buggy_claim  # type: ignore[method-assign]
        await host.record_birth(birth(52))
        assert (await host.sync("upload"))["upload_failed"] == 1  # the schedule retries it on its backoff...
        bugs.append(KeyError("a bug of ours"))  # ...and its first try meets a bug (no await since the sync)
        with anyio.fail_after(10):
            while not seen.of("collection_result"):
                await anyio.sleep(0.05)
        assert host.failure is None
    assert not bugs and len(sandbox.registrations()) == 1
    assert any("upload stopped: a bug" in r.getMessage() and "KeyError" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_births_waiting_in_a_claimed_batch_past_their_lease_are_not_sent_twice(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """A slow centre, one upload at a time, a batch that outlasts the lease: a second worker takes
    over the births still waiting; the first renews each birth's lease before sending it, and
    leaves alone those taken over, so none is sent by both."""
    sandbox.inject(Fault(kind="latency", funid=COLLECT, seconds=0.5, times=None))
    wire = ybplug.config.WireConfig(url=sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD, read_timeout=1.0, connect_timeout=1.0)
    first, second = (
        config(tmp_path, sandbox, upload_batch=8, upload_concurrency=1, lease=2.5, hook_timeout=1.0, wire=wire)
        for _ in range(2)
    )
    async with Host(first, entry_points=False, background=False) as a, Host(second, entry_points=False, background=False) as b:
        for n in range(8):
            await a.record_birth(birth(60 + n))
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.sync, "upload")
            await anyio.sleep(2.8)  # A's batch holds all eight (4 s of uploads); their leases end at 2.5 s
            tg.start_soon(b.sync, "upload")
        states = [(await a.birth(i)).state for i in range(1, 9)]
    assert states == [BirthState.REGISTERED] * 8  # none sent twice ("duplicate" would send it to review)
    assert len(sandbox.registrations()) == 8
    assert sandbox.calls(COLLECT) == 8  # each sent once, by one worker


@pytest.mark.anyio
@pytest.mark.parametrize("charset", ["gbk", "gb18030"])
async def test_a_void_reason_is_checked_in_the_configured_charset(tmp_path: Path, charset: str) -> None:
    """Under gbk a reason outside GBK is refused here, naming bae016, before anything leaves (it
    went to the centre unchecked); under gb18030 the void goes through (the sandbox judging alike)."""
    async with Sandbox(tmp_path / "centre.db", charset=charset) as centre:
        async with Host(config(tmp_path, centre, charset=charset), entry_points=False) as host:
            await host.record_birth(birth(3))
            assert (await host.sync("upload"))["uploaded"] == 1
            [registered] = centre.registrations()
            if charset == "gbk":
                with pytest.raises(ybplug.InvalidMessage, match="bae016") as refused:
                    await host.void(registered["baz726"], "重复𠀀")
                assert "GBK" in str(refused.value)
                [still] = centre.registrations()
                assert not still["voided"]
                journal = sqlite3.connect(tmp_path / "journal.db")
                assert journal.execute("SELECT count(*) FROM exchanges WHERE funid = 'yb04.13.01.22'").fetchone() == (0,)
            else:
                assert (await host.void(registered["baz726"], "重复𠀀")).ok
                assert centre.registrations()[0]["bae016"] == "重复𠀀"


@pytest.mark.anyio
async def test_answers_that_cannot_be_read_are_retried_then_go_to_a_person(tmp_path: Path, sandbox: Sandbox) -> None:
    """Issue 9's rule for an ill-formed reply: an unknown outcome, retried, then needs review;
    a lost reply (HTTP 503) in between starts the count again."""
    seen = Recorder()
    sandbox.inject(
        Fault(kind="malformed", funid=COLLECT, times=2),
        Fault(kind="http_error", funid=COLLECT, times=1, status=503),
        Fault(kind="malformed", funid=COLLECT, times=3),
    )
    async with Host(config(tmp_path, sandbox), plugins=[seen], entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(70))
        for attempt in range(1, 6):
            await host.sync("upload")
            status = await host.birth(recorded.birth_id)
            assert status.state == BirthState.PENDING and status.attempts == attempt  # retried
            await anyio.sleep(0.25)  # past the upload backoff
        assert (await host.sync("upload"))["needs_review"] == 1  # the third unreadable answer in a row
        status = await host.birth(recorded.birth_id)
        assert status.state == BirthState.NEEDS_REVIEW and "3 times" in (status.reason or "")
        assert [e.outcome for e in status.exchanges] == ["unknown"] * 6
        [review] = seen.of("birth_needs_review")
        assert review["birth_id"] == recorded.birth_id


class CentreWithOddEligibility:
    """A transport whose registrations carry a bkee45 the spec does not allow."""

    def __init__(self, eligibility: Any) -> None:
        self.eligibility = eligibility

    @hookimpl
    def ybplug_transport(self, config: Any) -> Any:
        plugin = self

        class Canned:
            async def call(self, funid: str, data: dict[str, Any]) -> Any:
                from ybplug.wire import CentreReply

                reply = {"baz726": "XSE0000000000043"} | ({} if plugin.eligibility is None else {"bkee45": plugin.eligibility})
                return CentreReply(flag=1, cause="", data=reply)

            async def aclose(self) -> None:
                pass

        return Canned()


@pytest.mark.anyio
@pytest.mark.parametrize("eligibility", ["7", None])
async def test_a_registration_with_an_odd_bkee45_is_registered_with_eligibility_unknown_and_said(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, eligibility: Any
) -> None:
    async with Host(config(tmp_path, sandbox), plugins=[CentreWithOddEligibility(eligibility)], entry_points=False) as host:
        recorded = await host.record_birth(birth(41))
        await host.sync("upload")
        status = await host.birth(recorded.birth_id)
    assert status.state == BirthState.REGISTERED and status.registration_number == "XSE0000000000043"
    assert status.eligible is None  # unknown, not "not eligible"
    assert any("bkee45 是否可预参保" in r.getMessage() and "unknown" in r.getMessage() for r in caplog.records)


class StartsWorkFromItsThread:
    """A plain (not async) ybplug_startup, run in the hook caller's thread, starting background work."""

    def __init__(self) -> None:
        self.ran = threading.Event()

    @hookimpl
    def ybplug_startup(self, host: Host) -> None:
        async def refresh() -> None:
            self.ran.set()

        host.start_soon(refresh, name="hospital refresh")


@pytest.mark.anyio
async def test_a_plain_startup_hook_can_start_background_work(tmp_path: Path, sandbox: Sandbox) -> None:
    plugin = StartsWorkFromItsThread()
    async with Host(config(tmp_path, sandbox), plugins=[plugin], entry_points=False):
        with anyio.fail_after(5):
            while not plugin.ran.is_set():
                await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_a_void_of_something_that_is_not_a_baz726_never_leaves(tmp_path: Path, sandbox: Sandbox) -> None:
    async with Host(config(tmp_path, sandbox), entry_points=False, background=False) as host:
        for typed in ("6", "DAY-0030", "陈静", "XSE12", ""):
            with pytest.raises(ybplug.InvalidMessage, match="baz726 新生儿登记流水号"):
                await host.void(typed, "重复上传")
        recorded = await host.record_birth(birth(42))
        await host.sync("upload")
        number = (await host.birth(recorded.birth_id)).registration_number
        assert number is not None
        assert (await host.void(number.lower(), "重复上传")).ok  # any case
    assert sandbox.calls("yb04.13.01.22") == 1
