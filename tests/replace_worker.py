"""Run by test_replace_killed.py as its own process: a host on the test's journal calls
``replace_birth`` (and is killed by the test while the void is in flight).

argv: journal path, centre URL, hooks file, birth id, corrected record file (JSON; personal data
never on the command line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from ybplug.config import Config, WireSection
from ybplug.host import Host
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR

from recorder import FileRecorder


async def main() -> None:
    journal, url, hooks, birth_id, record = sys.argv[1:]
    config = Config(journal=journal, upload="daily at 02:00", wire=WireSection(url=url, usr=SANDBOX_USR, pwd=SANDBOX_PWD, read_timeout=60))
    corrected = json.loads(Path(record).read_text(encoding="utf-8"))
    async with Host(config, plugins=[FileRecorder(hooks)], entry_points=False, background=False) as host:
        print("replacing", flush=True)
        await host.replace_birth(int(birth_id), corrected, "性别录错", operator="clerk")
        print("replaced", flush=True)


if __name__ == "__main__":
    anyio.run(main)
