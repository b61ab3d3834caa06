"""Regression tests for the holes found when the journal was attacked ("Nothing silently lost or
wrong"): each reproduces what a hospital saw, against the sandbox over loopback, the journal on
disk and, where processes are involved, real ``ybplug`` processes."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

import ybplug
from ybplug.codes import Funid
from ybplug.fields import with_check_digit
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.journal import BirthState, JournalError, JournalFull, JournalLost
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Fault, Sandbox

from support import birth_record as birth
from support import host_config

YBPLUG = str(Path(sys.executable).parent / "ybplug")


class Hospital:
    """A hospital plugin under a stable name, remembering what it was given."""

    ybplug_name = "st_mary"

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.events if name == hook]

    @hookimpl
    async def collection_result(self, result: ybplug.CollectionResult, birth_id: int, event_id: str) -> None:
        self.events.append(("collection_result", {"result": result, "birth_id": birth_id, "event_id": event_id}))

    @hookimpl
    async def realname_resolved(self, record: ybplug.RealNameRecord, birth_id: int, event_id: str) -> None:
        self.events.append(("realname_resolved", {"record": record, "birth_id": birth_id, "event_id": event_id}))

    @hookimpl
    async def collection_voided(self, registration_number: str, birth_id: int | None, event_id: str) -> None:
        self.events.append(("collection_voided", {"registration_number": registration_number, "event_id": event_id}))


def events_of(tmp_path: Path, hook: str) -> list[tuple[str, int]]:
    db = sqlite3.connect(tmp_path / "journal.db")
    try:
        return db.execute("SELECT id, birth_id FROM events WHERE hook = ?", (hook,)).fetchall()
    finally:
        db.close()


def write_config(tmp_path: Path, sandbox: Sandbox, **extra: str) -> Path:
    lines = [
        'journal = "journal.db"', 'upload = "immediate"', "delivery_backoff = 0.05", "delivery_backoff_cap = 0.2",
        "upload_backoff = 0.05", "upload_backoff_cap = 0.2", "hook_timeout = 1",
        *(f"{key} = {value}" for key, value in extra.items()),
        "[wire]", f'url = "{sandbox.url}"', f'usr = "{SANDBOX_USR}"', f'pwd = "{SANDBOX_PWD}"', "read_timeout = 5",
    ]
    path = tmp_path / "ybplug.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ybplug_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "YBPLUG_EXAMPLE_DB": str(cwd / "hospital.db"), **env}
    if "YBPLUG_PLUGINS" not in env:
        environ.pop("YBPLUG_PLUGINS", None)
    return subprocess.run([YBPLUG, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=environ)


async def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``ybplug`` as a real process, off the event loop the sandbox serves on."""
    return await anyio.to_thread.run_sync(lambda: ybplug_cli(*args, cwd=cwd, **env))


# --- 1. durable subscriptions ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_events_for_a_plugin_not_loaded_wait_for_it_and_reach_it_later(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    config = host_config(tmp_path, sandbox, journal=journal_at)
    async with Host(config, plugins=[Hospital()], entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(1))
    async with Host(config, entry_points=False, background=False) as host:  # uploaded without it
        assert (await host.sync("upload"))["uploaded"] == 1
        status = await host.status()
    assert status["subscribers"]["st_mary"]["pending"] == 1

    later = Hospital()
    async with Host(config, plugins=[later], entry_points=False, background=False) as host:
        await host.deliver_due()
        assert (await host.status())["subscribers"]["st_mary"].get("pending", 0) == 0
    [answer] = later.of("collection_result")
    assert answer["birth_id"] == recorded.birth_id
    assert answer["result"].registration_number == sandbox.registrations()[0]["baz726"]


