"""ybplug's benchmark suite: one command, one table.

    .venv/bin/python bench/run.py [--quick] [--only NAME[,NAME...]] [--write-results]

Run it from the repository root with the project's virtualenv (``pip install -e '.[test]'``; the
suite needs nothing else, and a C compiler for the QR figures).  Each figure is the median of
several runs with min and max; beside it, the same work done by a baseline in the same run, and
the ratio.  ``--quick`` makes fewer and shorter runs (about 40 s instead of about 3 minutes);
``--only`` runs some of the benchmarks (``imports``, ``status``, ``journal``, ``qr``, ``realname``,
``pipeline``, ``handwritten``, ``history``, ``memory``, ``watch``, ``postgres``; the last needs a
PostgreSQL server, see bench/postgres.py); ``--write-results`` rewrites the measured part of
``bench/RESULTS.md`` (the table, the date, the machine), leaving its hand-written analysis alone.

``PYTHONPATH=/path/to/a/patched/copy .venv/bin/python bench/run.py`` measures another copy of the
package (the subprocesses inherit it); the header says which one was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
import time
from datetime import datetime
from pathlib import Path

for _name in [n for n in os.environ if n.startswith("YBPLUG_")]:
    del os.environ[_name]  # the suite measures the defaults, not this shell's settings

import common  # noqa: E402

BENCHMARKS = ("imports", "status", "journal", "qr", "realname", "pipeline", "handwritten", "history", "memory", "watch", "postgres")
RESULTS = common.BENCH_DIR / "RESULTS.md"
BEGIN = "<!-- results:begin (written by bench/run.py --write-results) -->"
END = "<!-- results:end -->"


def run(names: list[str], quick: bool, sandbox: str) -> list[common.Row]:
    rows: list[common.Row] = []
    for name in names:
        module = __import__(name)
        started = time.perf_counter()
        print(f"[{name}] running...", file=sys.stderr, flush=True)
        kwargs: dict[str, object] = {"quick": quick}
        if "sandbox_mode" in inspect.signature(module.measure).parameters:
            kwargs["sandbox_mode"] = sandbox
        if inspect.iscoroutinefunction(module.measure):
            produced = asyncio.run(module.measure(**kwargs))
        else:
            produced = module.measure(**kwargs)
        print(f"[{name}] done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        rows.extend(produced)
    return rows


def revision() -> str:
    """The repository's commit, and whether the package's sources differ from it."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ybplug", "hooks", "plugins"],
                               cwd=common.REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes to the package" if dirty else "")


def report(rows: list[common.Row], quick: bool, elapsed: float, sandbox: str, commit: str) -> str:
    import ybplug

    where = Path(ybplug.__file__).resolve().parent
    if common.REPO not in where.parents:
        commit = "not this repository's checkout: a copy on PYTHONPATH"
    info = common.machine()
    lines = [
        f"Measured {datetime.now().astimezone().isoformat(timespec='seconds')} "
        f"({'--quick' if quick else 'full run'}, {elapsed:.0f} s, sandbox {'in its own process' if sandbox == 'process' else 'on the client loop'}).",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info.items()),
        f"| ybplug measured | {where} ({commit}) |",
        "",
        common.table(rows),
    ]
    notes = [f"* {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines)


def write_results(text: str) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if RESULTS.exists():
        current = RESULTS.read_text(encoding="utf-8")
        if BEGIN in current and END in current:
            head, _, rest = current.partition(BEGIN)
            _, _, tail = rest.partition(END)
            RESULTS.write_text(head + block + tail, encoding="utf-8")
            return
        RESULTS.write_text(current.rstrip() + "\n\n" + block + "\n", encoding="utf-8")
        return
    RESULTS.write_text(f"# ybplug benchmark results\n\n{block}\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (about 40 s)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only these benchmarks (repeatable or comma-separated): {', '.join(BENCHMARKS)}")
    parser.add_argument("--write-results", action="store_true", help="rewrite the measured part of bench/RESULTS.md")
    parser.add_argument("--sandbox", choices=["process", "inproc"], default="process",
                        help="the sandbox centre in its own process (default) or on the client's event loop")
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(BENCHMARKS)
    if args.write_results and (args.quick or args.only):
        parser.error("--write-results records a full run: leave out --quick and --only")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    if Path.cwd().resolve() == common.REPO and "" in sys.path:
        parser.error("run it as a script (python bench/run.py), not with -m or -c from the repository root")
    started = time.perf_counter()
    commit = revision()
    rows = run(names, args.quick, args.sandbox)
    if revision() != commit:
        print("warning: the repository changed during the run", file=sys.stderr)
        commit += ", changed during the run"
    text = report(rows, args.quick, time.perf_counter() - started, args.sandbox, commit)
    print(text)
    if args.write_results:
        write_results(text)
        print(f"\nwrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
