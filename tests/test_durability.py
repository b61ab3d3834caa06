"""Workers as real processes: SIGKILL at random points, restarts, and two workers on one journal.

The hospital plugin here is the example distribution under ``examples/``, installed separately
and found through the ``ybplug`` entry point, writing to its own SQLite database.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from ybplug.config import Config
from ybplug.host import Host
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Fault, Sandbox

from support import birth_record as birth

COLLECT = "yb04.13.01.21"
YBPLUG = str(Path(sys.executable).parent / "ybplug")




def write_config(tmp_path: Path, sandbox: Sandbox) -> Path:
    path = tmp_path / "ybplug.toml"
    path.write_text(
        f"""
journal = "journal.db"
upload = "immediate"
upload_batch = 10
upload_concurrency = 4
delivery_backoff = 0.05
delivery_backoff_cap = 0.2
upload_backoff = 0.05
upload_backoff_cap = 0.2
lease = 60

[wire]
url = "{sandbox.url}"
usr = "{SANDBOX_USR}"
pwd = "{SANDBOX_PWD}"
read_timeout = 5
""",
        encoding="utf-8",
    )
    return path


async def record(tmp_path: Path, count: int) -> None:
    """The HIS records ``count`` births (twins among them) before any worker runs."""
    config = Config.load(tmp_path / "ybplug.toml")
    config.upload = "daily at 02:00"
    async with Host(config, entry_points=False) as host:
        for n in range(count):
            await host.record_birth(birth(n // 2, number=n % 2 + 1, sex=str(n % 2 + 1)))


async def start_worker(tmp_path: Path) -> anyio.abc.Process:
    env = {**os.environ, "YBPLUG_EXAMPLE_DB": str(tmp_path / "hospital.db")}
    env.pop("YBPLUG_PLUGINS", None)
    return await anyio.open_process(
        [YBPLUG, "run", "-c", str(tmp_path / "ybplug.toml")], env=env, stdout=None, stderr=None
    )


def journal_counts(tmp_path: Path) -> tuple[dict[str, int], int]:
    db = sqlite3.connect(tmp_path / "journal.db", timeout=30)
    try:
        states = dict(db.execute("SELECT state, count(*) FROM births GROUP BY state").fetchall())
        pending = db.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'pending' AND plugin = 'example_hospital'"
        ).fetchone()[0]
        return states, pending
    finally:
        db.close()


async def run_until_settled(tmp_path: Path, count: int) -> None:
    worker = await start_worker(tmp_path)
    try:
        with anyio.fail_after(60):
            while True:
                await anyio.sleep(0.2)
                states, pending = journal_counts(tmp_path)
                settled = states.get("registered", 0) + states.get("needs_review", 0)
                if settled == count and pending == 0:
                    break
    finally:
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            await worker.wait()


def check_exactly_once(tmp_path: Path, sandbox: Sandbox, count: int) -> None:
    registrations = sandbox.registrations()
    keys = [(r["bkee35"], r["aac006"], r["bme027"]) for r in registrations]
    assert len(keys) == count and len(set(keys)) == count, "a birth was registered twice or not at all"

    journal = sqlite3.connect(tmp_path / "journal.db")
    ours = dict(
        journal.execute("SELECT id, registration_number FROM births WHERE state = 'registered'").fetchall()
    )
    assert set(ours.values()) <= {r["baz726"] for r in registrations}

    hospital = sqlite3.connect(tmp_path / "hospital.db")
    delivered = hospital.execute(
        "SELECT birth_id, count(DISTINCT event_id), max(baz726) FROM registrations GROUP BY birth_id"
    ).fetchall()
    by_birth = {birth_id: (events, number) for birth_id, events, number in delivered}
    for birth_id, number in ours.items():
        assert birth_id in by_birth, f"collection_result of birth {birth_id} never reached the hospital plugin"
        events, delivered_number = by_birth[birth_id]
        assert events == 1, f"birth {birth_id} got collection_result under {events} event ids"
        assert delivered_number == number


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_sigkill_at_random_points_loses_nothing_and_registers_nothing_twice(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    count = 80
    write_config(tmp_path, sandbox)
    await record(tmp_path, count)
    sandbox.inject(Fault(kind="latency", funid=COLLECT, times=None, seconds=0.15))
    rng = random.Random(20261125)
    mid_batch = 0
    def answered() -> int:
        states = journal_counts(tmp_path)[0]
        return states.get("registered", 0) + states.get("needs_review", 0)

    for _ in range(6):
        before = answered()
        if before == count:
            break
        worker = await start_worker(tmp_path)
        with anyio.fail_after(30):  # kill only once this worker is uploading: mid-batch, whatever the machine's speed
            while answered() == before and worker.returncode is None:
                await anyio.sleep(0.01)
        await anyio.sleep(rng.uniform(0.0, 0.3))
        worker.kill()
        await worker.wait()
        states, _ = journal_counts(tmp_path)
        if states.get("pending", 0) + states.get("uploading", 0) and states.get("registered", 0):
            mid_batch += 1
    assert mid_batch >= 3, "the kills should land while a batch is being uploaded"
    sandbox.clear_faults()
    await run_until_settled(tmp_path, count)
    check_exactly_once(tmp_path, sandbox, count)


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_two_workers_on_one_journal_never_upload_the_same_birth(tmp_path: Path, sandbox: Sandbox) -> None:
    count = 60
    write_config(tmp_path, sandbox)
    await record(tmp_path, count)
    sandbox.inject(Fault(kind="latency", funid=COLLECT, times=None, seconds=0.02))
    workers = [await start_worker(tmp_path), await start_worker(tmp_path)]
    try:
        # Wait for what is asserted below: every birth registered *and* its collection_result
        # delivered to the hospital plugin. Stopping the workers as soon as the last birth is
        # registered left that birth's delivery pending (a race in the test, not in ybplug).
        with anyio.fail_after(90):
            while True:
                states, pending = journal_counts(tmp_path)
                if states.get("registered", 0) == count and pending == 0:
                    break
                await anyio.sleep(0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            with anyio.fail_after(15):
                await worker.wait()
    assert sandbox.calls(COLLECT) == count  # not one upload twice
    check_exactly_once(tmp_path, sandbox, count)
    assert [w.returncode for w in workers] == [0, 0]
