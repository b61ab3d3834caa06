"""Collection pipeline: births recorded -> uploaded (yb04.13.01.21) -> collection_result delivered.

ybplug side: a :class:`ybplug.host.Host` (built-in plugins, no entry points) with a no-op async
``collection_result`` plugin, against the sandbox centre in its own process.

* **end to end at concurrency N** (``upload = "immediate"``, ``upload_concurrency`` N, background
  work on): the HIS calls ``record_birth`` from N tasks, each one birth after the other (an
  interface feed at 1; a backfill script or fifty workstations at 50); the upload loop wakes as
  they arrive and uploads N at a time; the delivery loop hands each answer to the plugin.  Timed
  from the first ``record_birth`` to the last ``collection_result``.
* **backlog drain at 50**: the births are already in the journal (after an outage); timed
  ``host.sync("upload")``, which returns once every answer is delivered.
* **latency at concurrency 1**: one birth at a time, ``record_birth`` -> its ``collection_result``;
  the note computes the floor durability allows (a POST plus three fsync'd commits).

Baseline: a bare aiohttp client posting the same envelopes (the bytes HttpTransport sends) for
other, never-seen births (the sandbox refuses a repeated birth) to the same sandbox, with the
same concurrency: N workers over one session.

Last row, "sandbox headroom": the same bare client at 50 against the sandbox and against a
canned-reply aiohttp server in its own process: whether the sandbox limits the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio

import common
from common import Row, Stats

from ybplug.config import Config, WireConfig
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.messages import COLLECT
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR


class NoopHospital:
    """A hospital plugin that does nothing but count ``collection_result`` deliveries."""

    ybplug_name = "bench.noop"

    def __init__(self) -> None:
        self.delivered = 0
        self.refused = 0
        self.target = 0
        self.done: anyio.Event | None = None

    def expect(self, count: int) -> anyio.Event:
        self.target = self.delivered + count
        self.done = anyio.Event()
        return self.done

    @hookimpl
    async def collection_result(self, birth: Any, result: Any, birth_id: int, event_id: str) -> None:
        self.delivered += 1
        if not result.ok:
            self.refused += 1
        if self.done is not None and self.delivered >= self.target:
            self.done.set()


def host_config(folder: Path, url: str, concurrency: int, upload: str, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "journal": str(folder / f"journal-{upload.split()[0]}-{concurrency}.db"),
        "upload": upload,
        "upload_concurrency": concurrency,
        "realname_interval": 86400.0,
        "wire": WireConfig(url=url, usr=SANDBOX_USR, pwd=SANDBOX_PWD),
    }
    values.update(overrides)
    return Config(**values)


# --------------------------------------------------------------------------------------------
# Baseline


async def bare_post(session: aiohttp.ClientSession, url: str, body: bytes) -> None:
    async with session.post(url, data=body, headers=common.HEADERS) as response:
        payload = await response.read()
    if response.status != 200 or common.OK_MARK not in payload:
        raise RuntimeError(f"baseline: the sandbox did not register a birth (HTTP {response.status})")


async def bare_run(session: aiohttp.ClientSession, url: str, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to post every body, ``concurrency`` at a time."""
    feed = iter(bodies)

    async def worker() -> None:
        for body in feed:
            await bare_post(session, url, body)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter() - started


def bare_bodies(count: int) -> list[bytes]:
    return [common.envelope(COLLECT.funid, b, SANDBOX_USR, SANDBOX_PWD) for b in common.births(count)]


def bare_session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(concurrency, 1)))


# --------------------------------------------------------------------------------------------
# ybplug


async def end_to_end(host: Host, noop: NoopHospital, count: int, concurrency: int = 1) -> float:
    """Seconds from the first record_birth to the last collection_result (immediate upload).

    The HIS records with ``concurrency`` tasks (one interface feed at 1; a backfill script or
    fifty workstations at 50), each one birth after the other.
    """
    feed = iter(common.birth_records(count))
    done = noop.expect(count)

    async def his() -> None:
        for record in feed:
            await host.record_birth(record)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(his)
    await done.wait()
    return time.perf_counter() - started


async def drain(host: Host, noop: NoopHospital, count: int) -> float:
    """Seconds for host.sync("upload") over ``count`` births already in the journal."""
    batch = common.births(count)
    await host.run_journal(host.journal.record_births, batch)
    done = noop.expect(count)
    started = time.perf_counter()
    summary = await host.sync("upload")
    await done.wait()
    elapsed = time.perf_counter() - started
    if summary.get("uploaded") != count:
        raise RuntimeError(f"drain: {summary}")
    return elapsed


async def latency_one(host: Host, noop: NoopHospital) -> float:
    record = common.birth_records(1)[0]
    done = noop.expect(1)
    started = time.perf_counter()
    await host.record_birth(record)
    await done.wait()
    return time.perf_counter() - started


def commit_seconds(folder: Path, commits: int = 60) -> float:
    """Median seconds of one fsync'd SQLite commit here (WAL, synchronous=FULL): the durability unit."""
    import sqlite3

    db = sqlite3.connect(folder / "fsync-probe.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (v BLOB)")
    samples = []
    for _ in range(commits):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 400,))
        db.execute("COMMIT")
        samples.append(time.perf_counter() - started)
    db.close()
    return statistics.median(samples)


