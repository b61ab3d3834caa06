"""The ``ybplug`` command as a person uses it, and the plugin found through its entry point."""

from __future__ import annotations

import inspect
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ybplug.config import Config, WireSection
from ybplug.host import Host
from ybplug.hooks import specs
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, SEED_MOTHERS, Sandbox

from support import birth_record

YBPLUG = str(Path(sys.executable).parent / "ybplug")
ROOT = Path(__file__).resolve().parents[1]




def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YBPLUG, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


async def run_async(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: run(*args, cwd=cwd))


def test_demo_shows_the_flow_end_to_end_without_personal_data(tmp_path: Path) -> None:
    done = run("demo", "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for hook in ("birth_recorded", "collection_result", "realname_resolved", "collection_voided"):
        assert hook in out
    assert "eligible=False (母亲未参保)" in out and "eligible=True" in out
    assert "created=False" in out  # recording a birth again returns the existing record
    for id_number in SEED_MOTHERS.values():
        assert id_number not in out + done.stderr
    hospital = sqlite3.connect(tmp_path / "demo" / "hospital.db")
    assert hospital.execute("SELECT count(baz726), count(real_id_number), sum(voided) FROM newborn").fetchone() == (6, 1, 1)


def test_a_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('uplaod = "immediate"\n', encoding="utf-8")
    done = run("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 2  # a configuration to fix: 2, as for a usage error
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "ybplug.toml" in line and "uplaod" in line


def test_a_journal_path_that_cannot_hold_a_journal_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    (tmp_path / "ybplug.toml").write_text('journal = "not-a-folder/journal.db"\n', encoding="utf-8")
    done = run("sync", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not-a-folder/journal.db: cannot open it" in done.stderr.strip().splitlines()[-1]


def test_an_emptied_postgresql_journal_stops_the_command_until_a_new_one_is_started(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    from pg_support import fresh_schema

    with fresh_schema() as url:
        (tmp_path / "ybplug.toml").write_text(f'journal = "{url}"\n', encoding="utf-8")
        first = run("init", "-c", "ybplug.toml", cwd=tmp_path)  # the first start: nothing to set up
        assert first.returncode == 0, first.stderr
        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            admin.execute(f"CREATE SCHEMA {schema}")
        done = run("status", "-c", "ybplug.toml", cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr and not done.stdout
        [line] = done.stderr.strip().splitlines()
        assert f"schema {schema} holds no journal" in line and "ybplug init --new-journal" in line
        started = run("init", "--new-journal", "-c", "ybplug.toml", cwd=tmp_path)
        assert started.returncode == 0 and started.stdout.startswith("journal "), started.stderr
        assert started.stdout.split()[1] != first.stdout.split()[1]
        assert run("status", "-c", "ybplug.toml", cwd=tmp_path).returncode == 0


def test_a_libpq_keyword_string_as_journal_is_one_clear_line_without_its_password(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "host=127.0.0.1 password=s3cretPw dbname=x"\n', encoding="utf-8")
    for command in ("status", "init"):
        done = run(command, "-c", "ybplug.toml", cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr and "s3cretPw" not in done.stdout + done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "journal: a libpq connection string" in line and "postgresql://user@host/dbname" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ybplug.toml"]  # no journal file named after it


@pytest.mark.parametrize("days", ["-5", "nan", "inf", "five"])
def test_prune_refuses_a_number_of_days_that_is_not_one(tmp_path: Path, days: str) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert run("init", "-c", "ybplug.toml", cwd=tmp_path).returncode == 0
    done = run("prune", f"--older-than={days}", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--older-than" in done.stderr.strip().splitlines()[-1]
    assert "erased" not in done.stdout


@pytest.mark.parametrize("source", ["def broken(:\n", "raise RuntimeError('at import')\n"])
def test_a_config_plugin_that_cannot_be_imported_is_one_clear_line(tmp_path: Path, source: str) -> None:
    (tmp_path / "broken_plugin.py").write_text(source, encoding="utf-8")
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\nplugins = ["broken_plugin"]\n', encoding="utf-8")
    done = run("plugins", "-c", "ybplug.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "'broken_plugin' from the config cannot be imported" in line


def test_an_unreachable_centre_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('[wire]\nurl = "http://127.0.0.1:9"\nusr = "his"\n', encoding="utf-8")
    done = run("void", "XSE2611250000001", "--reason", "重复上传", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot connect to http://127.0.0.1:9" in done.stderr.strip().splitlines()[-1]


@pytest.mark.anyio
async def test_a_wrong_password_is_one_clear_line_and_status_shows_the_waiting_birth(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    (tmp_path / "ybplug.toml").write_text(
        f'upload = "immediate"\n[wire]\nurl = "{sandbox.url}"\nusr = "{SANDBOX_USR}"\npwd = "wrong-secret"\n',
        encoding="utf-8",
    )
    config = Config.load(tmp_path / "ybplug.toml")
    config.upload = "daily at 02:00"
    async with Host(config, entry_points=False) as host:
        await host.record_birth(birth_record())
    done = await run_async("sync", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "check usr/pwd" in last and "wrong-secret" not in done.stderr
    status = await run_async("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert "pending 1" in status.stdout


def test_every_hook_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    hooks = [name for name, f in inspect.getmembers(specs, inspect.isfunction) if hasattr(f, "ybplug_spec")]
    assert len(hooks) >= 12
    missing = [name for name in hooks if f"`{name}(" not in readme and f"`{name}`" not in readme]
    assert not missing, f"hooks missing from README.md: {missing}"


@pytest.mark.anyio
async def test_the_example_distribution_is_found_through_its_entry_point(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YBPLUG_EXAMPLE_DB", str(tmp_path / "hospital.db"))
    config = Config(journal=str(tmp_path / "journal.db"), wire=WireSection(url=sandbox.url, usr=SANDBOX_USR, pwd=SANDBOX_PWD))
    async with Host(config) as host:
        assert "example_hospital" in {host.pm.get_name(p) for p in host.pm.get_plugins()}
        recorded = await host.record_birth(birth_record())
        await host.sync("upload")
    [registration] = sandbox.registrations()
    db = sqlite3.connect(tmp_path / "hospital.db")
    assert db.execute("SELECT birth_id, baz726 FROM registrations").fetchall() == [
        (recorded.birth_id, registration["baz726"])
    ]
