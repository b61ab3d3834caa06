"""ybplug against the client a hospital would otherwise write by hand.

The baseline, :class:`HandWrittenClient`, is what a HIS developer writes in an afternoon: one
birth after the other, synchronously, with the standard library only (``http.client`` over one
kept-alive connection, ``json``, ``sqlite3`` in WAL mode with ``synchronous=FULL``, as durable as
the journal): insert the birth and commit, POST the envelope to the agent, store the answer and
commit.  No validation beyond what the centre does, no retries, no audit of exchanges, no hooks:
the work it does not do is what ybplug adds, and ybplug must still not be slower.

* **end to end at concurrency 1**: the HIS records births one after the other (one interface
  feed); ybplug with ``upload = "immediate"`` and its default configuration, timed from the first
  ``record_birth`` to the last ``collection_result``; the hand-written client registers each birth
  before the next.
* **latency at concurrency 1**: one birth, ``record_birth`` to its ``collection_result``, against
  one hand-written registration (insert, POST, store the answer).
* **backlog drain**: the daily upload of a day's births already recorded (ybplug's default
  ``daily at 02:00`` schedule, default configuration, ``host.sync("upload")`` until the last
  ``collection_result``), against the hand-written daily script: select the pending births, and
  for each POST and store the answer.

Both sides talk to the same sandbox centre, in its own process, with distinct births.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import statistics
import time
import urllib.parse
from pathlib import Path
from typing import Any

import common
from common import Row

from ybplug.config import Config, WireConfig
from ybplug.host import Host
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR

from pipeline import NoopHospital


class HandWrittenClient:
    """The synchronous client, written plainly (see the module's docstring)."""

    def __init__(self, db_path: Path, url: str, usr: str, pwd: str) -> None:
        self.db = sqlite3.connect(db_path, isolation_level=None)  # autocommit: each statement commits
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS births (id INTEGER PRIMARY KEY, record TEXT NOT NULL,"
            " state TEXT NOT NULL DEFAULT 'pending', registration_number TEXT, reply TEXT)"
        )
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        self.usr, self.pwd = usr, pwd

    def record(self, birth: dict[str, Any]) -> int:
        cursor = self.db.execute("INSERT INTO births (record) VALUES (?)", (json.dumps(birth, ensure_ascii=False),))
        return int(cursor.lastrowid or 0)

    def upload(self, birth_id: int, birth: dict[str, Any]) -> str:
        inner = json.dumps({"funid": "yb04.13.01.21", "usr": self.usr, "pwd": self.pwd, "data": birth}, ensure_ascii=False)
        body = json.dumps({"inputValue": inner, "outputLen": 20000}, ensure_ascii=False).encode("utf-8")
        self.connection.request(
            "POST", "/sieaf/business_handle/", body, {"Content-Type": "application/json; charset=utf-8"}
        )
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        answer = json.loads(json.loads(payload)["data"]["outputValue"])
        if str(answer.get("flag")) == "1":
            state, number = "registered", answer["data"]["baz726"]
        else:
            state, number = "refused", None
        self.db.execute(
            "UPDATE births SET state = ?, registration_number = ?, reply = ? WHERE id = ?",
            (state, number, payload.decode("utf-8"), birth_id),
        )
        return state

    def register(self, birth: dict[str, Any]) -> str:
        return self.upload(self.record(birth), birth)

    def upload_pending(self) -> int:
        """The daily script: every birth still pending, one after the other."""
        rows = self.db.execute("SELECT id, record FROM births WHERE state = 'pending' ORDER BY id").fetchall()
        for birth_id, record in rows:
            if self.upload(birth_id, json.loads(record)) != "registered":
                raise RuntimeError("hand-written: the sandbox refused a birth")
        return len(rows)

    def close(self) -> None:
        self.connection.close()
        self.db.close()


def host_config(folder: Path, url: str, name: str, **overrides: Any) -> Config:
    """The default configuration, but for the journal, the centre and the schedule."""
    values: dict[str, Any] = {
        "journal": str(folder / f"journal-{name}.db"),
        "realname_interval": 86400.0,
        "wire": WireConfig(url=url, usr=SANDBOX_USR, pwd=SANDBOX_PWD),
    }
    values.update(overrides)
    return Config(**values)


async def ybplug_end_to_end(host: Host, noop: NoopHospital, count: int) -> float:
    feed = common.birth_records(count)
    done = noop.expect(count)
    started = time.perf_counter()
    for record in feed:
        await host.record_birth(record)
    await done.wait()
    return time.perf_counter() - started


def handwritten_end_to_end(client: HandWrittenClient, count: int) -> float:
    feed = common.birth_records(count)
    started = time.perf_counter()
    for record in feed:
        if client.register(record) != "registered":
            raise RuntimeError("hand-written: the sandbox refused a birth")
    return time.perf_counter() - started


async def ybplug_latency(host: Host, noop: NoopHospital) -> float:
    record = common.birth_records(1)[0]
    done = noop.expect(1)
    started = time.perf_counter()
    await host.record_birth(record)
    await done.wait()
    return time.perf_counter() - started


def handwritten_latency(client: HandWrittenClient) -> float:
    record = common.birth_records(1)[0]
    started = time.perf_counter()
    client.register(record)
    return time.perf_counter() - started


async def ybplug_drain(host: Host, noop: NoopHospital, count: int) -> float:
    for record in common.birth_records(count):  # recorded through the day (not timed)
        await host.record_birth(record)
    done = noop.expect(count)
    started = time.perf_counter()
    summary = await host.sync("upload")
    await done.wait()
    elapsed = time.perf_counter() - started
    if summary.get("uploaded") != count:
        raise RuntimeError(f"drain: {summary}")
    return elapsed


def handwritten_drain(client: HandWrittenClient, count: int) -> float:
    for record in common.birth_records(count):
        client.record(record)
    started = time.perf_counter()
    if client.upload_pending() != count:
        raise RuntimeError("hand-written drain: not every birth was pending")
    return time.perf_counter() - started


async def measure(quick: bool = False, sandbox_mode: str = "process") -> list[Row]:
    repeats = 3 if quick else 5
    n1 = 60 if quick else 300
    lat_n = 30 if quick else 100
    day = 200 if quick else 1000
    rows: list[Row] = []
    with common.scratch() as folder:
        async with common.sandbox(folder, sandbox_mode) as url:
            client = HandWrittenClient(folder / "handwritten.db", url, SANDBOX_USR, SANDBOX_PWD)
            try:
                noop = NoopHospital()
                async with Host(host_config(folder, url, "immediate", upload="immediate"),
                                plugins=[noop], entry_points=False) as host:
                    await ybplug_end_to_end(host, noop, 20)
                    handwritten_end_to_end(client, 20)

                    async def ours() -> float:
                        return n1 / await ybplug_end_to_end(host, noop, n1)

                    async def theirs() -> float:
                        return n1 / handwritten_end_to_end(client, n1)

                    ours_stats, base_stats = await common.ainterleaved(repeats, ours, theirs)
                    rows.append(Row(
                        f"end to end at concurrency 1: record_birth → collection_result, one birth after the other "
                        f"({n1} a run)", "births/s", ours_stats, "hand-written synchronous client", base_stats,
                        target=1.0,
                    ))

                    async def ours_latency() -> float:
                        return 1000 * statistics.median([await ybplug_latency(host, noop) for _ in range(lat_n)])

                    async def theirs_latency() -> float:
                        return 1000 * statistics.median([handwritten_latency(client) for _ in range(lat_n)])

                    ours_stats, base_stats = await common.ainterleaved(repeats, ours_latency, theirs_latency)
                    rows.append(Row(
                        f"latency at concurrency 1: record_birth → its collection_result (median of {lat_n} a run)",
                        "ms", ours_stats, "hand-written: insert, POST, store the answer", base_stats,
                        target=1.0, higher_is_better=False,
                    ))
                if noop.refused:  # this phase's hospital: the drain below gets a new one
                    raise RuntimeError(f"{noop.refused} births refused by the sandbox")
                noop = NoopHospital()
                async with Host(host_config(folder, url, "daily"), plugins=[noop], entry_points=False) as host:
                    await ybplug_drain(host, noop, 20)
                    handwritten_drain(client, 20)

                    async def ours_drain() -> float:
                        return day / await ybplug_drain(host, noop, day)

                    async def theirs_drain() -> float:
                        return day / handwritten_drain(client, day)

                    ours_stats, base_stats = await common.ainterleaved(repeats, ours_drain, theirs_drain)
                    rows.append(Row(
                        f"backlog drain: the daily upload of a day's births ({day}), default configuration, "
                        "host.sync(\"upload\") → the last collection_result",
                        "births/s", ours_stats, "hand-written daily script, one birth after the other", base_stats,
                        target=5.0,
                    ))
                if noop.refused:
                    raise RuntimeError(f"{noop.refused} births refused by the sandbox")
            finally:
                client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sandbox", choices=["process", "inproc"], default="process")
    args = parser.parse_args()
    rows = common.run_async(lambda: measure(args.quick, args.sandbox))
    print(common.table(rows))


if __name__ == "__main__":
    main()
