"""The README's examples run as written: each Python block is executed against the sandbox, each
``ybplug.toml`` block is loaded by the real config loader."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ybplug.config import Config
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, Sandbox

from pg_support import fresh_schema

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.anyio
async def test_every_python_example_in_the_readme_runs_as_written(tmp_path: Path, sandbox: Sandbox, fake_library: Path) -> None:
    (tmp_path / "ybplug.toml").write_text(
        f'journal = "journal.db"\n[wire]\nurl = "{sandbox.url}"\nusr = "{SANDBOX_USR}"\npwd = "{SANDBOX_PWD}"\n'
        f'[voucher]\nlibrary = "{fake_library}"\norg_id = "3502001000"\ndistrict_no = "350200"\n',
        encoding="utf-8",
    )
    examples = blocks("python")
    assert len(examples) >= 2
    outputs = []
    with contextlib.ExitStack() as stack:
        for example in examples:
            env = dict(os.environ)
            if "HIS_DATABASE" in example:  # the outbox: the journal and the HIS's table in a schema of their own
                try:
                    env["HIS_DATABASE"] = stack.enter_context(fresh_schema())
                except pytest.skip.Exception as skipped:  # no PostgreSQL here (never under CI=true)
                    outputs.append(f"skipped: {skipped}")
                    continue
            done = await anyio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
            ))
            assert done.returncode == 0 and "Traceback" not in done.stderr, f"{example}\n{done.stderr}"
            outputs.append(done.stdout)
    assert re.search(r"^registered XSE\d{13} True$", outputs[0], flags=re.M), outputs[0]
    assert "QrIdentity(" in outputs[0] and "张三" not in outputs[0]  # the identity, masked
    [registration] = sandbox.registrations()
    assert registration["voided"]
    [outbox] = [out for example, out in zip(examples, outputs, strict=True) if "HIS_DATABASE" in example]
    if not outbox.startswith("skipped"):
        assert "journaled pending True" in outbox and "rolled back, not journaled: BirthNotFound" in outbox, outbox


def test_every_ybplug_toml_example_in_the_readme_loads(tmp_path: Path) -> None:
    checked = 0
    for number, example in enumerate(blocks("toml")):
        if "[project" in example:  # a pyproject.toml fragment, not ybplug.toml
            continue
        path = tmp_path / f"example-{number}.toml"
        path.write_text(example, encoding="utf-8")
        Config.load(path)
        checked += 1
    assert checked >= 3
