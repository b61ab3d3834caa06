"""The journal on PostgreSQL: several workers, record_birth, and the outbox.

Needs a PostgreSQL server (``YBPLUG_BENCH_POSTGRES``, default
``postgresql://postgres@127.0.0.1:5432/test``, as the tests' server); each run works in a schema
of its own, dropped after.  Without a server the benchmark says so and measures nothing.

* **upload throughput with 1, 2, 3 workers**: K ``ybplug run`` processes (built-in plugins only,
  ``upload = "immediate"``) on one PostgreSQL journal; a backlog of births is committed in one
  transaction (its NOTIFY wakes them) and timed until the last one is answered.  The baseline of
  2 and 3 workers is 1 worker in the same run.  Everything shares the machine's cores: the
  workers, the sandbox centre (one process, one core at most), the PostgreSQL server and this
  process polling.
* **record_birth on PostgreSQL**: births/s of ``await host.record_birth(record)`` one after
  another (each durable when it returns: one transaction, one commit), against a plain psycopg
  ``INSERT`` + ``COMMIT`` of the same record into a table of its own, on the same server; and the
  same from 20 tasks at once against 20 threads inserting on a connection each.
* **the outbox**: the HIS's own transaction (``INSERT`` its row, ``COMMIT``) alone, against the
  same with ``await host.record_birth(record, connection=his)`` inside it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio

import common
from common import Row, Stats

from ybplug.config import Config, WireConfig
from ybplug.host import Host
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR

SERVER = os.environ.get("YBPLUG_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BUILT_IN = "ybplug.transport,ybplug.collection,ybplug.realname,ybplug.void,ybplug.voucher"
HIS_TABLE = "CREATE TABLE his_birth (id BIGSERIAL PRIMARY KEY, serial TEXT NOT NULL, record BYTEA NOT NULL)"


def schema_url(schema: str, app: str = "ybplug") -> str:
    return f"{SERVER}{'&' if '?' in SERVER else '?'}options={quote(f'-csearch_path={schema}')}&application_name={app}"


def admin(sql: str) -> list[Any]:
    import psycopg

    with psycopg.connect(SERVER, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def fresh(schema: str) -> str:
    """A new journal in ``schema`` (emptied first), started deliberately: this machine may remember
    an earlier run's journal there, and would refuse an emptied one (ybplug.journal.pg_identity)."""
    from ybplug.journal import start_new_journal

    admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin(f"CREATE SCHEMA {schema}")
    url = schema_url(schema)
    start_new_journal(url).close()
    return url


