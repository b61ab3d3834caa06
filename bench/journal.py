"""Durable writes: ``host.record_birth`` against plain sqlite3 inserts with the same durability.

ybplug: ``await host.record_birth(record)`` with a dict of the spec's field names (what a HIS
passes), one call after the other: validation, a hop to the journal thread, one transaction
(birth row, its ``birth_recorded`` event, a delivery row for the hospital plugin that subscribes
to it) committed with ``synchronous = FULL`` in WAL mode.  Durable when it returns.

Baseline: plain ``sqlite3`` on the same machine and file system, WAL + ``synchronous = FULL``,
one ``INSERT`` of the same encoded record per transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``),
in the calling thread.

A second row records from 16 concurrent callers (16 HIS workstations at once) against the same
baseline: the journal serialises them, one commit each.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

import common
from common import Row

from ybplug.config import Config
from ybplug.hooks import hookimpl
from ybplug.host import Host


class Subscriber:
    """A hospital plugin that wants ``birth_recorded`` (so each record also queues a delivery)."""

    ybplug_name = "bench.subscriber"

    @hookimpl
    async def birth_recorded(self, birth: Any, birth_id: int, event_id: str) -> None:
        pass


def plain_sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS births (id INTEGER PRIMARY KEY, record BLOB NOT NULL)")
    return db


def bare_inserts(db: sqlite3.Connection, records: list[bytes]) -> float:
    started = time.perf_counter()
    for record in records:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO births (record) VALUES (?)", (record,))
        db.execute("COMMIT")
    return time.perf_counter() - started


async def record_all(host: Host, records: list[dict[str, Any]], concurrency: int) -> float:
    feed = iter(records)

    async def clerk() -> None:
        for record in feed:
            result = await host.record_birth(record)
            assert result.created

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(clerk)
    return time.perf_counter() - started


def direct_write_seconds(host: Host, count: int = 200) -> float:
    """Median of ``journal.record_births([birth])`` called directly on one thread: the write alone
    (on a journal of its own beside the host's: the host's refuses any thread but its own)."""
    from ybplug.journal import Journal

    journal = Journal(host.journal.path.with_name("direct-" + host.journal.path.name)).open()
    samples = []
    try:
        for birth in common.births(count):
            started = time.perf_counter()
            journal.record_births([birth])
            samples.append(time.perf_counter() - started)
    finally:
        journal.close()
    return statistics.median(samples)


def check_seconds(count: int = 300) -> float:
    """Median cost of validating one birth dict (``load(Birth, record)``), what record_birth does first."""
    from ybplug.messages import Birth, load

    records = common.birth_records(count)
    started = time.perf_counter()
    for record in records:
        load(Birth, record)
    return (time.perf_counter() - started) / count


async def measure(quick: bool = False) -> list[Row]:
    repeats = 3 if quick else 5
    count = 300 if quick else 600
    rows: list[Row] = []
    with common.scratch() as folder:
        db = plain_sqlite(folder / "plain.db")
        config = Config(journal=str(folder / "journal.db"), upload="daily at 02:00")
        async with Host(config, plugins=[Subscriber()], entry_points=False, background=False) as host:
            await record_all(host, common.birth_records(20), 1)
            bare_inserts(db, [msgspec.json.encode(r) for r in common.birth_records(20)])
            for concurrency in (1, 16):

                async def ours() -> float:
                    return count / await record_all(host, common.birth_records(count), concurrency)

                async def theirs() -> float:
                    encoded = [msgspec.json.encode(b) for b in common.births(count)]
                    return count / bare_inserts(db, encoded)

                ours_stats, base_stats = await common.ainterleaved(repeats, ours, theirs)
                rows.append(Row(
                    f"record_birth durable writes, {concurrency} caller{'s' if concurrency > 1 else ''}",
                    "writes/s", ours_stats, "plain sqlite3 insert+commit, WAL, synchronous=FULL", base_stats,
                    target=0.5 if concurrency == 1 else None,
                ))
                if concurrency == 1:
                    write = await anyio.to_thread.run_sync(direct_write_seconds, host)
                    check = check_seconds()
                    commit, total = 1 / base_stats.median, 1 / ours_stats.median
                    rows[-1].note = (
                        f"per write: plain commit {commit * 1e6:.0f} µs; record_birth {total * 1e6:.0f} µs = checking "
                        f"the birth {check * 1e6:.0f} µs + the journal transaction {write * 1e6:.0f} µs (called "
                        f"directly) + {max(0.0, total - check - write) * 1e6:.0f} µs getting to the journal thread "
                        f"and back (the event loop idles during the fsync and wakes slowly on this VM)"
                    )
        db.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(common.table(common.run_async(lambda: measure(args.quick))))


if __name__ == "__main__":
    main()
