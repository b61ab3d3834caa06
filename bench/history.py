"""Flat as history grows: the daily work with 1,000,000 settled births in the journal.

A large hospital registers about 30,000 newborns a year; after decades, or after merging the
journals of a group, the journal holds a million births that are done with: real-named (19 in
20) or past the real-name horizon (stale), each with its upload exchange and answer, its
``collection_result`` and ``realname_resolved`` events delivered to the hospital's plugin, and a
real-name exchange per batch of 100.  The daily work must not slow down because of them.

The journal is built once, by bulk SQL (not through the host: that would take an hour), and
cached in the system's temporary folder (``ybplug-bench-history-v2-1000000.db``; ``--rebuild``
builds it again); each measure copies it, so the cache stays as built.  The table reports its
size per settled birth.

Each run, on both journals alike: the HIS records a day's births (not timed), then timed:
``host.sync("upload")`` (the daily upload, default configuration) and ``host.sync("realname")``
(the sweep asks about the registered newborns: the day's births), with a plugin receiving
``collection_result`` and ``realname_resolved``.  Afterwards the day's births are marked real-named
(not timed), so every run sweeps the same number.  ybplug with the big history against ybplug
with an empty one, interleaved, against the same sandbox.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

import common
from common import Row, Stats

from ybplug import events
from ybplug.config import Config, WireConfig
from ybplug.fields import trusted
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.journal import Journal
from ybplug.messages import CollectionResult, RealNameRecord
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR

PLUGIN = "bench.hospital"
YEAR = 365.25 * 86400


class Hospital:
    """The hospital's plugin: hears both results, does nothing with them."""

    ybplug_name = PLUGIN

    def __init__(self) -> None:
        self.results = 0
        self.resolved = 0

    @hookimpl
    async def collection_result(self, birth: Any, result: Any, birth_id: int, event_id: str) -> None:
        self.results += 1

    @hookimpl
    async def realname_resolved(self, birth: Any, record: Any, birth_id: int, event_id: str) -> None:
        self.resolved += 1


def cache_path(count: int) -> Path:
    return Path(tempfile.gettempdir()) / f"ybplug-bench-history-v2-{count}.db"


