"""The ``ybplug`` command as a person uses it, and the plugin found through its entry point."""

from __future__ import annotations

import inspect
import json
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


# -- a person's files, config values, exit statuses, output ----------------------------------------


@pytest.mark.parametrize(("toml", "names"), [
    ("realname_interval = nan\n", "realname_interval must be a finite number"),
    ("[wire]\nread_timeout = inf\n", "read_timeout must be a positive number of seconds"),
    ("[wire]\nconnect_timeout = -inf\n", "connect_timeout must be a positive number of seconds"),
    ('journal = "/"\n', "journal '/' names a folder"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
    ('duplicate_markers = ["重复", ""]\n', "duplicate_markers must not hold an empty text"),
    ('[wire]\nurl = "ftp://10.1.2.3/"\n', "url must be the centre's http:// or https:// address"),
    ('[wire]\nurl = "http://[::1"\n', "url must be the centre's http:// or https:// address"),
    ('journal = "a\\u0000b.db"\n', "journal must not contain control characters"),
    ('log_file = "/"\n', "log_file '/' names a folder"),
    ("lease = 20\nhook_timeout = 30\n[wire]\nread_timeout = 5\n", "lease (20 s) must be longer than hook_timeout"),
    ("[wire]\nmax_connections = -1\n", "max_connections must be 1 to 1000"),
    ("[wire]\noutput_len = 100000000000000000000\n", "output_len must be 1 to 10000000"),
])
def test_a_config_value_no_timer_or_journal_can_use_is_one_clear_line(tmp_path: Path, toml: str, names: str) -> None:
    (tmp_path / "ybplug.toml").write_text(toml, encoding="utf-8")
    done = run("status", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    assert "ybplug.toml" in line and names in line


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "gbk"])
def test_a_config_saved_by_notepad_loads_in_each_of_its_encodings(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "ybplug.toml").write_text('duplicate_markers = ["重复上传"]\n[wire]\nusr = "his"\n', encoding=encoding)
    config = Config.load(tmp_path / "ybplug.toml")
    assert config.duplicate_markers == ["重复上传"] and config.wire.usr == "his"