@pytest.mark.anyio
async def test_an_operator_sync_without_the_hospital_plugin_loses_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    write_config(tmp_path, sandbox)
    first = await cli("init", "-c", "ybplug.toml", cwd=tmp_path)  # a host with the plugin loaded it once
    assert first.returncode == 0, first.stderr
    started = await cli("sync", "-c", "ybplug.toml", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    config = ybplug.Config.load(tmp_path / "ybplug.toml")
    config.upload = "daily at 02:00"
    async with Host(config, entry_points=False, background=False) as host:
        await host.record_birth(birth(2))

    narrow = await cli("sync", "upload", "-c", "ybplug.toml", cwd=tmp_path, YBPLUG_PLUGINS="ybplug.transport,ybplug.collection")
    assert narrow.returncode == 0, narrow.stderr
    status = await cli("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert "waiting:     1 deliveries for plugin example_hospital" in status.stdout, status.stdout

    retry = await cli("retry", "-c", "ybplug.toml", cwd=tmp_path)
    assert retry.returncode == 0, retry.stderr
    hospital = sqlite3.connect(tmp_path / "hospital.db")
    assert hospital.execute("SELECT baz726 FROM registrations").fetchall() == [(sandbox.registrations()[0]["baz726"],)]


def test_forgetting_a_plugin_is_an_explicit_journaled_act(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert ybplug_cli("sync", "realname", "-c", "ybplug.toml", cwd=tmp_path).returncode in (0, 1)
    db = sqlite3.connect(tmp_path / "journal.db")
    assert ("example_hospital",) in db.execute("SELECT DISTINCT plugin FROM subscriptions").fetchall()
    unknown = ybplug_cli("plugins", "forget", "no_such_plugin", "-c", "ybplug.toml", cwd=tmp_path)
    assert unknown.returncode == 2 and "example_hospital" in unknown.stderr and "Traceback" not in unknown.stderr
    done = ybplug_cli("plugins", "forget", "example_hospital", "--operator", "王工", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert db.execute("SELECT count(*) FROM subscriptions WHERE forgotten_at IS NULL AND plugin = 'example_hospital'").fetchone() == (0,)
    assert db.execute("SELECT operator, action FROM actions").fetchall() == [("王工", "forget plugin")]


def test_ybplug_plugins_naming_an_unknown_plugin_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    done = ybplug_cli("sync", "-c", "ybplug.toml", cwd=tmp_path, YBPLUG_PLUGINS="ybplug.transport,example_hospitl")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "example_hospitl" in line and "example_hospital" in line


# --- 2. realname_resolved once, whoever polls ----------------------------------------------------


@pytest.mark.anyio
async def test_two_pollers_at_once_emit_realname_resolved_once(tmp_path: Path, sandbox: Sandbox) -> None:
    config = host_config(tmp_path, sandbox)
    seen = Hospital()
    async with Host(config, plugins=[seen], entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(3))
        await host.sync("upload")
    baz726 = sandbox.registrations()[0]["baz726"]
    sandbox.real_name(baz726, id_number=with_check_digit("35020320261125001"), name="陈小宝")
    sandbox.inject(Fault(kind="latency", funid=Funid.REALNAME, times=2, seconds=0.3))  # both in flight at once

    async with Host(config, plugins=[seen], entry_points=False, background=False) as one:
        async with Host(config, plugins=[seen], entry_points=False, background=False) as two:
            summaries: list[dict[str, int]] = []

            async def poll(host: Host) -> None:
                summaries.append(await host.sync("realname"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(poll, one)
                tg.start_soon(poll, two)
    assert sandbox.calls(Funid.REALNAME) == 2
    assert sorted(s["real_named"] for s in summaries) == [0, 1]
    assert events_of(tmp_path, "realname_resolved") == [(events_of(tmp_path, "realname_resolved")[0][0], recorded.birth_id)]
    assert len(seen.of("realname_resolved")) == 1


# --- 3. in doubt, then refused for another reason: review, never refused --------------------------


@pytest.mark.anyio
async def test_an_upload_in_doubt_then_refused_goes_to_review_with_every_answer(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(4))
        sandbox.inject(Fault(kind="drop_after_commit", funid=Funid.COLLECT))
        assert (await host.sync("upload"))["upload_failed"] == 1  # the centre registered it; the reply was lost
        sandbox.inject(Fault(kind="refuse", funid=Funid.COLLECT, cause="系统繁忙"))
        await host.replay()
        summary = await host.sync("upload")
        row = await host.run_journal(host.journal.birth, recorded.birth_id)
    assert summary["needs_review"] == 1
    assert row.state == BirthState.NEEDS_REVIEW
    assert "系统繁忙" in (row.reason or "") and "unknown" in (row.reason or "")
    assert [r["voided"] for r in sandbox.registrations()] == [False]  # the centre does hold it


@pytest.mark.anyio
async def test_a_refusal_never_in_doubt_is_a_refusal(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(5))
        sandbox.inject(Fault(kind="http_error", funid=Funid.COLLECT, status=404))  # surely not delivered
        await host.sync("upload")
        sandbox.inject(Fault(kind="refuse", funid=Funid.COLLECT, cause="系统繁忙"))
        await host.replay()
        await host.sync("upload")
        row = await host.run_journal(host.journal.birth, recorded.birth_id)
    assert row.state == BirthState.REFUSED and row.reason == "系统繁忙"


# --- 5. a void whose reply was lost ----------------------------------------------------------------


@pytest.mark.anyio
async def test_already_void_after_a_lost_void_reply_is_recorded_as_the_void(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    seen = Hospital()
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), plugins=[seen], entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(6))
        await host.sync("upload")
        baz726 = sandbox.registrations()[0]["baz726"]
        sandbox.inject(Fault(kind="drop_after_commit", funid=Funid.VOID))
        with pytest.raises(ybplug.Error) as lost:
            await host.void(baz726, "重复上传")
        assert lost.value.outcome == ybplug.Outcome.UNKNOWN
        result = await host.void(baz726, "重复上传")  # the operator tries again: "already void"
        row = await host.run_journal(host.journal.birth, recorded.birth_id)
    assert result.ok and row.state == BirthState.VOIDED
    assert [v["registration_number"] for v in seen.of("collection_voided")] == [baz726]


@pytest.mark.anyio
async def test_already_void_without_a_lost_reply_is_still_refused(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        await host.record_birth(birth(7))
        await host.sync("upload")
        baz726 = sandbox.registrations()[0]["baz726"]
        await host.void(baz726, "重复上传")
        with pytest.raises(ybplug.Error, match="already void"):
            await host.void(baz726, "重复上传")


# --- 6. a journal deleted, emptied or replaced -----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("victim", ["journal.db", "journal.db-wal"])
async def test_a_journal_deleted_while_running_stops_the_host(tmp_path: Path, sandbox: Sandbox, victim: str) -> None:
    async with Host(host_config(tmp_path, sandbox), entry_points=False) as host:
        await host.record_birth(birth(8))
        (tmp_path / victim).unlink()
        with pytest.raises(JournalLost, match="ybplug init --new-journal"):
            await host.record_birth(birth(9))
        with pytest.raises(JournalLost):  # and stays stopped: nothing is acknowledged into a lost file
            await host.record_birth(birth(10))
        assert host.failed.is_set() and isinstance(host.failure, JournalLost)


@pytest.mark.anyio
@pytest.mark.parametrize("damage", ["delete", "empty", "replace"])
async def test_a_journal_gone_between_runs_is_an_error_not_a_fresh_start(tmp_path: Path, sandbox: Sandbox, damage: str) -> None:
    config = host_config(tmp_path, sandbox)
    async with Host(config, entry_points=False, background=False) as host:
        await host.record_birth(birth(11))
    journal = tmp_path / "journal.db"
    if damage == "delete":
        journal.unlink()
    elif damage == "empty":
        journal.write_bytes(b"")
    else:
        other = tmp_path / "other"
        other.mkdir()
        async with Host(host_config(other, sandbox), entry_points=False, background=False):
            pass
        os.replace(other / "journal.db", journal)
    with pytest.raises(JournalLost):
        async with Host(config, entry_points=False, background=False):
            pass
    (tmp_path / "ybplug.toml").write_text(f'journal = "{journal}"\n', encoding="utf-8")
    status = await cli("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert status.returncode == 1 and "ybplug init --new-journal" in status.stderr and "Traceback" not in status.stderr
    fresh = await cli("init", "--new-journal", "-c", "ybplug.toml", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    async with Host(config, entry_points=False, background=False) as host:
        assert (await host.status())["births"] == {}


@pytest.mark.anyio
async def test_init_never_starts_a_new_journal_over_one_holding_births(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert (await cli("init", "-c", "ybplug.toml", cwd=tmp_path)).returncode == 0
    async with Host(ybplug.Config(journal=str(tmp_path / "journal.db")), entry_points=False, background=False) as host:
        await host.record_birth(birth(16))
    again = await cli("init", "--new-journal", "-c", "ybplug.toml", cwd=tmp_path)
    assert again.returncode == 1 and "holds 1 births" in again.stderr and "move it away first" in again.stderr


@pytest.mark.anyio
async def test_a_journal_restored_from_an_older_backup_is_refused_until_a_person_says_so(tmp_path: Path) -> None:
    """Births acknowledged after the backup was taken are not in it: the worker must not go on as
    if nothing was lost.  `init --restored` says the restore was meant."""
    import shutil

    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    config = ybplug.Config(journal=str(tmp_path / "journal.db"))
    async with Host(config, entry_points=False, background=False) as host:
        await host.record_birth(birth(17))
    shutil.copy(tmp_path / "journal.db", tmp_path / "backup.db")  # last night's backup
    async with Host(config, entry_points=False, background=False) as host:
        for n in (18, 19):
            await host.record_birth(birth(n))
    shutil.copy(tmp_path / "backup.db", tmp_path / "journal.db")  # put back by mistake (or on purpose)
    status = await cli("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert status.returncode != 0 and "Traceback" not in status.stderr
    [line] = status.stderr.strip().splitlines()
    assert "restored from an older backup" in line and "#2 to #3" in line and "ybplug init --restored" in line
    with pytest.raises(JournalLost, match="older backup"):
        async with Host(config, entry_points=False, background=False):
            pass
    assert (await cli("init", "--restored", "-c", "ybplug.toml", cwd=tmp_path)).returncode == 0
    async with Host(config, entry_points=False, background=False) as host:
        assert (await host.status())["births"] == {"pending": 1}  # going on with what the backup holds


# --- 7. disk full ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_full_disk_is_a_typed_error_and_loses_nothing_acknowledged(tmp_path: Path, sandbox: Sandbox) -> None:
    config = host_config(tmp_path, sandbox)
    acknowledged: list[int] = []
    async with Host(config, entry_points=False, background=False) as host:
        pages = await host.run_journal(lambda: host.journal.db.execute("PRAGMA page_count").fetchone()[0])
        await host.run_journal(lambda: host.journal.db.execute(f"PRAGMA max_page_count = {pages + 3}"))
        with pytest.raises(JournalFull, match="disk is full"):
            for n in range(2000):
                acknowledged.append((await host.record_birth(birth(100 + n))).birth_id)
    assert acknowledged
    async with Host(config, entry_points=False, background=False) as host:
        assert (await host.status())["births"] == {"pending": len(acknowledged)}


# --- 8. a journal read error in the schedule -------------------------------------------------------


@pytest.mark.anyio
async def test_a_journal_error_in_the_schedule_is_one_line_and_the_worker_goes_on(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = iter([True] * 4)  # a failing journal call is tried twice (group, then alone): two rounds
    async with Host(host_config(tmp_path, sandbox, upload="immediate"), entry_points=False) as host:
        real = host.journal.next_upload_due

        def flaky(**kwargs: Any) -> float | None:
            if next(failures, False):
                raise JournalError("journal: disk I/O error")
            return real(**kwargs)

        monkeypatch.setattr(host.journal, "next_upload_due", flaky)
        with caplog.at_level(logging.INFO, logger="ybplug"):
            with anyio.fail_after(15):
                while len([r for r in caplog.records if "disk I/O error" in r.getMessage()]) < 2:
                    await anyio.sleep(0.05)
                await host.record_birth(birth(12))  # after the errors: the schedule still uploads
                while not sandbox.registrations():
                    await anyio.sleep(0.05)
    errors = [r for r in caplog.records if "disk I/O error" in r.getMessage()]
    assert len(errors) == 2 and all(r.exc_info is None for r in errors)


# --- 9. a hung plugin never keeps the process alive -----------------------------------------------

HUNG_PLUGIN = '''
import threading
from ybplug.hooks import hookimpl

@hookimpl
def birth_recorded(birth_id):
    threading.Event().wait()  # a HIS database that never answers
'''


SWALLOWING_PLUGIN = '''
import anyio
from ybplug.hooks import hookimpl

@hookimpl
async def birth_recorded(birth_id):
    while True:
        try:
            await anyio.sleep_forever()
        except BaseException:  # a careless plugin: it swallows every cancellation
            pass
'''


@pytest.mark.anyio
@pytest.mark.parametrize(("plugin", "within"), [(HUNG_PLUGIN, 10.0), (SWALLOWING_PLUGIN, 1.0 + 0.5 + 3.0)], ids=["hung", "swallowing"])
async def test_ybplug_run_exits_within_10_s_of_sigterm_whatever_a_plugin_does(
    tmp_path: Path, sandbox: Sandbox, plugin: str, within: float
) -> None:
    """A swallowing plugin's abandoned call must not keep the process alive either: not in the
    loop's shutdown, which waits for every task it knows, nor when its coroutine is collected."""
    (tmp_path / "hung_plugin.py").write_text(plugin, encoding="utf-8")
    write_config(tmp_path, sandbox, plugins='["hung_plugin"]')
    config = ybplug.Config.load(tmp_path / "ybplug.toml")
    config.plugins = []
    async with Host(config, plugins=[], entry_points=False, background=False) as host:
        await host.run_journal(host.journal.subscribe, {"birth_recorded": ["hung_plugin"]})
        await host.record_birth(birth(14))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("YBPLUG_PLUGINS", None)
    worker = await anyio.open_process([YBPLUG, "run", "-c", "ybplug.toml"], cwd=tmp_path, env=env)
    try:
        with anyio.fail_after(30):
            while not events_of(tmp_path, "birth_recorded") or not _attempted(tmp_path):
                await anyio.sleep(0.2)
        await anyio.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        with anyio.fail_after(10):
            await worker.wait()
        assert time.monotonic() - stopped < within
        assert worker.returncode == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


def _attempted(tmp_path: Path) -> bool:
    db = sqlite3.connect(tmp_path / "journal.db", timeout=10)
    try:
        return bool(db.execute("SELECT count(*) FROM deliveries WHERE attempts > 0").fetchone()[0])
    finally:
        db.close()


@pytest.mark.anyio
async def test_a_host_exits_within_the_hook_timeout_whatever_a_plugin_does(tmp_path: Path, sandbox: Sandbox) -> None:
    import threading

    class Hung:
        ybplug_name = "hung"

        @hookimpl
        def ybplug_shutdown(self) -> None:
            threading.Event().wait()

    async with Host(host_config(tmp_path, sandbox, hook_timeout=1.0), plugins=[Hung()], entry_points=False):
        started = time.monotonic()
    assert time.monotonic() - started < 1.0 + 2.0


class Careless:
    """A plugin whose async hooks swallow cancellation and await again, until released."""

    ybplug_name = "careless"

    def __init__(self) -> None:
        self.released = False
        self.called: list[float] = []

    async def _swallow(self) -> None:
        self.called.append(time.monotonic())
        while not self.released:
            try:
                await anyio.sleep_forever()
            except BaseException:  # noqa: S110 -- on purpose: this is the plugin under test
                pass

    @hookimpl
    async def collection_result(self, birth_id: int, event_id: str) -> None:
        await self._swallow()

    @hookimpl
    async def ybplug_shutdown(self) -> None:
        await self._swallow()

    async def release(self, host: Host) -> None:
        """Let its abandoned calls end (at their next cancellation), so nothing outlives the test."""
        self.released = True
        for task in list(host.caller._abandoned):
            task.cancel()
        with anyio.fail_after(2):
            while host.caller.abandoned:
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_plugin_swallowing_cancellation_is_timed_out_and_the_others_get_their_events(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    timeout = 2.0
    careless, hospital = Careless(), Hospital()
    config = host_config(tmp_path, sandbox, hook_timeout=timeout, upload="immediate")
    with caplog.at_level(logging.INFO, logger="ybplug"):
        async with Host(config, plugins=[careless, hospital], entry_points=False) as host:
            for n in range(5):
                await host.record_birth(birth(40 + n))
            with anyio.fail_after(timeout + 5):
                while len(hospital.of("collection_result")) < 5:
                    await anyio.sleep(0.02)
            assert time.monotonic() < careless.called[0] + timeout  # all while the careless one hangs
            with anyio.fail_after(timeout + 5):  # its first attempt timed out and was journaled
                while not _attempted(tmp_path):
                    await anyio.sleep(0.05)
            stopping = time.monotonic()
        # its shutdown hook swallows cancellation too, and a delivery of it may be under way
        assert time.monotonic() - stopping < timeout + host.caller.CANCEL_GRACE + 1.0
        await careless.release(host)

    db = sqlite3.connect(tmp_path / "journal.db")
    try:
        errors = db.execute("SELECT last_error FROM deliveries WHERE plugin = 'careless' AND attempts > 0").fetchall()
        delivered = db.execute("SELECT count(*) FROM deliveries WHERE plugin = 'st_mary' AND state = 'delivered'").fetchone()
    finally:
        db.close()
    assert delivered == (5,)
    assert errors and all("HookTimeout" in e and "ignored cancellation" in e for (e,) in errors)
    lines = [r.getMessage() for r in caplog.records if r.name == "ybplug.hooks" and "ignored cancellation" in r.getMessage()]
    assert lines and all("careless" in line for line in lines)
    assert any("collection_result" in line for line in lines) and any("ybplug_shutdown" in line for line in lines)


@pytest.mark.anyio
async def test_a_host_exits_within_the_hook_timeout_when_an_async_plugin_ignores_cancellation(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    careless = Careless()
    async with Host(host_config(tmp_path, sandbox, hook_timeout=1.0), plugins=[careless], entry_points=False) as host:
        started = time.monotonic()
    assert len(careless.called) == 1  # its ybplug_shutdown, abandoned
    assert time.monotonic() - started < 1.0 + host.caller.CANCEL_GRACE + 1.0
    await careless.release(host)


@pytest.mark.anyio
async def test_a_plugin_hanging_honestly_does_not_delay_another_plugins_deliveries(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    timeout = 3.0
    hung_since: list[float] = []

    class Hangs:
        ybplug_name = "hangs"

        @hookimpl
        async def collection_result(self, birth_id: int, event_id: str) -> None:
            hung_since.append(time.monotonic())
            await anyio.sleep_forever()  # cancelled at its timeout, as it should be

    class Prompt(Hospital):
        ybplug_name = "prompt"

        def __init__(self) -> None:
            super().__init__()
            self.at: list[float] = []

        @hookimpl
        async def collection_result(self, result: ybplug.CollectionResult, birth_id: int, event_id: str) -> None:
            self.at.append(time.monotonic())

    prompt = Prompt()
    config = host_config(tmp_path, sandbox, hook_timeout=timeout, upload="immediate")
    # "hangs" registered last: pluggy would call it first for the same event
    async with Host(config, plugins=[prompt, Hangs()], entry_points=False) as host:
        recorded = time.monotonic()
        await host.record_birth(birth(50))
        with anyio.fail_after(timeout / 2):  # the same event, while the other plugin hangs on it
            while not prompt.at or not hung_since:
                await anyio.sleep(0.01)
        assert prompt.at[0] - recorded < timeout / 2
        recorded = time.monotonic()
        await host.record_birth(birth(51))  # the next event, while the other plugin still hangs
        with anyio.fail_after(timeout / 2):
            while len(prompt.at) < 2:
                await anyio.sleep(0.01)
        assert prompt.at[1] - recorded < timeout / 2
        assert prompt.at[1] < hung_since[0] + timeout  # before the hung plugin's timeout


# --- 10. immediate mode across processes ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_birth_recorded_in_the_his_process_is_uploaded_by_a_worker_within_2_s(tmp_path: Path, sandbox: Sandbox) -> None:
    worker = await _subscribed_worker(tmp_path, sandbox)
    try:
        config = ybplug.Config.load(tmp_path / "ybplug.toml")
        await anyio.sleep(1.0)  # and waiting, with nothing due for an hour
        async with Host(config, entry_points=False, background=False) as his:
            await his.record_birth(birth(15))
            recorded = time.monotonic()
        with anyio.fail_after(2.0):
            while not sandbox.registrations():
                await anyio.sleep(0.02)
        assert time.monotonic() - recorded < 2.0
    finally:
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            await worker.wait()


async def _subscribed_worker(tmp_path: Path, sandbox: Sandbox) -> anyio.abc.Process:
    """``ybplug run`` on a fresh config in ``tmp_path``, once it is up (it has subscribed its plugins)."""
    write_config(tmp_path, sandbox)
    env = {**os.environ}
    env.pop("YBPLUG_PLUGINS", None)
    worker = await anyio.open_process([YBPLUG, "run", "-c", "ybplug.toml"], cwd=tmp_path, env=env)
    try:
        with anyio.fail_after(20):
            while not (tmp_path / "journal.db").exists() or not _subscribed(tmp_path):
                await anyio.sleep(0.1)
    except BaseException:
        worker.kill()
        await worker.wait()
        raise
    return worker


def _subscribed(tmp_path: Path) -> bool:
    try:
        db = sqlite3.connect(tmp_path / "journal.db", timeout=10)
        try:
            return bool(db.execute("SELECT count(*) FROM subscriptions").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return False


@pytest.mark.anyio
async def test_ybplug_run_stops_with_one_line_when_its_journal_is_deleted(tmp_path: Path, sandbox: Sandbox) -> None:
    worker = await _subscribed_worker(tmp_path, sandbox)
    try:
        (tmp_path / "journal.db").unlink()
        with anyio.fail_after(15):  # the watch notices within a second
            await worker.wait()
        assert worker.returncode == 1
        assert worker.stderr is not None
        err = (await worker.stderr.receive()).decode()
        assert "ybplug run: error: journal" in err and "ybplug init --new-journal" in err and "Traceback" not in err
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


@pytest.mark.anyio
async def test_a_plugin_cannot_use_the_journal_beside_its_thread(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(17))
        with pytest.raises(RuntimeError, match="host.records"):
            host.journal.status()  # on the event loop: it would block it on fsync, beside the journal's thread
        row = await host.records.birth(recorded.birth_id)  # the way plugins use it
        assert row.id == recorded.birth_id


@pytest.mark.anyio
async def test_a_void_left_in_doubt_is_carried_on_until_the_centre_says_done(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    """The void's reply is lost, the operator's retry is refused for another reason and they give
    up: the next sync sends it again, hears "already void", and records it (once)."""
    seen = Hospital()
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), plugins=[seen], entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth(18))
        await host.sync("upload")
        baz726 = sandbox.registrations()[0]["baz726"]
        sandbox.inject(Fault(kind="drop_after_commit", funid=Funid.VOID))
        with pytest.raises(ybplug.Error):
            await host.void(baz726, "重复上传")
        sandbox.inject(Fault(kind="refuse", funid=Funid.VOID, cause="系统繁忙"))
        with pytest.raises(ybplug.Error, match="系统繁忙"):
            await host.void(baz726, "重复上传")
        summary = await host.sync()
        again = await host.sync()
        row = await host.records.birth(recorded.birth_id)
    assert summary.get("voids_resumed") == 1 and "voids_resumed" not in again
    assert row.state == BirthState.VOIDED
    assert [v["registration_number"] for v in seen.of("collection_voided")] == [baz726]
