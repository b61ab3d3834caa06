"""Import time, each measured in a fresh interpreter.

``python -c`` children (run from a scratch folder, never the repository root) time the import
statement itself with ``time.perf_counter`` and print it: interpreter start-up is left out of both
sides.  The sides alternate, many times.

* ``import ybplug`` (the messages, what ``README`` calls light) against ``import aiohttp, msgspec,
  pluggy, anyio`` (its dependencies);
* ``from ybplug.host import Host`` (what a HIS that embeds the host imports) against the same;
* from the first statement to a host ready (``async with Host(Config(journal=...))`` entered:
  the imports, the journal opened, every installed plugin loaded, the background work started),
  the journal made beforehand, as a worker restarts, against the same dependencies' import;
* once, ``python -X importtime -c "from ybplug.host import Host"``, summed by top-level package,
  names what costs most.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import common
from common import Row

DEPS = "import aiohttp, msgspec, pluggy, anyio"
TIMER = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
READY = """
import time
t = time.perf_counter()
import asyncio
from ybplug.config import Config
from ybplug.host import Host


async def main():
    async with Host(Config(journal="journal.db", realname_interval=86400.0)):
        ready = time.perf_counter() - t
    print(ready)


asyncio.run(main())
"""


def host_ready(folder: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", READY], cwd=folder, capture_output=True, text=True, env=common.child_env(), check=True,
    )
    return float(done.stdout.strip().splitlines()[-1]) * 1000


def timed_import(statement: str, folder: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", TIMER.format(stmt=statement)],
        cwd=folder, capture_output=True, text=True, env=common.child_env(), check=True,
    )
    return float(done.stdout.strip()) * 1000


def heaviest(statement: str, folder: Path, count: int = 8) -> list[tuple[str, float]]:
    """Self import time (ms) summed by top-level package, from one ``-X importtime`` run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=folder, capture_output=True, text=True, env=common.child_env(), check=True,
    )
    costs: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        self_us, _, name = line[len("import time:"):].split("|")
        if not self_us.strip().isdigit():
            continue
        package = name.strip().split(".")[0]
        costs[package] = costs.get(package, 0.0) + int(self_us) / 1000
    return sorted(costs.items(), key=lambda kv: -kv[1])[:count]


def measure(quick: bool = False) -> list[Row]:
    repeats = 5 if quick else 15
    with common.scratch() as folder:
        timed_import("import ybplug", folder)  # warm the page cache and .pyc files
        timed_import("from ybplug.host import Host", folder)
        timed_import(DEPS, folder)
        host_ready(folder)  # makes the journal
        light, host, ready, deps = common.interleaved(
            repeats,
            lambda: timed_import("import ybplug", folder),
            lambda: timed_import("from ybplug.host import Host", folder),
            lambda: host_ready(folder),
            lambda: timed_import(DEPS, folder),
        )
        top = heaviest("from ybplug.host import Host", folder)
    rows = [
        Row("import ybplug (fresh interpreter)", "ms", light, "import aiohttp, msgspec, pluggy, anyio", deps,
            target=1.1, higher_is_better=False),
        Row("from ybplug.host import Host (fresh interpreter)", "ms", host, "import aiohttp, msgspec, pluggy, anyio", deps,
            higher_is_better=False),
        Row("fresh interpreter to a host ready (imports, journal open, installed plugins loaded)", "ms", ready,
            "import aiohttp, msgspec, pluggy, anyio", deps, target=1.3, higher_is_better=False),
    ]
    rows[1].note = "self import time by package (ms, one -X importtime run): " + ", ".join(f"{name} {ms:.0f}" for name, ms in top)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = measure(args.quick)
    print(common.table(rows))
    for row in rows:
        if row.note:
            print(row.note)


if __name__ == "__main__":
    main()