def test_a_config_in_no_encoding_ybplug_reads_is_one_clear_line(tmp_path: Path) -> None:
    from ybplug.config import ConfigError

    (tmp_path / "ybplug.toml").write_bytes(b'journal = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not text in UTF-8"):
        Config.load(tmp_path / "ybplug.toml")
    (tmp_path / "ybplug.toml").write_bytes('usr = "his"\n'.encode("utf-16-le"))  # no BOM
    with pytest.raises(ConfigError, match="UTF-16 without a BOM"):
        Config.load(tmp_path / "ybplug.toml")


def _ward(tmp_path: Path, url: str, **top: str) -> None:
    lines = [f'journal = "{(tmp_path / "journal.db").as_posix()}"', 'upload = "daily at 02:00"',
             *(f"{k} = {v}" for k, v in top.items()),
             "[wire]", f'url = "{url}"', f'usr = "{SANDBOX_USR}"', f'pwd = "{SANDBOX_PWD}"', "read_timeout = 2.0"]
    (tmp_path / "ybplug.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.anyio
async def test_sync_and_retry_exit_1_when_deliveries_are_parked_or_uploads_fail(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "failing_plugin.py").write_text(
        "import ybplug\n\n@ybplug.hookimpl\ndef collection_result(result):\n    raise RuntimeError('HIS down')\n",
        encoding="utf-8")
    _ward(tmp_path, sandbox.url, plugins='["failing_plugin"]', delivery_attempts="1")
    env = {"PYTHONPATH": str(tmp_path), "YBPLUG_PLUGINS": "ybplug.transport,ybplug.collection,failing_plugin",
           "YBPLUG_EXAMPLE_DB": str(tmp_path / "hospital.db")}
    config = Config.load(tmp_path / "ybplug.toml")
    async with Host(config, entry_points=False, background=False, plugins=[]) as host:
        await host.record_birth(birth_record())

    def ybplug(*args: str) -> subprocess.CompletedProcess[str]:
        return run(*args, "-c", "ybplug.toml", cwd=tmp_path, env=env)

    synced = await anyio.to_thread.run_sync(ybplug, "sync", "upload")
    assert synced.returncode == 1, synced.stdout + synced.stderr
    assert "uploaded 1" in synced.stdout
    assert "ybplug sync: 1 hook deliveries failed (1 parked" in synced.stderr.strip().splitlines()[-1]
    retried = await anyio.to_thread.run_sync(ybplug, "retry")
    assert retried.returncode == 1 and "re-queued 1 parked deliveries" in retried.stdout
    assert "1 hook deliveries failed (1 parked" in retried.stderr.strip().splitlines()[-1]
    _ward(tmp_path, "http://127.0.0.1:9")  # the centre down, nothing parked: the retry's uploads fail
    async with Host(Config.load(tmp_path / "ybplug.toml"), entry_points=False, background=False) as host:
        await host.record_birth(birth_record(1))
    down = await anyio.to_thread.run_sync(lambda: run("retry", "-c", "ybplug.toml", cwd=tmp_path,
                                                      env={"YBPLUG_EXAMPLE_DB": str(tmp_path / "hospital.db")}))
    assert down.returncode == 1 and "ybplug retry: 1 uploads failed" in down.stderr.strip().splitlines()[-1]


def test_a_usage_mistake_exits_2_as_the_readme_says(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert run("init", "-c", "ybplug.toml", cwd=tmp_path).returncode == 0
    forget = run("plugins", "forget", "nosuch", "-c", "ybplug.toml", cwd=tmp_path)
    assert forget.returncode == 2 and "no subscriber named 'nosuch'" in forget.stderr
    amend = run("amend", "1", "--record", "missing.json", "-c", "ybplug.toml", cwd=tmp_path)
    assert amend.returncode == 2 and "--record missing.json: cannot read it" in amend.stderr
    check = run("check", "-c", "missing.toml", cwd=tmp_path)
    assert check.returncode == 2 and check.stdout.startswith("FAIL  config    missing.toml: cannot read")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "- 2: a usage or configuration error" in readme and "- 141: its output was closed" in readme


def test_a_plugin_that_fails_at_import_is_named_scrubbed_and_cannot_end_ybplug(tmp_path: Path) -> None:
    (tmp_path / "leaky.py").write_text('raise RuntimeError("init failed for 350203199001010026")\n', encoding="utf-8")
    (tmp_path / "quits.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    for module, says in (("leaky", "RuntimeError: init failed for 3502**********0026"),
                         ("quits", "'quits' from the config cannot be imported: it called sys.exit(3) on import")):
        (tmp_path / "ybplug.toml").write_text(f'journal = "journal.db"\nplugins = ["{module}"]\n', encoding="utf-8")
        for command in ("plugins", "sync"):
            done = run(command, "-c", "ybplug.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
            assert done.returncode == 2 and "Traceback" not in done.stderr, (command, done.stderr)
            [line] = done.stderr.strip().splitlines()
            assert says in line and "350203199001010026" not in line
        check = run("check", "-c", "ybplug.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
        assert check.returncode == 1 and says in check.stdout and "350203199001010026" not in check.stdout


def test_plugins_are_listed_in_the_same_order_every_run(tmp_path: Path) -> None:
    from ybplug.loading import BUILTIN_PLUGINS

    for name in ("zeta_plugin", "alpha_plugin", "mid_plugin"):
        (tmp_path / f"{name}.py").write_text(
            "import ybplug\n\n@ybplug.hookimpl\ndef birth_recorded(birth_id):\n    pass\n", encoding="utf-8"
        )
    (tmp_path / "ybplug.toml").write_text(
        'journal = "journal.db"\nplugins = ["zeta_plugin", "alpha_plugin", "mid_plugin"]\n', encoding="utf-8")
    runs = [run("plugins", "--json", "-c", "ybplug.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path),
                                                                          "PYTHONHASHSEED": str(seed)})
            for seed in (1, 2, 3)]
    names = [[entry["name"] for entry in json.loads(done.stdout)] for done in runs]
    builtin = [name for name, _ in BUILTIN_PLUGINS]
    assert names[0] == names[1] == names[2]
    assert names[0][:len(builtin)] == builtin
    assert names[0][len(builtin):] == sorted(names[0][len(builtin):])


def test_a_closed_output_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert run("init", "-c", "ybplug.toml", cwd=tmp_path).returncode == 0
    process = subprocess.Popen([YBPLUG, "plugins", "-c", "ybplug.toml"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before ybplug writes (`| head -0`)
    error = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and error == ""


def test_what_the_cli_echoes_of_an_error_is_capped(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert run("init", "-c", "ybplug.toml", cwd=tmp_path).returncode == 0
    key = "x" * 100_000
    for args in (["show", key], ["show", "1", "--twin", key], ["plugins", "forget", key]):
        done = run(*args, "-c", "ybplug.toml", cwd=tmp_path)
        assert done.returncode in (1, 2) and "Traceback" not in done.stderr
        assert 0 < len(done.stderr) < 2600, (args, len(done.stderr))
    shown = run("show", "350203199001010026", "-c", "ybplug.toml", cwd=tmp_path)
    assert "3502**********0026" in shown.stderr and "350203199001010026" not in shown.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT as a terminal does on POSIX")
@pytest.mark.anyio
async def test_ctrl_c_stops_a_one_shot_command_promptly_and_the_birth_stays_journaled(tmp_path: Path) -> None:
    import signal
    import time

    from ybplug.sandbox import Fault

    async with Sandbox(tmp_path / "centre.db", faults=[Fault("latency", seconds=20)]) as centre:
        _ward(tmp_path, centre.url)
        (tmp_path / "ybplug.toml").write_text(
            (tmp_path / "ybplug.toml").read_text(encoding="utf-8").replace("read_timeout = 2.0", "read_timeout = 30.0"),
            encoding="utf-8")
        async with Host(Config.load(tmp_path / "ybplug.toml"), entry_points=False, background=False) as host:
            await host.record_birth(birth_record())
        process = subprocess.Popen([YBPLUG, "sync", "upload", "-c", "ybplug.toml"], cwd=tmp_path, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, "YBPLUG_EXAMPLE_DB": str(tmp_path / "hospital.db")})
        deadline = time.monotonic() + 30
        while not centre.calls("yb04.13.01.21") and time.monotonic() < deadline:  # the upload is on its way
            await anyio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = await anyio.to_thread.run_sync(lambda: process.communicate(timeout=15))
        assert time.monotonic() - started < 10, "Ctrl+C waited for the slow centre"
        assert process.returncode == 130 and err.strip().splitlines()[-1] == "ybplug sync: interrupted", err
        assert "Traceback" not in err and "uploaded" not in out
        async with Host(Config.load(tmp_path / "ybplug.toml"), entry_points=False, background=False) as host:
            left = await host.birth(1)  # as a killed process leaves it: its exchange journaled as sent
            assert [(e.funid, e.outcome) for e in left.exchanges] == [("yb04.13.01.21", "sent")]
            assert (await host.sync("upload"))["uploaded"] == 1  # the interrupted command's claim is taken over
            assert (await host.birth(1)).state == "registered"


@pytest.mark.anyio
async def test_the_worker_names_the_time_an_upload_is_really_tried_again(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused sign-in: the births that failed wait for their own upload_backoff (3 s here), so
    the schedule's "trying again in N s" must not promise a try sooner than that."""
    import logging
    import re
    import time

    config = Config(journal=str(tmp_path / "journal.db"), upload="immediate", upload_backoff=3.0,
                    wire=WireSection(url=sandbox.url, usr=SANDBOX_USR, pwd="wrong-secret", read_timeout=5.0))
    caplog.set_level(logging.ERROR, "ybplug.collection")
    async with Host(config, entry_points=False) as host:
        await host.record_birth(birth_record())
        deadline = time.monotonic() + 20
        while not any("upload stopped" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            await anyio.sleep(0.1)
    said = [r.getMessage() for r in caplog.records if "upload stopped" in r.getMessage()]
    assert said, "no failed round was logged"
    found = re.search(r"trying again in (\d+) s", said[0])
    assert found and int(found.group(1)) >= 3, said[0]


def test_a_config_plugin_module_with_no_hook_is_one_clear_line(tmp_path: Path) -> None:
    """`plugins = ["os"]` (a typo, or hooks without @hookimpl) used to load and do nothing."""
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\nplugins = ["os"]\n', encoding="utf-8")
    done = run("plugins", "-c", "ybplug.toml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "plugin module 'os' from the config implements no ybplug hook" in line


def test_an_output_that_is_closed_or_full_is_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    assert run("init", "-c", "ybplug.toml", cwd=tmp_path).returncode == 0
    # stdout closed (`>&-`): the command runs, its output is discarded
    closed = subprocess.run(f"{YBPLUG} status -c ybplug.toml >&-", shell=True, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert closed.returncode == 0 and closed.stderr == ""
    if Path("/dev/full").exists():  # stdout full: exit 1, one line on stderr
        with open("/dev/full", "w") as full:
            done = subprocess.run([YBPLUG, "status", "-c", "ybplug.toml"], cwd=tmp_path, stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        [line] = done.stderr.strip().splitlines()
        assert done.returncode == 1 and "cannot write the output (No space left on device)" in line


def test_a_bad_address_or_a_short_password_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('journal = "journal.db"\n', encoding="utf-8")
    for args in (("console", "--listen", "127.0.0.1:99999"), ("run", "--console", "notanaddress")):
        done = run(*args, "-c", "ybplug.toml", cwd=tmp_path)
        assert done.returncode == 2 and "expected HOST:PORT" in done.stderr, (args, done.stderr)
    short = subprocess.run([YBPLUG, "console", "add-user", "lin", "--role", "viewer"], cwd=tmp_path, input="short\n",
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "at least 8 characters" in short.stderr and "Traceback" not in short.stderr


def test_check_fails_on_a_journal_it_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text(
        'journal = "postgresql://nouser@127.0.0.1:5432/test"\n[wire]\nurl = "http://127.0.0.1:1"\nusr = "his"\n',
        encoding="utf-8")
    done = run("check", "-c", "ybplug.toml", cwd=tmp_path, env={"YBPLUG_PWD": "x"})
    [line] = [line for line in done.stdout.splitlines() if " journal " in line]
    assert done.returncode == 1 and line.startswith("FAIL  journal") and "cannot connect" in line, done.stdout
    assert "Traceback" not in done.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "the journal (opened as `status` opens it" in readme