# --------------------------------------------------------------------------------------------


async def measure(quick: bool = False, sandbox_mode: str = "process") -> list[Row]:
    repeats = 3 if quick else 5
    n1 = 60 if quick else 300
    n50 = 400 if quick else 1500
    lat_n = 30 if quick else 120
    rows: list[Row] = []
    with common.scratch() as folder:
        async with common.sandbox(folder, sandbox_mode) as url:
            business = url + common.BUSINESS_PATH
            for concurrency, count in ((1, n1), (50, n50)):
                noop = NoopHospital()
                config = host_config(folder, url, concurrency, "immediate", upload_batch=max(50, concurrency))
                async with Host(config, plugins=[noop], entry_points=False) as host, bare_session(concurrency) as session:
                    # warm both sides up (connections, statement caches, first imports)
                    await end_to_end(host, noop, 20, concurrency)
                    await bare_run(session, business, bare_bodies(20), concurrency)

                    async def ours() -> float:
                        return count / await end_to_end(host, noop, count, concurrency)

                    async def theirs() -> float:
                        bodies = bare_bodies(count)
                        return count / await bare_run(session, business, bodies, concurrency)

                    ours_stats, base_stats = await common.ainterleaved(repeats, ours, theirs)
                    rows.append(Row(
                        f"pipeline, record_birth → upload → collection_result, concurrency {concurrency} ({count} births a run)",
                        "births/s", ours_stats, f"bare aiohttp, {concurrency} at a time", base_stats,
                        target=0.6 if concurrency == 50 else None,
                    ))
                    if concurrency == 1:
                        lat_ours: list[float] = []
                        lat_base: list[float] = []
                        for _ in range(repeats):
                            lat_ours.append(1000 * statistics.median([await latency_one(host, noop) for _ in range(lat_n)]))
                            samples = []
                            for body in bare_bodies(lat_n):
                                started = time.perf_counter()
                                await bare_post(session, business, body)
                                samples.append(time.perf_counter() - started)
                            lat_base.append(1000 * statistics.median(samples))
                        fsync = commit_seconds(folder) * 1000
                        row = Row(
                            f"pipeline latency at concurrency 1, one birth: record_birth → its collection_result "
                            f"(median of {lat_n} a run)",
                            "ms", Stats(lat_ours), "one bare aiohttp POST", Stats(lat_base),
                            target=1.2, higher_is_better=False,
                        )
                        floor = Stats(lat_base).median + 3 * fsync
                        row.note = (
                            f"durability floor: one fsync'd commit costs {fsync:.2f} ms here; a POST plus the three "
                            f"commits no design can skip (the birth before record_birth returns, the exchange "
                            f"before the request leaves, the answer with its event) = {floor:.2f} ms = "
                            f"{floor / Stats(lat_base).median:.1f} × the POST"
                        )
                        rows.append(row)
                if noop.refused:
                    raise RuntimeError(f"{noop.refused} births refused by the sandbox")

            # backlog drain: births already journaled, host.sync("upload"), 50 at a time
            noop = NoopHospital()
            config = host_config(folder, url, 50, "daily at 02:00", upload_batch=50)
            async with Host(config, plugins=[noop], entry_points=False) as host, bare_session(50) as session:
                await drain(host, noop, 20)

                async def ours_drain() -> float:
                    return n50 / await drain(host, noop, n50)

                async def theirs_drain() -> float:
                    return n50 / await bare_run(session, business, bare_bodies(n50), 50)

                ours_stats, base_stats = await common.ainterleaved(repeats, ours_drain, theirs_drain)
                rows.append(Row(
                    f"pipeline backlog drain, journaled births: host.sync(\"upload\") → collection_result, "
                    f"concurrency 50 ({n50} births a run)",
                    "births/s", ours_stats, "bare aiohttp, 50 at a time", base_stats, target=0.6,
                ))

        # Is the sandbox the limit of the baseline?  The same bare client against a centre that costs nothing.
        with common.CannedCentre(folder / "canned.db") as canned:
            canned_business = canned.url + common.BUSINESS_PATH
            async with common.sandbox(folder, sandbox_mode) as url, bare_session(50) as session:
                business = url + common.BUSINESS_PATH
                await bare_run(session, business, bare_bodies(50), 50)
                await bare_run(session, canned_business, bare_bodies(50), 50)

                async def against_sandbox() -> float:
                    return n50 / await bare_run(session, business, bare_bodies(n50), 50)

                async def against_canned() -> float:
                    return n50 / await bare_run(session, canned_business, bare_bodies(n50), 50)

                sandbox_stats, canned_stats = await common.ainterleaved(repeats, against_sandbox, against_canned)
        row = Row(
            "sandbox headroom: the bare aiohttp baseline at concurrency 50 against the sandbox",
            "req/s", sandbox_stats, "same client against a canned-reply aiohttp server", canned_stats,
        )
        row.note = "a ratio well under 1 means the sandbox, not the client, limits the concurrency-50 baseline"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sandbox", choices=["process", "inproc"], default="process")
    args = parser.parse_args()
    rows = common.run_async(lambda: measure(args.quick, args.sandbox))
    print(common.table(rows))
    for row in rows:
        if row.note:
            print(f"{row.name}: {row.note}")


if __name__ == "__main__":
    main()
