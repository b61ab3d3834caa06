"""What the console's background readers cost on a year's journal: one look of the alerts watch
(every ``check_seconds``, 60 by default, in the worker) and one ``/metrics`` scrape's figures.

The journal: 100,000 births (a third settled) and 200,000 exchanges with replies of real-name
size, 30 of them voucher calls (EcTrans), some parked deliveries; built once under the system's
temporary folder (``ybplug-bench-watch-100000``).  Baseline in the same run: the journal's own
``status()``, what ``ybplug status --check`` (a monitor's minute-by-minute query) reads.  Both
sides run in this process on an open journal, page cache warm: the queries alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import common
from common import Row

BIRTHS = 100_000
EXCHANGES = 200_000


def journal(count: int = BIRTHS) -> Path:
    """A journal of ``count`` births (a third settled) and EXCHANGES exchanges, 30 of them
    voucher crashes, built once."""
    now = time.time()
    reply = b'{"flag":1,"cause":"","rownum":1,"xsesmlb":[' + b'{"baz726":"XSE2612010000001","bae018":"N"},' * 4 + b'{}]}'

    def exchanges(db: Any) -> None:
        db.executemany(
            "INSERT INTO exchanges (funid, birth_id, reply, outcome, started_at, elapsed) VALUES (?, ?, ?, 'ok', ?, ?)",
            (("yb04.13.01.21" if i % 2 else "yb04.13.01.24", i % count + 1, reply, now - (EXCHANGES - i) * 60,
              0.05 + (i % 7) / 10) for i in range(EXCHANGES)),
        )
        db.executemany(
            "INSERT INTO exchanges (funid, outcome, error, started_at, elapsed) VALUES ('EcTrans', 'failed', ?, ?, 0.5)",
            (("the voucher library crashed (signal 11)", now - i * 3600) for i in range(30)),
        )

    return common.cached_journal("watch", count, exchanges)


def measure(quick: bool = False) -> list[Row]:
    from ybplug.alerts.checks import findings
    from ybplug.alerts.config import AlertsSection
    from ybplug.config import Config
    from ybplug.console.metrics import read_figures
    from ybplug.journal import Journal

    store = Journal(journal()).open()
    config, section = Config(upload="daily at 02:00"), AlertsSection()

    def timed(work: Any) -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started

    look = lambda: timed(lambda: findings(store, config, section, time.time()))  # noqa: E731
    scrape = lambda: timed(lambda: read_figures(store))  # noqa: E731
    status = lambda: timed(store.status)  # noqa: E731
    try:
        for side in (look, scrape, status):
            side()  # page cache warm
        repeats = 3 if quick else 7
        ours, baseline = common.interleaved(repeats, look, status)
        metrics, baseline2 = common.interleaved(repeats, scrape, status)
    finally:
        store.close()
    size = f"{BIRTHS:,} births, {EXCHANGES:,} exchanges"
    return [
        Row(f"alerts: one look, {size}", "s", ours, "journal status()", baseline, target=0.1, higher_is_better=False,
            absolute=True, note="every check_seconds (60)"),
        Row(f"/metrics: one scrape's figures, {size}", "s", metrics, "journal status()", baseline2,
            higher_is_better=False, note="reads every exchange"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(common.table(measure(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
