"""The outbox: a birth journaled in the HIS's own PostgreSQL transaction commits or rolls back with
the HIS's own row, whether the HIS uses a sync or an async psycopg connection, and whatever dies
before the commit.  A worker on the journal uploads it once the HIS commits, never before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from ybplug.host import Host
from ybplug.journal import JournalError
from ybplug.journal.model import BirthNotFound
from ybplug.sandbox import Sandbox

from pg_support import fresh_schema
from recorder import Recorder
from support import birth_record, host_config

pytestmark = pytest.mark.anyio
psycopg = pytest.importorskip("psycopg")

HIS_TABLE = "CREATE TABLE his_birth (serial TEXT PRIMARY KEY, ward TEXT NOT NULL)"


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as journal_url:
        yield journal_url


@pytest.fixture
async def worker(tmp_path: Path, sandbox: Sandbox, url: str) -> AsyncIterator[Host]:
    """A ybplug worker on the PostgreSQL journal, uploading at once (the HIS's server is elsewhere)."""
    config = host_config(tmp_path, sandbox, journal=url, upload="immediate")
    async with Host(config, plugins=[Recorder()], entry_points=False) as host:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(HIS_TABLE)
        yield host


async def uploaded(host: Host, serial: str, within: float = 5.0) -> str:
    """The birth's registration number, once a worker has uploaded it."""
    with anyio.fail_after(within):
        while True:
            try:
                status = await host.birth(serial)
            except BirthNotFound:
                status = None
            if status is not None and status.registration_number:
                return status.registration_number
            await anyio.sleep(0.02)


def his_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT serial, ward FROM his_birth").fetchall()  # type: ignore[no-any-return]


async def test_a_sync_his_transaction_commits_its_row_and_the_birth_together(
    worker: Host, url: str, sandbox: Sandbox
) -> None:
    record = birth_record(1)
    with psycopg.connect(url) as his:
        with his.transaction():
            his.execute("INSERT INTO his_birth VALUES (%s, %s)", (record["bke042"], "产科一病区"))
            his_path = his.execute("SHOW search_path").fetchone()
            recorded = await worker.record_birth(record, connection=his)
            assert recorded.created
            assert his.execute("SHOW search_path").fetchone() == his_path  # the HIS's, as it was
            await anyio.sleep(0.3)  # a worker looking now finds nothing: not committed yet
            with pytest.raises(BirthNotFound):
                await worker.birth(record["bke042"])
            assert sandbox.registrations() == []
        started = time.monotonic()
        number = await uploaded(worker, record["bke042"])
    print(f"uploaded {time.monotonic() - started:.2f} s after the HIS's commit")
    assert [r["baz726"] for r in sandbox.registrations()] == [number]
    assert his_rows(url) == [(record["bke042"], "产科一病区")]


async def test_a_rolled_back_his_transaction_leaves_no_trace(worker: Host, url: str, sandbox: Sandbox) -> None:
    record = birth_record(2)
    with psycopg.connect(url) as his:
        with pytest.raises(RuntimeError), his.transaction():
            his.execute("INSERT INTO his_birth VALUES (%s, %s)", (record["bke042"], "产科一病区"))
            await worker.record_birth(record, connection=his)
            raise RuntimeError("the HIS changes its mind")
        his.execute("SELECT 1")  # the connection goes on being the HIS's
    await anyio.sleep(0.5)
    with pytest.raises(BirthNotFound):
        await worker.birth(record["bke042"])
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM births").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
    assert his_rows(url) == [] and sandbox.registrations() == []


async def test_an_async_his_connection_commits_and_rolls_back_with_the_birth(
    worker: Host, url: str, sandbox: Sandbox
) -> None:
    kept, dropped = birth_record(3), birth_record(4)
    async with await psycopg.AsyncConnection.connect(url) as his:
        async with his.transaction():
            await his.execute("INSERT INTO his_birth VALUES (%s, %s)", (kept["bke042"], "产科二病区"))
            await worker.record_birth(kept, connection=his)
            again = await worker.record_birth(kept, connection=his)  # the same birth again: one row
            assert not again.created
        with pytest.raises(RuntimeError):
            async with his.transaction():
                await worker.record_birth(dropped, connection=his)
                raise RuntimeError("rolled back")
    await uploaded(worker, kept["bke042"])
    with pytest.raises(BirthNotFound):
        await worker.birth(dropped["bke042"])
    assert len(sandbox.registrations()) == 1
    assert his_rows(url) == [(kept["bke042"], "产科二病区")]


_HIS = """
import os, sys, anyio, psycopg
from ybplug.config import Config, WireConfig
from ybplug.host import Host
sys.path.insert(0, sys.argv[2])
from support import birth_record

async def main() -> None:
    config = Config(journal=sys.argv[1], wire=WireConfig(url="http://127.0.0.1:9", usr="u", pwd="p"))
    async with Host(config, entry_points=False, background=False) as host:
        with psycopg.connect(sys.argv[1]) as his:
            his.execute("INSERT INTO his_birth VALUES (%s, %s)", (sys.argv[3], "产科一病区"))
            record = birth_record(int(sys.argv[4]))
            await host.record_birth(record, connection=his)
            print("written", flush=True)
            if sys.argv[5] == "commit":
                his.commit()
                print("committed", flush=True)
            await anyio.sleep(60)

anyio.run(main)
"""


@pytest.mark.parametrize("then", ["killed", "commit"])
async def test_the_his_killed_between_its_write_and_its_commit_leaves_nothing(
    worker: Host, url: str, tmp_path: Path, then: str
) -> None:
    record = birth_record(5)
    script = tmp_path / "his.py"
    script.write_text(_HIS, encoding="utf-8")
    tests = str(Path(__file__).parent)
    args = [sys.executable, str(script), url, tests, record["bke042"], "5", then]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as his:
        assert his.stdout is not None
        expected = "committed" if then == "commit" else "written"
        for line in his.stdout:
            if line.strip() == expected:
                break
        os.kill(his.pid, signal.SIGKILL)
        his.wait()
    if then == "commit":  # the control: the same path, committed, is journaled and uploaded
        await uploaded(worker, record["bke042"])
        assert his_rows(url) == [(record["bke042"], "产科一病区")]
        return
    await anyio.sleep(0.5)
    with pytest.raises(BirthNotFound):
        await worker.birth(record["bke042"])
    assert his_rows(url) == []


async def test_the_outbox_says_what_it_needs(tmp_path: Path, sandbox: Sandbox, url: str) -> None:
    async with Host(host_config(tmp_path, sandbox), entry_points=False, background=False) as on_sqlite:
        with psycopg.connect(url) as his, pytest.raises(JournalError, match="needs the journal on PostgreSQL"):
            await on_sqlite.record_birth(birth_record(6), connection=his)
    config = host_config(tmp_path, sandbox, journal=url)
    async with Host(config, entry_points=False, background=False) as host:
        with psycopg.connect(url, autocommit=True) as his, pytest.raises(JournalError, match="no transaction open"):
            await host.record_birth(birth_record(6), connection=his)
        other = psycopg.conninfo.make_conninfo(url, dbname="postgres")  # the server's other database
        with psycopg.connect(other) as his, pytest.raises(JournalError, match="not to the journal's database"):
            await host.record_birth(birth_record(6), connection=his)
        with pytest.raises(TypeError, match="psycopg Connection"):
            await host.record_birth(birth_record(6), connection=object())


@pytest.fixture
def his_role(url: str) -> Iterator[str]:
    """The HIS's own role, with no rights on the journal's schema (as the README advises); yields
    a URL to the journal's database as that role."""
    from pg_support import SERVER

    role = f"ybplug_his_{os.getpid()}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
    server = psycopg.conninfo.conninfo_to_dict(SERVER)
    try:
        yield f"postgresql://{role}@{server.get('host') or '127.0.0.1'}:{server.get('port') or 5432}/{server['dbname']}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


async def test_a_his_role_without_rights_on_the_journal_is_told_what_to_grant(
    tmp_path: Path, sandbox: Sandbox, url: str, his_role: str
) -> None:
    schema = url.rsplit("%3D", 1)[1]
    role = his_role.split("://")[1].split("@")[0]
    async with Host(host_config(tmp_path, sandbox, journal=url), entry_points=False, background=False) as host:
        for grant in ("", f"GRANT USAGE ON SCHEMA {schema} TO {role}"):  # no rights; the schema but not its tables
            if grant:
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute(grant)
            with psycopg.connect(his_role) as his, pytest.raises(JournalError) as caught:
                with his.transaction():
                    await host.record_birth(birth_record(7), connection=his)
            said = str(caught.value)
            assert f"permission denied: the HIS connection's role {role} has no rights on the journal's schema {schema}" in said
            assert f"GRANT USAGE ON SCHEMA {schema}" in said and "not to the journal's database" not in said
        with pytest.raises(BirthNotFound):
            await host.birth(birth_record(7)["bke042"])
        with psycopg.connect(url, autocommit=True) as admin:  # what the message says to grant is enough
            admin.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        with psycopg.connect(his_role) as his:
            with his.transaction():
                assert (await host.record_birth(birth_record(7), connection=his)).created
        assert (await host.birth(birth_record(7)["bke042"])).birth_id


async def test_a_his_transaction_that_already_failed_is_said_so_not_blamed_on_the_journal(
    tmp_path: Path, sandbox: Sandbox, url: str
) -> None:
    from ybplug.outbox import HisTransactionFailed

    async with Host(host_config(tmp_path, sandbox, journal=url), entry_points=False, background=False) as host:
        with psycopg.connect(url) as his:
            with his.transaction():
                with pytest.raises(psycopg.errors.UndefinedTable):
                    his.execute("INSERT INTO no_such_his_table VALUES (1)")  # the HIS's own statement fails
                with pytest.raises(HisTransactionFailed, match="the HIS's transaction had already failed") as caught:
                    await host.record_birth(birth_record(8), connection=his)
                assert not isinstance(caught.value, JournalError)
                raise psycopg.Rollback
        async with await psycopg.AsyncConnection.connect(url) as his_async:
            async with his_async.transaction():
                with pytest.raises(psycopg.errors.UndefinedTable):
                    await his_async.execute("INSERT INTO no_such_his_table VALUES (1)")
                with pytest.raises(HisTransactionFailed):
                    await host.record_birth(birth_record(8), connection=his_async)
                raise psycopg.Rollback
        with pytest.raises(BirthNotFound):
            await host.birth(birth_record(8)["bke042"])



async def test_an_open_his_transaction_holds_up_only_its_own_birth(worker: Host, url: str, sandbox: Sandbox) -> None:
    """A ward's HIS transaction left open with birth X in it: another server goes on recording
    other births at once; recording X there waits for the HIS, then finds the HIS's row."""
    held, other = birth_record(7), birth_record(8)
    again: list[bool] = []

    async def record_held_again() -> None:
        again.append((await worker.record_birth(held)).created)

    with psycopg.connect(url) as his:
        async with anyio.create_task_group() as tg:
            with his.transaction():
                await worker.record_birth(held, connection=his)
                tg.start_soon(record_held_again)
                await anyio.sleep(0.5)
                started = time.monotonic()
                assert (await worker.record_birth(other)).created
                assert time.monotonic() - started < 1.0  # not held up by the HIS's open transaction
                assert again == []  # X waits for the HIS...
            # ...which commits: X's second recording finds the HIS's row, not a new birth
        assert again == [False]
    await uploaded(worker, held["bke042"])
    await uploaded(worker, other["bke042"])
    assert len(sandbox.registrations()) == 2
