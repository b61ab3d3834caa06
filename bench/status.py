"""``ybplug status`` on a journal of 100,000 births, from a fresh interpreter to the last line.

What an operator (or a monitor running ``status --check`` every minute) waits for: the CLI's
imports, opening the journal (migrations and identity checks included) and the status queries.
Against ``python -c pass`` in the same run (interpreter start-up alone), and an absolute target
of 0.3 s.  The journal is built once and kept under the system's temporary folder
(``ybplug-bench-status-100000``); bytecode is written first, as an installed package has it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import common
from common import Row

BIRTHS = 100_000
YBPLUG = str(Path(sys.executable).parent / "ybplug")


def journal(count: int = BIRTHS) -> Path:
    """A journal of ``count`` births (a third settled, the rest waiting), built once."""
    return common.cached_journal("status", count)


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def env() -> dict[str, str]:
    values = common.child_env()
    values.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode
    return values


def measure(quick: bool = False) -> list[Row]:
    path = journal()
    repeats = 5 if quick else 15
    with common.scratch() as folder:
        (folder / "ybplug.toml").write_text(f'journal = "{path}"\n', encoding="utf-8")
        status = [YBPLUG, "status", "-c", "ybplug.toml"]
        bare = [sys.executable, "-c", "pass"]
        timed(status, folder)  # bytecode written, page cache warm
        ours, baseline = common.interleaved(repeats, lambda: timed(status, folder), lambda: timed(bare, folder))
    return [
        Row(f"ybplug status, {BIRTHS:,} births (fresh interpreter to last line)", "s", ours, "python -c pass", baseline,
            target=0.3, higher_is_better=False, absolute=True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(common.table(measure(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