def answered(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM births WHERE state NOT IN ('pending', 'uploading')").fetchone()
    return int(row[0]) if row else 0


def workers_config(folder: Path, url: str, sandbox: str, concurrency: int) -> Path:
    path = folder / "workers.toml"
    path.write_text(
        f'journal = "{url}"\nupload = "immediate"\nupload_batch = 10\nupload_concurrency = {concurrency}\n'
        f'realname_interval = 86400\n\n[wire]\nurl = "{sandbox}"\nusr = "{SANDBOX_USR}"\npwd = "{SANDBOX_PWD}"\n',
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def running_workers(folder: Path, sandbox: str, workers: int, schema: str) -> Iterator[str]:
    """``workers`` ``ybplug run`` processes on a fresh journal, started and past their first sync;
    yields the journal's URL."""
    url = fresh(schema)  # the journal's tables, before the workers race to make them
    config = workers_config(folder, url.replace("application_name=ybplug", "application_name=ybplug_bench_worker"),
                            sandbox, 8)
    env = {**common.child_env(), "YBPLUG_PLUGINS": BUILT_IN}
    ybplug = str(Path(sys.executable).parent / "ybplug")
    processes = [
        subprocess.Popen([ybplug, "run", "-c", str(config)], env=env, cwd=folder,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(admin("SELECT 1 FROM pg_stat_activity WHERE application_name = 'ybplug_bench_worker'")) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start")
            time.sleep(0.1)
        time.sleep(1.0)  # past their start-up sync
        yield url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def throughput(folder: Path, sandbox: str, workers: int, count: int, schema: str) -> float:
    """Births/s that ``workers`` worker processes upload out of a backlog of ``count``."""
    from ybplug.journal import Journal

    with running_workers(folder, sandbox, workers, schema) as url:
        journal = Journal(url).open()
        journal.record_births(common.births(count))  # one commit: its NOTIFY wakes every worker
        started = time.perf_counter()
        while answered(url) < count:
            if time.perf_counter() - started > 300:
                raise RuntimeError("the workers did not upload the backlog")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        journal.close()
    return count / elapsed


def wake_latencies(folder: Path, sandbox: str, count: int, schema: str) -> list[float]:
    """Seconds from a birth's commit on another connection (another server) to its answer in the
    journal, with one worker in immediate mode waiting."""
    from ybplug.journal import Journal

    found = []
    with running_workers(folder, sandbox, 1, schema) as url:
        journal = Journal(url).open()
        for n in range(count):
            journal.record_births(common.births(1))
            started = time.perf_counter()
            while answered(url) < n + 1:
                time.sleep(0.005)
            found.append(time.perf_counter() - started)
            time.sleep(0.2)
        journal.close()
    return found


def msgspec_bytes(record: dict[str, Any]) -> bytes:
    import msgspec

    return msgspec.json.encode(record)


LATENCY = 0.05


class SlowCentre(common.SandboxProcess):
    """The sandbox in its own process, each upload answered after ``latency`` seconds (a centre
    across a network): the workers' concurrency is the bound, not this machine's cores."""

    def __init__(self, db: Path, latency: float) -> None:
        super().__init__(db)
        self.latency = latency

    what = "the slow sandbox"

    def command(self) -> list[str]:
        return [*super().command(), "--fault", f"latency:yb04.13.01.21,seconds={self.latency}"]


def scaling(folder: Path, sandbox: str, count: int, repeats: int, where: str) -> list[Row]:
    """Upload throughput by number of workers (1, 2, 3; runs interleaved), 1 worker the baseline."""
    rates: dict[int, list[float]] = {1: [], 2: [], 3: []}
    for r in range(repeats):
        for workers in (1, 2, 3)[r % 3:] + (1, 2, 3)[: r % 3]:
            rates[workers].append(throughput(folder, sandbox, workers, count, f"ybplug_bench_{os.getpid()}"))
    one = Stats(rates[1])
    bound = (
        "the workers' concurrency (8 uploads in flight each): more workers, more in flight"
        if where else
        "this machine's 2 cores, shared by the sandbox centre (one process: at most one core, the bound"
        " here), the workers and the PostgreSQL server; the next rows put the centre 50 ms away"
    )
    return [
        Row(
            f"PostgreSQL journal: upload with {k} worker{'s' if k > 1 else ''}{where} (backlog {count})",
            "births/s", Stats(rates[k]), "1 worker" if k > 1 else "—", one if k > 1 else None,
            target=1.5 if k == 2 else None,
            note=f"K `ybplug run` processes, built-in plugins, upload_batch 10, upload_concurrency 8 each; bounded by {bound}"
            if k == 2 else "",
        )
        for k in (1, 2, 3)
    ]


async def measure(quick: bool = False, sandbox_mode: str = "process") -> list[Row]:
    try:
        admin("SELECT 1")
    except Exception as exc:
        print(f"[postgres] no PostgreSQL server at {SERVER} ({exc}); nothing measured", file=sys.stderr)
        return []
    import psycopg

    rows: list[Row] = []
    count, repeats = (300, 2) if quick else (600, 3)
    with common.scratch() as folder:
        async with common.sandbox(folder, sandbox_mode) as sandbox:
            latencies = Stats(wake_latencies(folder, sandbox, 10 if quick else 20, f"ybplug_bench_{os.getpid()}"))
            rows.append(Row(
                "PostgreSQL journal: a birth committed elsewhere, answered (immediate mode)", "s", latencies,
                target=1.0, higher_is_better=False, absolute=True,
                note="one worker waiting; the birth's commit NOTIFYs it (the host looks every 0.1 s), it claims,"
                " uploads to the sandbox and records the answer",
            ))
            rows += scaling(folder, sandbox, count, repeats, "")
            with SlowCentre(folder / "slow-centre.db", LATENCY) as slow:
                rows += scaling(folder, slow.url, count, repeats, f", the centre {LATENCY * 1000:.0f} ms away")
            # record_birth, plain insert, the outbox: in one schema, interleaved.
            schema = f"ybplug_bench_rb_{os.getpid()}"
            url = fresh(schema)
            try:
                n = 100 if quick else 300
                config = Config(journal=url, realname_interval=86400.0,
                                wire=WireConfig(url=sandbox, usr=SANDBOX_USR, pwd=SANDBOX_PWD))
                async with Host(config, entry_points=False, background=False) as host:
                    with psycopg.connect(url, autocommit=True) as his:
                        his.execute(HIS_TABLE)
                    with psycopg.connect(url) as his:
                        ours, plain, outboxed, ours_many, plain_many = await common.ainterleaved(
                            3 if quick else 5,
                            lambda: rate_of(n, lambda r: host.record_birth(r)),
                            lambda: rate_of(n, lambda r: plain_insert(his, r)),
                            lambda: rate_of(n, lambda r: his_with_outbox(host, his, r)),
                            lambda: many_record_births(host, n, CALLERS),
                            lambda: anyio.to_thread.run_sync(many_plain_inserts, url, n, CALLERS),
                        )
            finally:
                admin(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    rows.append(Row(
        "PostgreSQL journal: record_birth, one after another", "births/s", ours,
        "plain psycopg INSERT + COMMIT", plain, target=0.5,
        note="each record_birth is one transaction of five round trips (BEGIN, the advisory locks on the birth's"
        " keys, the conflict lookup, the birth, the subscriptions; its events; NOTIFY + COMMIT) plus the hop to the"
        " journal's thread, against two statements: where the server's WAL flush is as quick as here (a fraction of"
        " a millisecond) the round trips and Python show; one after another it falls short of 0.5 ×, with"
        " callers at once (the next row) group commit makes up for it",
    ))
    rows.append(Row(
        f"PostgreSQL journal: record_birth from {CALLERS} tasks at once", "births/s", ours_many,
        f"plain INSERT + COMMIT from {CALLERS} threads, a connection each", plain_many, target=0.5,
        note="the host's group commit writes what the tasks ask meanwhile in one transaction; the HIS's"
        " own inserts commit one by one on their connections (the server groups their WAL flushes)",
    ))
    rows.append(Row(
        "the outbox: the HIS's transaction with record_birth(connection=)", "transactions/s", outboxed,
        "the HIS's INSERT + COMMIT alone", plain, target=None,
        note=f"overhead per HIS transaction: {1000 / outboxed.median - 1000 / plain.median:.2f} ms"
        " (the journal's statements on the HIS's connection, from a worker thread)",
    ))
    return rows


async def rate_of(count: int, one: Any) -> float:
    records = common.birth_records(count)
    started = time.perf_counter()
    for record in records:
        await one(record)
    return count / (time.perf_counter() - started)


CALLERS = 20


async def many_record_births(host: Host, count: int, callers: int) -> float:
    """Births/s of ``callers`` tasks each recording its share, one after another."""
    records = common.birth_records(count)
    shares = [records[i::callers] for i in range(callers)]

    async def caller(share: list[dict[str, Any]]) -> None:
        for record in share:
            await host.record_birth(record)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for share in shares:
            tg.start_soon(caller, share)
    return count / (time.perf_counter() - started)


def many_plain_inserts(url: str, count: int, callers: int) -> float:
    """Rows/s of ``callers`` threads, a connection each, each inserting and committing its share."""
    import threading

    import psycopg

    records = [msgspec_bytes(r) for r in common.birth_records(count)]
    connections = [psycopg.connect(url) for _ in range(callers)]
    start = threading.Barrier(callers + 1)

    def caller(i: int) -> None:
        conn = connections[i]
        start.wait()
        for n, record in enumerate(records[i::callers]):
            conn.execute("INSERT INTO his_birth (serial, record) VALUES (%s, %s)", (f"{i}-{n}", record))
            conn.commit()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for conn in connections:
        conn.close()
    return count / elapsed


async def plain_insert(his: Any, record: dict[str, Any]) -> None:
    his.execute("INSERT INTO his_birth (serial, record) VALUES (%s, %s)", (record["bke042"], msgspec_bytes(record)))
    his.commit()


async def his_with_outbox(host: Host, his: Any, record: dict[str, Any]) -> None:
    his.execute("INSERT INTO his_birth (serial, record) VALUES (%s, %s)", (record["bke042"], msgspec_bytes(record)))
    await host.record_birth(record, connection=his)
    his.commit()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    measured = anyio.run(lambda: measure(args.quick))
    print(common.table(measured))
    for row in measured:
        if row.note:
            print(f"* {row.name}: {row.note}")
