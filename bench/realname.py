"""Real-name sweep (yb04.13.01.24) of 10,000 registered newborns.

Set-up (not timed): the sandbox registers 10,000 births through its own collection logic (called
in-process on the sandbox's database file before the sandbox process starts, which is the same
code an HTTP upload runs, minus HTTP), and real-names one in twenty of them, as the centre's daily
run does.  A journal holds the same 10,000 births as registered with their ``baz726`` (recorded
with ``Journal.record_births`` in one transaction, then marked registered in one transaction:
the state a journal is in after the uploads).  Each run sweeps a fresh copy of that journal.

ybplug: ``host.sync("realname")`` (``realname_batch`` = 100, the default), which asks in batches,
records the answers and delivers ``realname_resolved`` for the 500 real-named newborns to a no-op
async plugin.  Baseline: bare aiohttp posting the same ``RealNameQuery`` batches (the same
envelopes), one after the other, as the host does.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

import common
from common import Row

from ybplug.config import Config, WireConfig
from ybplug.fields import with_check_digit
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.journal import Journal
from ybplug.messages import COLLECT, REALNAME, RealNameQuery
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Sandbox

REAL_NAMED_EVERY = 20


class NoopRealName:
    ybplug_name = "bench.noop-realname"

    def __init__(self) -> None:
        self.resolved = 0

    @hookimpl
    async def realname_resolved(self, birth: Any, record: Any, birth_id: int, event_id: str) -> None:
        self.resolved += 1


def prepare(folder: Path, count: int) -> tuple[Path, list[str]]:
    """Register ``count`` births at the sandbox (its database file) and in a template journal."""
    births = common.births(count)
    centre = Sandbox(folder / "centre.db")
    numbers: list[str] = []
    for i, birth in enumerate(births):
        data = msgspec.to_builtins(birth)
        reply = centre.dispatch(COLLECT.funid, data)  # the sandbox's own collection logic
        if reply["flag"] != "1":
            raise RuntimeError(f"set-up: the sandbox refused a birth: {reply['cause']}")
        number = reply["data"]["baz726"]
        numbers.append(number)
        if i % REAL_NAMED_EVERY == 0:
            centre.real_name(number, id_number=with_check_digit(f"35020320250101{i % 1000:03d}"), name="陈小宝")
    centre.close()

    template = folder / "journal-template.db"
    journal = Journal(template).open()
    rows = journal.record_births(births)
    db = journal.db
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "UPDATE births SET state = 'registered', registration_number = ?, eligibility = '1', attempts = 1 WHERE id = ?",
        [(number, row.id) for (row, _), number in zip(rows, numbers, strict=True)],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    return template, numbers


def host_config(journal: Path, url: str) -> Config:
    return Config(
        journal=str(journal),
        upload="daily at 02:00",
        realname_interval=86400.0,
        wire=WireConfig(url=url, usr=SANDBOX_USR, pwd=SANDBOX_PWD),
    )


async def sweep(folder: Path, template: Path, url: str, count: int, run: int) -> float:
    """Seconds for host.sync("realname") on a fresh copy of the template journal."""
    journal = folder / f"journal-{run}.db"
    shutil.copyfile(template, journal)
    noop = NoopRealName()
    async with Host(host_config(journal, url), plugins=[noop], entry_points=False, background=False) as host:
        started = time.perf_counter()
        summary = await host.sync("realname")
        elapsed = time.perf_counter() - started
    expected = (count + REAL_NAMED_EVERY - 1) // REAL_NAMED_EVERY
    if summary["realname_checked"] != count or summary["real_named"] != expected or noop.resolved != expected:
        raise RuntimeError(f"sweep: {summary}, {noop.resolved} delivered")
    journal.unlink()
    return elapsed


async def bare_sweep(session: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for body in bodies:
        async with session.post(url, data=body, headers=common.HEADERS) as response:
            payload = await response.read()
        if response.status != 200 or common.OK_MARK not in payload:
            raise RuntimeError(f"baseline: real-name query failed (HTTP {response.status})")
    return time.perf_counter() - started


async def measure(quick: bool = False, sandbox_mode: str = "process") -> list[Row]:
    count = 10_000
    repeats = 3 if quick else 5
    batch = Config(journal="journal.db").realname_batch  # a journal named: no state folder made for the default
    with common.scratch() as folder:
        template, numbers = prepare(folder, count)
        bodies = [
            common.envelope(REALNAME.funid, RealNameQuery.of(numbers[i:i + batch]), SANDBOX_USR, SANDBOX_PWD)
            for i in range(0, count, batch)
        ]
        async with common.sandbox(folder, sandbox_mode) as url:
            business = url + common.BUSINESS_PATH
            async with aiohttp.ClientSession() as session:
                await bare_sweep(session, business, bodies[:5])  # warm-up
                runs = iter(range(1000))

                async def ours() -> float:
                    return count / await sweep(folder, template, url, count, next(runs))

                async def theirs() -> float:
                    return count / await bare_sweep(session, business, bodies)

                ours_stats, base_stats = await common.ainterleaved(repeats, ours, theirs)
    return [Row(
        f"real-name sweep of {count:,} registered newborns (host.sync(\"realname\"), batches of {batch}, "
        f"1 in {REAL_NAMED_EVERY} real-named → realname_resolved)",
        "newborns/s", ours_stats, f"bare aiohttp, same {len(bodies)} batches", base_stats, target=0.6,
    )]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sandbox", choices=["process", "inproc"], default="process")
    args = parser.parse_args()
    print(common.table(common.run_async(lambda: measure(args.quick, args.sandbox))))


if __name__ == "__main__":
    main()
