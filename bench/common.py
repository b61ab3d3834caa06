"""What every benchmark shares: statistics, the result table, distinct births, the sandbox process.

Each figure is the median of several runs with their min and max, and beside it the same work
done by a baseline *in the same run* (the machine is shared and noisy: only ratios measured side
by side mean anything).  Runs of the two sides are interleaved (ybplug, baseline, ybplug, ...)
so that a burst of load from someone else hits both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


# --------------------------------------------------------------------------------------------
# Statistics and the table


@dataclass
class Stats:
    """Median, min and max of repeated measurements (all in the same unit)."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def show(self, digits: int | None = None) -> str:
        return f"{fmt(self.median, digits)} ({fmt(self.min, digits)}–{fmt(self.max, digits)})"


def fmt(value: float, digits: int | None = None) -> str:
    """Three significant figures, thousands separated: 9,310 / 812 / 2.41 / 0.503."""
    if digits is not None:
        return f"{value:,.{digits}f}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


@dataclass
class Row:
    """One line of the table.

    ``higher_is_better``: births/s (ratio = ours / baseline, target a minimum) or the reverse,
    seconds, megabytes (target a maximum).  ``target`` is the limit on the ratio (or, with
    ``absolute`` set, on the median itself); None means "report only".
    """

    name: str
    unit: str
    ours: Stats
    baseline_name: str = "—"
    baseline: Stats | None = None
    target: float | None = None
    higher_is_better: bool = True
    absolute: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline.median == 0:
            return None
        return self.ours.median / self.baseline.median

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "report"
        sign = "≥" if self.higher_is_better else "≤"
        if self.absolute:
            return f"{sign} {fmt(self.target)} {self.unit}"
        return f"{sign} {self.target:g} ×"

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        value = self.ours.median if self.absolute else self.ratio
        if value is None:
            return "?"
        ok = value >= self.target if self.higher_is_better else value <= self.target
        return "met" if ok else "**MISSED**"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (readable in a terminal too)."""
    head = ["figure", "ybplug: median (min–max)", "baseline in the same run: median (min–max)", "ratio", "target", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        baseline = "—" if row.baseline is None else f"{row.baseline_name}: {row.baseline.show()} {row.unit}"
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.name} | {row.ours.show()} {row.unit} | {baseline} | {ratio} | {row.target_text} | {row.verdict} |"
        )
    return "\n".join(lines)


def interleaved(repeats: int, *sides: Callable[[], float]) -> list[Stats]:
    """Run each side ``repeats`` times, alternating (and rotating which goes first)."""
    values: list[list[float]] = [[] for _ in sides]
    for r in range(repeats):
        order = list(range(len(sides)))
        order = order[r % len(order):] + order[: r % len(order)]
        for i in order:
            values[i].append(sides[i]())
    return [Stats(v) for v in values]


async def ainterleaved(repeats: int, *sides: Callable[[], Any]) -> list[Stats]:
    """:func:`interleaved` for coroutine functions."""
    values: list[list[float]] = [[] for _ in sides]
    for r in range(repeats):
        order = list(range(len(sides)))
        order = order[r % len(order):] + order[: r % len(order)]
        for i in order:
            values[i].append(await sides[i]())
    return [Stats(v) for v in values]


# --------------------------------------------------------------------------------------------
# Births: every one distinct, valid, for a mother the sandbox knows


# A distinct second for every birth of the process, counted back from two hours ago: never in the
# future, never a duplicate at the sandbox (which refuses a repeat of mother + time + number).
_ANCHOR = datetime.now().astimezone() - timedelta(hours=2)
_seconds_back = itertools.count(1)


def birth_records(count: int, mother: str = "local") -> list[dict[str, Any]]:
    """``count`` distinct births as the HIS sends them: dicts with the spec's field names."""
    from ybplug.fields import CHINA_TIME
    from ybplug.sandbox import SEED_MOTHERS

    anchor = _ANCHOR.astimezone(CHINA_TIME)
    out = []
    for _ in range(count):
        n = next(_seconds_back)
        born = anchor - timedelta(seconds=n)
        out.append({
            "akc190": f"ZY{n:010d}",
            "bke042": f"HIS-{n:010d}",
            "bme027": 1,
            "aac004": "1" if n % 2 else "2",
            "aac006": int(born.strftime("%Y%m%d%H%M%S")),
            "bkee43": "01",
            "bkee35": SEED_MOTHERS[mother],
            "bkee37": "陈静",
            "bkee33": 13800138000,
        })
    return out


def births(count: int, mother: str = "local") -> list[Any]:
    """``count`` distinct, validated :class:`ybplug.Birth` objects."""
    from ybplug.messages import Birth, load

    return [load(Birth, record) for record in birth_records(count, mother)]


# --------------------------------------------------------------------------------------------
# The wire, built by hand for the baselines (the same bytes HttpTransport sends)

BUSINESS_PATH = "/sieaf/business_handle/"
HEADERS = {"Content-Type": "application/json; charset=utf-8"}
OK_MARK = b'\\"flag\\":\\"1\\"'  # inside outputValue, which is a JSON string


