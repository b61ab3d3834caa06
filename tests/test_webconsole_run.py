"""``ybplug run --console``: the console in the worker's own process, over the worker's host."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import anyio
import pytest

from ybplug.host import Host
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Sandbox

from support import birth_record, host_config
from test_webconsole import PASSWORD, YBPLUG, Browser


async def _console_url(process: anyio.abc.Process) -> tuple[str, bytes]:
    assert process.stderr is not None
    seen = b""
    with anyio.fail_after(30):
        while (found := re.search(rb"console at (http://127\.0\.0\.1:\d+/)", seen)) is None:
            seen += await process.stderr.receive()
    return found.group(1).decode().rstrip("/"), seen


@pytest.mark.anyio
async def test_run_with_console_serves_the_console_beside_the_worker(tmp_path: Path, sandbox: Sandbox) -> None:
    line = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [YBPLUG, "console", "add-user", "lin", "--role", "operator"], input=PASSWORD + "\n",
        capture_output=True, text=True, timeout=60).stdout.strip())
    (tmp_path / "ybplug.toml").write_text(
        f'journal = "journal.db"\nupload = "immediate"\n[wire]\nurl = "{sandbox.url}"\nusr = "{SANDBOX_USR}"\npwd = "{SANDBOX_PWD}"\n'
        f'[console]\nusers = [{line}]\n',
        encoding="utf-8",
    )
    async with Host(host_config(tmp_path, sandbox), entry_points=False, background=False) as host:
        recorded = await host.record_birth(birth_record(31))
    process = await anyio.open_process(
        [YBPLUG, "run", "-c", str(tmp_path / "ybplug.toml"), "--console", "127.0.0.1:0"], stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        url, _ = await _console_url(process)
        async with Browser(url) as browser:
            assert await browser.get("/readyz") == (200, "ready\n")
            await browser.login("lin")
            with anyio.fail_after(30):  # the worker in the same process uploads; the console sees it
                while "<td>状态</td><td>已登记</td>" not in (text := (await browser.get(f"/births/{recorded.birth_id}"))[1]):
                    await anyio.sleep(0.2)
                process.terminate()
        with anyio.fail_after(15):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_run_with_a_bad_console_address_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    done = subprocess.run([YBPLUG, "run", "--console", "nowhere", "-c", str(tmp_path / "ybplug.toml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr  # a usage error
    assert "console listen 'nowhere': expected HOST:PORT" in done.stderr.strip().splitlines()[-1]
    done = subprocess.run([YBPLUG, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert "--console" in done.stdout
