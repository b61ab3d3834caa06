"""Peak RSS of the worker with 100,000 births pending.

What "pending" means here: after an outage (or for a regional backfill) the journal holds
100,000 births that are recorded (durable, ``birth_recorded`` fired) but not uploaded yet.  The
worker is what a hospital runs beside its HIS, ``ybplug run -c ybplug.toml`` (every installed
``ybplug`` entry-point plugin loaded, ``upload = "immediate"``), against the sandbox centre.  At
start it claims the backlog in ``upload_batch`` batches, uploads them ``upload_concurrency`` at a
time and delivers each answer to the hospital plugins.  It runs for a fixed window and is then
stopped with SIGTERM, as an operator would.  Its peak RSS is the kernel's high-water mark of the
worker's own memory, ``VmHWM`` in ``/proc/PID/status``, read every 100 ms and just before the
SIGTERM.  (``ru_maxrss`` from ``wait4`` or ``RUSAGE_CHILDREN`` is not used: Linux folds the high
water mark of the forking parent's address space into the child's ``ru_maxrss`` at ``execve``, so
a child of this benchmark process would report at least this process's size.)  Draining all 100,000 would take minutes and the working set does not grow
with the part already drained: what could grow with the backlog is what a claim loads, and every
claim is made in the window.

Reference (not a target): the same worker on an empty journal (for 2 s: it has nothing to do).

Set-up (not measured, its own child process): the 100,000 births are recorded with
``Journal.record_births`` in batches of 5,000 (one transaction each).  The births are built without
re-running the field checks (a subclass of ``Birth`` without ``__post_init__``; the stored JSON is
byte for byte what a checked ``Birth`` gives), which makes the set-up take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import common
from common import Row, Stats

SETUP = r'''
import sys
from datetime import datetime, timedelta
from ybplug.fields import CHINA_TIME
from ybplug.journal import Journal
from ybplug.messages import Birth, load
from ybplug.sandbox import SEED_MOTHERS

class UncheckedBirth(Birth, frozen=True):
    def __post_init__(self) -> None:
        pass

path, count = sys.argv[1], int(sys.argv[2])
template = load(Birth, {
    "akc190": "ZY0", "bke042": "HIS-0", "bme027": 1, "aac004": "2", "aac006": 20240101000000,
    "bkee43": "01", "bkee35": SEED_MOTHERS["local"], "bkee37": "陈静", "bkee33": 13800138000,
})
fields = {name: getattr(template, name) for name in template.__struct_fields__}
anchor = datetime.now(CHINA_TIME) - timedelta(days=1)
journal = Journal(path).open()
batch = []
for i in range(count):
    born = anchor - timedelta(seconds=i)
    batch.append(UncheckedBirth(**{**fields, "birth_time": int(born.strftime("%Y%m%d%H%M%S")),
                                   "medical_serial": f"ZY{i:010d}", "his_serial": f"HIS-{i:010d}"}))
    if len(batch) == 5000:
        journal.record_births(batch)
        batch = []
if batch:
    journal.record_births(batch)
journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
journal.close()
'''


def setup(journal: Path, count: int) -> None:
    subprocess.run(
        [sys.executable, "-c", SETUP, str(journal), str(count)],
        cwd=journal.parent, env=common.child_env(), check=True,
    )


def write_config(folder: Path, journal: Path, url: str) -> Path:
    from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR

    config = folder / f"{journal.stem}.toml"
    config.write_text(
        f'journal = "{journal}"\nupload = "immediate"\n\n'
        f'[wire]\nurl = "{url}"\nusr = "{SANDBOX_USR}"\npwd = "{SANDBOX_PWD}"\n',
        encoding="utf-8",
    )
    return config


def high_water_mb(pid: int) -> float:
    """``VmHWM`` of a live process, in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_worker(folder: Path, config: Path, window: float) -> tuple[float, int]:
    """Run ``ybplug run`` for ``window`` seconds; its peak RSS (MB) and births it uploaded."""
    env = common.child_env()
    env["YBPLUG_EXAMPLE_DB"] = str(folder / f"{config.stem}-hospital.db")
    with open(folder / f"{config.stem}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ybplug.cli", "run", "-c", str(config)],
            cwd=folder, env=env, stdout=log, stderr=log,
        )
        peak = 0.0
        stop = time.monotonic() + window
        while time.monotonic() < stop:
            time.sleep(0.1)
            peak = max(peak, high_water_mb(process.pid))
        peak = max(peak, high_water_mb(process.pid))
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            peak = max(peak, high_water_mb(process.pid))
            if process.poll() is not None:
                break
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                break
            time.sleep(0.05)
    if process.returncode not in (0, -signal.SIGTERM):
        tail = (folder / f"{config.stem}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the worker exited with {process.returncode}:\n{tail}")
    journal = config.with_suffix(".db")
    with sqlite3.connect(journal) as db:
        uploaded = db.execute("SELECT count(*) FROM births WHERE state != 'pending' AND state != 'uploading'").fetchone()[0]
    return peak, int(uploaded)


def measure(quick: bool = False) -> list[Row]:
    count = 100_000
    window = 2.5 if quick else 6.0
    repeats = 1 if quick else 2
    with common.scratch() as folder:
        template = folder / "backlog-template.db"
        setup(template, count)
        with common.SandboxProcess(folder / "centre.db") as centre:
            busy: list[float] = []
            idle: list[float] = []
            drained: list[float] = []
            for run in range(repeats):
                journal = folder / f"backlog-{run}.db"
                shutil.copyfile(template, journal)
                rss, uploaded = run_worker(folder, write_config(folder, journal, centre.url), window)
                busy.append(rss)
                drained.append(uploaded / window)
                if run == 0 or not quick:
                    empty = folder / f"empty-{run}.db"
                    rss_idle, _ = run_worker(folder, write_config(folder, empty, centre.url), min(window, 2.0))
                    idle.append(rss_idle)
                if uploaded == 0:
                    raise RuntimeError("the worker uploaded nothing in its window")
    rows = [Row(
        f"peak RSS of the worker (`ybplug run`) with {count:,} births pending, {window:g} s window",
        "MB", Stats(busy), "same worker, empty journal", Stats(idle), target=120.0, higher_is_better=False, absolute=True,
    ), Row(
        f"upload rate of that worker with {count:,} births pending (births answered in the window / window, start-up included)",
        "births/s", Stats(drained),
    )]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(common.table(measure(args.quick)))


if __name__ == "__main__":
    main()