def build(path: Path, count: int) -> float:
    """Write ``count`` settled births with their exchanges, events and deliveries; seconds taken."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm", ".id", ".tmp"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    tmp = Path(str(path) + ".tmp")
    journal = Journal(tmp).open()
    journal.subscribe({"collection_result": [PLUGIN], "realname_resolved": [PLUGIN]})
    journal.close()
    Path(str(tmp) + ".id").unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # a cache built once: durability is not the point here
    db.execute("PRAGMA cache_size=-200000")
    template = common.births(1)[0]
    encode = msgspec.json.Encoder().encode
    now = time.time()
    first = now - 5 * YEAR
    step = (5 * YEAR - 2 * 86400) / count
    epoch = datetime(2021, 1, 1)
    chunk = 20_000
    for start in range(0, count, chunk):
        births, exchanges, event_rows, deliveries = [], [], [], []
        for i in range(start, min(count, start + chunk)):
            birth_id = i + 1
            created = first + i * step
            born = int((epoch + timedelta(seconds=created - first)).strftime("%Y%m%d%H%M%S"))
            with trusted():  # checked once, in the template
                birth = msgspec.structs.replace(
                    template, birth_time=born, his_serial=f"HIS-H{i:09d}", medical_serial=f"ZY-H{i:09d}",
                )
            number = f"XSE{2000000000000 + i:013d}"
            stale = i % 20 == 19
            state = "stale" if stale else "real_named"
            births.append((birth_id, birth.mother_id_number, birth.birth_time, 1, birth.his_serial, encode(birth), state,
                           number, "1", 1, created, created + 7 * 86400, created + 60))
            result = CollectionResult(flag=1, cause="", registration_number=number, eligibility="1")
            exchanges.append((birth_id, "yb04.13.01.21", birth_id, encode(result), "ok", created + 60, 0.004))
            for hook, event in (
                ("collection_result", events.CollectionResultEvent(birth=birth, result=result, birth_id=birth_id)),
                *(() if stale else ((
                    "realname_resolved",
                    events.RealnameResolvedEvent(birth=birth, record=RealNameRecord(
                        registration_number=number, real_name_flag="1", certificate_type="01",
                        id_number="350203202501010016", name="陈小宝", sex="1",
                    ), birth_id=birth_id),
                ),)),
            ):
                event_id = uuid.uuid4().hex
                at = created + (60 if hook == "collection_result" else 3 * 86400)
                event_rows.append((event_id, hook, birth_id, events.encode(event), at))
                deliveries.append((event_id, PLUGIN, "delivered", 1, at, at + 0.01))
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO births (id, mother_id, birth_time, multiple_birth_number, his_serial, record, state,"
            " registration_number, eligibility, attempts, created_at, updated_at, registered_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", births,
        )
        db.executemany(
            "INSERT INTO exchanges (id, funid, birth_id, reply, outcome, started_at, elapsed) VALUES (?, ?, ?, ?, ?, ?, ?)",
            exchanges,
        )
        db.executemany("INSERT INTO events (id, hook, birth_id, payload, created_at) VALUES (?, ?, ?, ?, ?)", event_rows)
        db.executemany(
            "INSERT INTO deliveries (event_id, plugin, state, attempts, next_attempt_at, delivered_at)"
            " VALUES (?, ?, ?, ?, ?, ?)", deliveries,
        )
        db.execute("COMMIT")
    # the real-name exchanges: one per batch of 100, with its answer
    reply = b'{"flag":1,"cause":"","rownum":100,"xsesmlb":[' + b",".join([b'{"baz726":"XSE2000000000000","bae018":"1"}'] * 100) + b"]}"
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO exchanges (funid, reply, outcome, started_at, elapsed) VALUES ('yb04.13.01.24', ?, 'ok', ?, 0.01)",
        [(reply, first + i * step) for i in range(0, count, 100)],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    tmp.replace(path)
    return time.perf_counter() - started


def day_config(journal: Path, url: str) -> Config:
    return Config(
        journal=str(journal), upload="daily at 02:00", realname_interval=86400.0,
        wire=WireConfig(url=url, usr=SANDBOX_USR, pwd=SANDBOX_PWD),
    )


async def daily(journal: Path, url: str, day: int) -> float:
    """Record a day's births (not timed), then time the daily upload and the real-name sweep."""
    hospital = Hospital()
    async with Host(day_config(journal, url), plugins=[hospital], entry_points=False, background=False) as host:
        ids = [(await host.record_birth(record)).birth_id for record in common.birth_records(day)]
        started = time.perf_counter()
        uploaded = await host.sync("upload")
        swept = await host.sync("realname")
        elapsed = time.perf_counter() - started
        if uploaded.get("uploaded") != day or swept.get("realname_checked") != day or hospital.results != day:
            raise RuntimeError(f"daily: {uploaded}, {swept}, {hospital.results} results delivered")
        marks = ",".join("?" * len(ids))

        def settle() -> None:  # the day's newborns real-named: every run sweeps the same number
            host.journal.db.execute(f"UPDATE births SET state = 'real_named' WHERE id IN ({marks})", ids)

        await host.run_journal(settle)
    return elapsed


async def measure(quick: bool = False, sandbox_mode: str = "process", rebuild: bool = False,
                  count: int = 1_000_000) -> list[Row]:
    repeats = 3 if quick else 5
    day = 100 if quick else 300
    cached = cache_path(count)
    note = ""
    if rebuild or not cached.exists():
        seconds = build(cached, count)
        note = f"journal built in {seconds:.0f} s; "
    size = cached.stat().st_size
    with common.scratch() as folder:
        big = folder / "big.db"
        started = time.perf_counter()
        shutil.copyfile(cached, big)
        copied = time.perf_counter() - started
        empty = folder / "empty.db"
        async with common.sandbox(folder, sandbox_mode) as url:
            await daily(big, url, 20)  # warm both (and the page cache)
            await daily(empty, url, 20)

            async def ours() -> float:
                return day / await daily(big, url, day)

            async def theirs() -> float:
                return day / await daily(empty, url, day)

            big_stats, empty_stats = await common.ainterleaved(repeats, ours, theirs)
    # seconds per day's work: the target is on time (≤ 1.2 × the empty history's)
    row = Row(
        f"daily upload + real-name sweep of a day's births ({day}), {count:,} settled births in the journal",
        "s", Stats([day / v for v in big_stats.values]), "same, empty history",
        Stats([day / v for v in empty_stats.values]), target=1.2, higher_is_better=False,
    )
    row.note = (
        f"{note}the journal: {size / 2**20:,.0f} MiB, {size / count:,.0f} bytes per settled birth "
        f"(cached in {cached}; copied in {copied:.1f} s)"
    )
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="build the cached journal again")
    parser.add_argument("--count", type=int, default=1_000_000, help="settled births in the big journal")
    parser.add_argument("--sandbox", choices=["process", "inproc"], default="process")
    args = parser.parse_args()
    rows = common.run_async(lambda: measure(args.quick, args.sandbox, args.rebuild, args.count))
    print(common.table(rows))
    for row in rows:
        print(f"{row.name}: {row.note}")


if __name__ == "__main__":
    main()