def cached_journal(name: str, count: int, more: Callable[[Any], None] | None = None) -> Path:
    """A SQLite journal of ``count`` births, a third of them settled as a hospital's history
    would be, built once under the temporary folder (``ybplug-bench-NAME-COUNT``); ``more(db)``
    adds rows in the same write.  A half-built one (no ``ready`` mark) is built again."""
    folder = Path(tempfile.gettempdir()) / f"ybplug-bench-{name}-{count}"
    path = folder / "journal.db"
    if (folder / "ready").exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("journal.db*"):
        stale.unlink()
    from ybplug.journal import Journal

    store = Journal(path).open()
    records = births(count)
    for start in range(0, count, 5000):
        store.record_births(records[start:start + 5000])
    with store._write() as db:
        db.execute("UPDATE births SET state = 'real_named', registered_at = created_at WHERE id % 3 = 0")
        if more is not None:
            more(db)
    store.close()
    (folder / "ready").write_text("ok")
    return path


def envelope(funid: str, data: Any, usr: str, pwd: str, output_len: int = 20000) -> bytes:
    """The vendor agent's envelope around one transaction (see ybplug.wire)."""
    inner = msgspec.json.encode({"funid": funid, "usr": usr, "pwd": pwd, "data": msgspec.to_builtins(data)})
    return msgspec.json.encode({"inputValue": inner.decode(), "outputLen": output_len})


# --------------------------------------------------------------------------------------------
# Scratch space and subprocesses


@contextlib.contextmanager
def scratch(prefix: str = "ybplug-bench-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def child_env() -> dict[str, str]:
    """Environment for child interpreters: ours, without YBPLUG_* settings leaking in.

    PYTHONPATH is passed on, so that ``PYTHONPATH=/some/patched/copy bench/run.py`` measures a
    patched ybplug on both sides of every subprocess (the sandbox, the import and memory children).
    """
    # Without PYTHONDONTWRITEBYTECODE: the warm-up runs write the .pyc files an installed
    # package has, so that no run measures compiling a module that changed since the last.
    return {
        k: v for k, v in os.environ.items() if not k.startswith("YBPLUG_") and k != "PYTHONDONTWRITEBYTECODE"
    }


class SandboxProcess:
    """``ybplug sandbox --port 0 --db FILE`` in its own process (its own core, its own loop)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    #: What the start-up error calls it.
    what = "the sandbox"

    def command(self) -> list[str]:
        """The child's command line; it prints its URL on its first line once it listens."""
        return [sys.executable, "-m", "ybplug.sandbox", "--host", "127.0.0.1", "--port", "0", "--db", str(self.db)]

    def start(self) -> str:
        # cwd is the scratch folder, never the repository root (which would shadow the package).
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.db.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=child_env(),
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"{self.what} did not start (printed {line!r})")
        self.url = line
        return line

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


CANNED_CENTRE = r'''
import asyncio, sys
from aiohttp import web

REPLY = sys.argv[1].encode()


async def business(request):
    await request.read()
    return web.Response(body=REPLY, content_type="application/json", charset="utf-8")


async def main():
    app = web.Application()
    app.router.add_post("/sieaf/business_handle/", business)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
'''


class CannedCentre(SandboxProcess):
    """An aiohttp server in its own process that answers every business call with one canned
    success: no validation, no database.  What a bare client reaches when the centre costs nothing."""

    what = "the canned centre"

    def command(self) -> list[str]:
        inner = msgspec.json.encode(
            {"flag": "1", "cause": "", "data": {"baz726": "XSE2511250000001", "bkee45": "1", "bkee46": ""}}
        ).decode()
        reply = msgspec.json.encode({"data": {"outputValue": inner}}).decode()
        return [sys.executable, "-c", CANNED_CENTRE, reply]


@contextlib.asynccontextmanager
async def sandbox(folder: Path, mode: str = "process") -> AsyncIterator[str]:
    """A sandbox centre for the run: in its own process (default) or on this event loop."""
    db = folder / "centre.db"
    if mode == "process":
        with SandboxProcess(db) as centre:
            yield centre.url
    else:
        from ybplug.sandbox import Sandbox

        centre_inproc = Sandbox(db)
        await centre_inproc.start()
        try:
            yield centre_inproc.url
        finally:
            await centre_inproc.stop()


def run_async(main: Callable[[], Any]) -> Any:
    """asyncio.run (aiohttp needs asyncio; anyio runs on it)."""
    return asyncio.run(main())


def now() -> float:
    return time.perf_counter()


# --------------------------------------------------------------------------------------------
# The machine


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import PackageNotFoundError, version

    packages = []
    for name in ("ybplug", "aiohttp", "anyio", "msgspec", "pluggy"):
        try:
            packages.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            packages.append(f"{name} (not installed)")
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    import sqlite3

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "load average at start (1/5/15 min)": load,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "packages": ", ".join(packages),
    }
