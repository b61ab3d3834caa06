"""Several workers on one PostgreSQL journal, killed and cut off: nothing lost, nothing uploaded
twice, every delivery made (at least once, under one event id).

* Three ``ybplug run`` processes (the example hospital plugin loaded through its entry point) on
  one journal, the HIS recording births the while; one worker or another SIGKILLed at random
  moments (seeded, printed), at least 20 times, and started again.
* One worker whose database connections are cut (``pg_terminate_backend``) again and again while
  it uploads batches and makes deliveries.

Then the journal, the centre's registrations and the hospital's database are compared.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from ybplug.codes import Funid
from ybplug.host import Host
from ybplug.sandbox import Fault, Sandbox

from chaos_support import write_config
from pg_support import fresh_schema, journal_rows
from recorder import Recorder
from support import birth_record, host_config

pytestmark = pytest.mark.anyio
psycopg = pytest.importorskip("psycopg")

SEED = int(os.environ.get("YBPLUG_CHAOS_SEED", "20261201"))
YBPLUG = str(Path(sys.executable).parent / "ybplug")
PLUGIN = "example_hospital"


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as journal_url:
        yield journal_url


def unsettled(url: str) -> int:
    """Births not yet answered plus deliveries still to make."""
    [(births,)] = journal_rows(url, "SELECT count(*) FROM births WHERE state IN ('pending', 'uploading')")
    [(deliveries,)] = journal_rows(url, "SELECT count(*) FROM deliveries WHERE state != 'delivered'")
    return int(births) + int(deliveries)


def compare(url: str, sandbox: Sandbox, recorded: set[int]) -> list[str]:
    """What is wrong between the journal and the centre: lost, doubled or unanswered births."""
    problems = []
    births = {int(r[0]): r for r in journal_rows(
        url, "SELECT id, mother_id, birth_time, multiple_birth_number, state, registration_number FROM births"
    )}
    if missing := sorted(recorded - set(births)):
        problems.append(f"lost: births {missing} were acknowledged but are not in the journal")
    at_centre = Counter((str(r["bkee35"]), int(r["aac006"]), int(r["bme027"])) for r in sandbox.registrations())
    numbers = {r["baz726"] for r in sandbox.registrations()}
    for birth_id, (_, mother, born, number, state, baz726) in sorted(births.items()):
        held = at_centre[(mother, born, number)]
        if held != 1:
            problems.append(f"{'doubled' if held else 'lost'}: birth {birth_id} registered {held} times at the centre")
        if state == "registered" and baz726 not in numbers:
            problems.append(f"wrong: birth {birth_id} has {baz726}, which the centre does not hold")
        elif state not in ("registered", "needs_review"):  # review: a duplicate answer after a lost one
            problems.append(f"unanswered: birth {birth_id} is {state}")
    if len(at_centre) > len(births):
        problems.append(f"the centre holds {len(at_centre) - len(births)} registrations the journal does not know")
    return problems


async def uploading(url: str, workers: list[anyio.abc.Process], rng: random.Random) -> int:
    """A worker holding births it is uploading (waiting up to 2 s for one), else any."""
    with anyio.move_on_after(2.0):
        while True:
            owners = " ".join(str(r[0]) for r in journal_rows(
                url, "SELECT DISTINCT claimed_by FROM births WHERE state = 'uploading' AND claimed_by IS NOT NULL"
            ))
            busy = [i for i, w in enumerate(workers) if f":{w.pid}:" in owners]
            if busy:
                return rng.choice(busy)
            await anyio.sleep(0.01)
    return rng.randrange(len(workers))


async def test_three_workers_killed_twenty_times_lose_nothing_double_nothing_and_deliver_everything(
    tmp_path: Path, sandbox: Sandbox, url: str
) -> None:
    config = write_config(tmp_path, sandbox, journal=url, upload_batch=5, read_timeout=None, realname_interval=None)
    hospital = tmp_path / "hospital.db"
    env = {**os.environ, "YBPLUG_EXAMPLE_DB": str(hospital)}
    env.pop("YBPLUG_PLUGINS", None)
    logs: list[Any] = []

    async def start() -> anyio.abc.Process:
        log = open(tmp_path / f"worker-{len(logs)}.log", "wb")  # noqa: SIM115 (closed below)
        logs.append(log)
        return await anyio.open_process([YBPLUG, "run", "-c", str(config)], env=env, stdout=log, stderr=log)

    sandbox.inject(Fault(kind="latency", funid=Funid.COLLECT, times=None, seconds=0.2))  # kills land mid-upload
    rng = random.Random(SEED)
    recorded: set[int] = set()
    kills: Counter[str] = Counter()
    his_config = host_config(tmp_path, sandbox, journal=url)  # the HIS's own host: records, never uploads
    workers = [await start() for _ in range(3)]
    try:
        async with Host(his_config, entry_points=False, background=False) as his:
            await anyio.sleep(1.0)  # the workers are up (their subscriptions journaled)
            n = 0
            while sum(kills.values()) < 20:
                for _ in range(rng.randint(2, 5)):
                    n += 1
                    recorded.add((await his.record_birth(birth_record(n))).birth_id)
                i = await uploading(url, workers, rng) if rng.random() < 0.7 else rng.randrange(3)
                await anyio.sleep(rng.uniform(0.0, 0.15))
                [(claims,)] = journal_rows(
                    url, f"SELECT count(*) FROM births WHERE state = 'uploading' AND claimed_by LIKE '%:{workers[i].pid}:%'"
                )
                workers[i].send_signal(signal.SIGKILL)
                await workers[i].wait()
                kills["mid-upload" if claims else "anytime"] += 1
                workers[i] = await start()
        with anyio.fail_after(90):
            while unsettled(url):
                await anyio.sleep(0.2)
        for worker in workers:
            worker.terminate()
        with anyio.fail_after(30):
            for worker in workers:
                await worker.wait()
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        for log in logs:
            log.close()
    problems = compare(url, sandbox, recorded)
    # Every delivery made: each collection_result / review event in the hospital's database.
    events = journal_rows(
        url, "SELECT e.id, e.hook FROM events e JOIN deliveries d ON d.event_id = e.id"
        f" WHERE d.plugin = '{PLUGIN}' AND e.hook IN ('collection_result', 'birth_needs_review')"
    )
    with sqlite3.connect(hospital) as db:
        got = {r[0] for r in db.execute("SELECT event_id FROM registrations UNION SELECT event_id FROM reviews")}
    problems += [f"not delivered: {hook} event {event_id}" for event_id, hook in events if event_id not in got]
    if len(events) < len(recorded):
        problems.append(f"only {len(events)} answers delivered for {len(recorded)} births")
    states = dict(journal_rows(url, "SELECT state, count(*) FROM births GROUP BY state"))
    print(f"\nPostgreSQL, 3 workers (seed {SEED}): {len(recorded)} births {states}, kills {dict(kills)},"
          f" {len(sandbox.registrations())} registrations, {len(events)} answers delivered")
    assert sum(kills.values()) >= 20 and kills["mid-upload"] >= 3, f"kills did not land where meant: {dict(kills)}"
    assert not problems, f"seed {SEED}:\n" + "\n".join(problems)


async def test_connections_cut_mid_batch_lose_nothing_double_nothing_and_deliver_everything(
    tmp_path: Path, sandbox: Sandbox, url: str
) -> None:
    """The worker's connections are terminated every few tens of milliseconds (whatever it is
    doing: claiming, recording an answer, committing); the HIS's host is left alone."""
    worker_url = url + "&application_name=ybplug_cut_worker"
    seen = Recorder()
    sandbox.inject(Fault(kind="latency", funid=Funid.COLLECT, times=None, seconds=0.02))
    config = host_config(tmp_path, sandbox, journal=worker_url, upload="immediate", upload_batch=10, lease=10)
    his_config = host_config(tmp_path, sandbox, journal=url)
    recorded: set[int] = set()
    cuts = 0
    rng = random.Random(SEED + 1)
    async with Host(his_config, entry_points=False, background=False) as his:
        async with Host(config, plugins=[seen], entry_points=False) as worker:
            with psycopg.connect(url, autocommit=True) as admin:
                for n in range(1, 121):
                    recorded.add((await his.record_birth(birth_record(1000 + n))).birth_id)
                    if n % 3 == 0:
                        await anyio.sleep(rng.uniform(0.0, 0.05))
                        cuts += len(admin.execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = 'ybplug_cut_worker'"
                        ).fetchall())
                with anyio.move_on_after(60):
                    while unsettled(url):
                        await anyio.sleep(0.1)
                assert not unsettled(url), journal_rows(
                    url, "SELECT 'births', state, count(*), min(lease_until) - extract(epoch from now()) FROM births GROUP BY state"
                    " UNION ALL SELECT 'deliveries', state, count(*), min(lease_until) - extract(epoch from now())"
                    " FROM deliveries GROUP BY state"
                )
            del worker
    problems = compare(url, sandbox, recorded)
    delivered = {e for hook, _, e, _ in seen.seen if hook in ("collection_result", "birth_needs_review")}
    events = {r[0] for r in journal_rows(url, "SELECT id FROM events WHERE hook IN ('collection_result', 'birth_needs_review')")}
    problems += [f"not delivered: event {e}" for e in sorted(events - delivered)]
    if len(events) != len(recorded):
        problems.append(f"{len(events)} answers for {len(recorded)} births")
    print(f"\nPostgreSQL, connections cut {cuts} times: {len(recorded)} births, {len(sandbox.registrations())}"
          f" registrations, {len(delivered)} events delivered ({len(seen.seen)} deliveries)")
    assert cuts >= 20, f"only {cuts} connections cut"
    assert not problems, f"seed {SEED + 1}:\n" + "\n".join(problems)
