"""The clerk's and the operator's commands as a person uses them: real ``ybplug`` processes on a
journal and the sandbox centre; ``--json`` parsed; ``status --check``'s exit status; China time
whatever the server's time zone; a person's mistake is one line, never a traceback."""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from ybplug.codes import Funid
from ybplug.config import Config
from ybplug.fields import with_check_digit
from ybplug.host import Host
from ybplug.sandbox import SANDBOX_PWD, SANDBOX_USR, SEED_MOTHERS, Fault, Sandbox

from support import birth_record

YBPLUG = str(Path(sys.executable).parent / "ybplug")


class Clerk:
    """Runs ``ybplug`` in the ward's folder, on a server set to New York time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.outputs: list[str] = []

    async def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TZ": "America/New_York", "YBPLUG_EXAMPLE_DB": str(self.folder / "hospital.db")}
        done = await anyio.to_thread.run_sync(lambda: subprocess.run(
            [YBPLUG, *args, "-c", "ybplug.toml"], cwd=self.folder, capture_output=True, text=True, timeout=120,
            env=env, input=stdin,
        ))
        self.outputs.append(done.stdout + done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    async def json(self, *args: str) -> Any:
        done = await self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
async def ward(tmp_path: Path, sandbox: Sandbox) -> dict[str, int]:
    """A journal with a birth refused, one in review (registered at the centre, its reply lost),
    one registered and one failing (the centre answering HTTP 503), as the worker left them."""
    (tmp_path / "ybplug.toml").write_text(
        f'journal = "{(tmp_path / "journal.db").as_posix()}"\nupload = "daily at 02:00"\nupload_backoff = 600.0\n'
        f'[wire]\nurl = "{sandbox.url}"\nusr = "{SANDBOX_USR}"\npwd = "{SANDBOX_PWD}"\nread_timeout = 5.0\n',
        encoding="utf-8",
    )
    config = Config.load(tmp_path / "ybplug.toml")
    ids: dict[str, int] = {}
    async with Host(config, entry_points=False, background=False) as host:
        for n, (name, faults) in enumerate((
            ("refused", [Fault("refuse", funid=Funid.COLLECT, cause="母亲姓名与证件不符")]),
            ("review", [Fault("drop_after_commit", funid=Funid.COLLECT)]),
            ("registered", []),
            ("failing", [Fault("http_error", funid=Funid.COLLECT, times=None)]),
        )):
            ids[name] = (await host.record_birth(birth_record(30 + n))).birth_id
            sandbox.inject(*faults)
            await host.sync("upload")
            if name == "review":
                await host.replay()
                await host.run_journal(host.journal.retry_births)
                await host.sync("upload")
        sandbox.clear_faults()
        for name, state in (("refused", "refused"), ("review", "needs_review"), ("registered", "registered"),
                            ("failing", "pending")):
            assert (await host.birth(ids[name])).state == state
    return ids


@pytest.mark.anyio
async def test_status_lists_births_in_trouble_in_china_time_and_check_fails(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    done = await clerk("status", "--check")
    assert done.returncode == 1
    assert "1 births in needs review" in done.stderr and "1 uploads failing" in done.stderr
    failing = [line for line in done.stdout.splitlines() if line.startswith("failing:")]
    assert len(failing) == 1 and f"birth #{ward['failing']}" in failing[0] and "HIS000033-1" in failing[0]
    status = await clerk.json("status")
    [item] = status["failing"]
    assert item["birth_id"] == ward["failing"] and item["his_serial"] == "HIS000033-1" and "503" in item["last_error"]
    shown = await clerk.json("show", str(ward["failing"]))
    [exchange] = shown["exchanges"]
    # China time although the server is on New York time: the exchange's own start, to the second.
    started = datetime.strptime(exchange["time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone(timedelta(hours=8)))
    assert abs(started.timestamp() - datetime.now(timezone.utc).timestamp()) < 120
    assert shown["next_attempt"] > exchange["time"]
    assert [r["birth_id"] for r in status["needs_review"]] == [ward["review"]]
    [refused] = status["refused"]  # what waits for a correction, with the centre's cause
    assert refused["birth_id"] == ward["refused"] and "母亲姓名与证件不符" in refused["reason"]
    refused_lines = [line for line in done.stdout.splitlines() if line.startswith("refused:")]
    assert len(refused_lines) == 1 and f"ybplug amend {ward['refused']}" in refused_lines[0]
    assert status["problems"] and (await clerk("status", "--check", "--json")).returncode == 1
    for output in clerk.outputs:
        for id_number in SEED_MOTHERS.values():
            assert id_number not in output


@pytest.mark.anyio
async def test_show_finds_a_birth_by_id_serial_and_registration_number(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    by_id = await clerk.json("show", str(ward["registered"]))
    assert by_id["state"] == "registered" and by_id["registration_number"].startswith("XSE")
    assert (await clerk.json("show", by_id["registration_number"]))["birth_id"] == ward["registered"]
    assert (await clerk.json("show", by_id["his_serial"]))["birth_id"] == ward["registered"]
    text = await clerk("show", str(ward["refused"]))
    assert text.returncode == 0 and "refused" in text.stdout and "母亲姓名与证件不符" in text.stdout
    assert (await clerk.json("show", f"#{ward['registered']}"))["birth_id"] == ward["registered"]
    assert (await clerk.json("show", by_id["registration_number"].lower()))["birth_id"] == ward["registered"]
    missing = await clerk("show", "XSE9999999999999")
    assert missing.returncode == 1 and "no birth answers" in missing.stderr


@pytest.mark.anyio
async def test_the_clerk_resolves_a_review_amends_a_refusal_and_replaces_a_registration(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    [listed] = await clerk.json("review")
    assert listed["birth_id"] == ward["review"] and "look up its baz726" in listed["reason"]

    # Found at the centre (定点机构管理系统): the registration the lost reply carried.
    review_record = birth_record(31)
    [found] = [r for r in sandbox.registrations() if str(r["aac006"]) == str(review_record["aac006"])]
    mistake = await clerk("review", "resolve", str(ward["review"]), "--baz726", found["baz726"])
    assert mistake.returncode == 2 and "--eligible" in mistake.stderr  # a bad option: 2
    done = await clerk("review", "resolve", str(ward["review"]), "--baz726", found["baz726"], "--eligible", "yes",
                       "--operator", "张护士")
    assert done.returncode == 0, done.stderr
    shown = await clerk.json("show", found["baz726"])
    assert shown["state"] == "registered" and shown["eligible"] is True
    assert shown["actions"][-1]["operator"] == "张护士" and shown["actions"][-1]["action"] == "resolve review"
    assert await clerk.json("review") == []

    # The refused birth, corrected from stdin, uploaded again.
    corrected = {**birth_record(30), "bkee37": "陈晶"}
    done = await clerk("amend", str(ward["refused"]), "--record", "-", stdin=json.dumps(corrected, ensure_ascii=False))
    assert done.returncode == 0, done.stderr
    assert (await clerk.json("show", str(ward["refused"])))["state"] == "registered"

    # The registered birth's sex was wrong: void it and register the corrected record.
    (tmp_path / "fixed.json").write_text(json.dumps({**birth_record(32), "aac004": "2"}), encoding="utf-8")
    old = await clerk.json("show", str(ward["registered"]))
    done = await clerk("replace", str(ward["registered"]), "--record", "fixed.json", "--reason", "性别录错")
    assert done.returncode == 0, done.stderr
    replaced = await clerk.json("show", str(ward["registered"]))
    assert replaced["state"] == "voided" and replaced["replaced_by"] is not None
    new = await clerk.json("show", str(replaced["replaced_by"]))
    assert new["state"] == "registered" and new["replaces"] == ward["registered"]
    live = {r["baz726"] for r in sandbox.registrations() if str(r["aac006"]) == str(birth_record(32)["aac006"])
            and not r["voided"]}
    assert live == {new["registration_number"]} and old["registration_number"] not in live

    # A person's mistakes: one line each, nothing changed.
    again = await clerk("amend", str(ward["registered"]), "--record", "fixed.json")
    assert again.returncode == 1 and "cannot amend" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    bad = await clerk("amend", str(ward["refused"]), "--record", "bad.json")
    assert bad.returncode == 2 and "not JSON" in bad.stderr  # the command to fix: 2, as the README says
    usage = await clerk("review", "resolve", str(ward["refused"]))
    assert usage.returncode == 2

    # The failing upload answers now: nothing left in trouble.
    sandbox.clear_faults()
    assert (await clerk("retry")).returncode == 0
    check = await clerk("status", "--check")
    assert check.returncode == 0, check.stderr
    for output in clerk.outputs:
        for id_number in SEED_MOTHERS.values():
            assert id_number not in output


@pytest.mark.anyio
async def test_a_birth_past_the_real_name_horizon_is_stale_in_status_and_asked_with_sync_stale(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    (tmp_path / "ybplug.toml").write_text(
        f'journal = "{(tmp_path / "journal.db").as_posix()}"\nupload = "daily at 02:00"\n'
        f"realname_horizon_days = 0.00001\n"  # under a second
        f'[wire]\nurl = "{sandbox.url}"\nusr = "{SANDBOX_USR}"\npwd = "{SANDBOX_PWD}"\n',
        encoding="utf-8",
    )
    async with Host(Config.load(tmp_path / "ybplug.toml"), entry_points=False, background=False) as host:
        birth_id = (await host.record_birth(birth_record(40))).birth_id
        await host.sync("upload")
        number = (await host.birth(birth_id)).registration_number
    assert number is not None
    await anyio.sleep(1.0)
    clerk = Clerk(tmp_path)
    asked = sandbox.calls(Funid.REALNAME)
    daily = await clerk("sync", "realname")
    assert daily.returncode == 0 and "went stale 1" in daily.stdout
    assert sandbox.calls(Funid.REALNAME) == asked  # not asked in the daily poll
    check = await clerk("status", "--check")
    assert check.returncode == 1 and "1 births stale" in check.stderr and "stale:" in check.stdout
    sandbox.real_name(number, id_number=with_check_digit("35020320261125004"), name="陈小兰")
    on_demand = await clerk("sync", "stale")
    assert on_demand.returncode == 0 and sandbox.calls(Funid.REALNAME) == asked + 1
    assert (await clerk.json("show", number))["state"] == "real_named"
    assert (await clerk("status", "--check")).returncode == 0


@pytest.mark.anyio
async def test_a_replace_whose_void_gets_no_answer_says_so_and_sync_carries_it_on(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    (tmp_path / "fixed.json").write_text(json.dumps({**birth_record(32), "aac004": "2"}), encoding="utf-8")
    sandbox.inject(Fault("http_error", funid=Funid.VOID))
    done = await clerk("replace", str(ward["registered"]), "--record", "fixed.json", "--reason", "性别录错")
    assert done.returncode == 1 and "carries it on" in done.stderr
    assert (await clerk.json("show", str(ward["registered"])))["state"] == "registered"
    synced = await clerk("sync", "upload")
    assert "replacements resumed 1" in synced.stdout
    old = await clerk.json("show", str(ward["registered"]))
    assert old["state"] == "voided" and (await clerk.json("show", str(old["replaced_by"])))["state"] == "registered"


@pytest.mark.anyio
async def test_a_corrected_record_is_read_as_windows_notepad_saves_it(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    from ybplug.clerk import _record

    clerk = Clerk(tmp_path)
    corrected = {**birth_record(30), "bkee37": "陈晶"}
    text = json.dumps(corrected, ensure_ascii=False)
    (tmp_path / "ansi.json").write_bytes(text.encode("gbk"))  # Notepad's "ANSI" on a Chinese Windows
    done = await clerk("amend", str(ward["refused"]), "--record", "ansi.json")
    assert done.returncode == 0, done.stderr
    assert (await clerk.json("show", str(ward["refused"])))["state"] == "registered"
    for name, data in (("utf8", text.encode()), ("bom", codecs.BOM_UTF8 + text.encode()),
                       ("utf16", text.encode("utf-16")), ("utf16be", codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
                       ("gb18030", text.replace("陈晶", "陈𠀀").encode("gb18030"))):
        (tmp_path / f"{name}.json").write_bytes(data)
        expected = corrected if name != "gb18030" else {**corrected, "bkee37": "陈𠀀"}
        assert _record(str(tmp_path / f"{name}.json")) == expected, name

    # Refused in one line, exit 2: too deep to be a record, an encoding Notepad does not write, binary.
    for name, data, says in (
        ("deep", b"[" * 100_000 + b"]" * 100_000, "nested more than 32 levels deep"),
        ("utf32", text.encode("utf-32"), "UTF-32 text"),
        ("nobom", text.encode("utf-16-le"), "UTF-16 without a BOM"),
        ("binary", bytes([0xFF, 0x81, 0xFE, 0x00]) * 8, "not text in UTF-8"),
    ):
        (tmp_path / f"{name}.json").write_bytes(data)
        refused = await clerk("amend", str(ward["refused"]), "--record", f"{name}.json")
        [line] = refused.stderr.strip().splitlines()
        assert refused.returncode == 2 and f"--record {name}.json: " in line and says in line, line


@pytest.mark.anyio
async def test_a_birth_is_named_5_or_hash_5_by_every_command_and_void_takes_a_birth_or_any_case_baz726(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    review = await clerk("review", "resolve", f"#{ward['review']}", "--send-again")
    assert review.returncode == 0, review.stderr
    corrected = json.dumps({**birth_record(30), "bkee37": "陈晶"}, ensure_ascii=False)
    amended = await clerk("amend", f"#{ward['refused']}", "--record", "-", stdin=corrected)
    assert amended.returncode == 0, amended.stderr
    (tmp_path / "fixed.json").write_text(json.dumps({**birth_record(32), "aac004": "2"}), encoding="utf-8")
    replaced = await clerk("replace", f"#{ward['registered']}", "--record", "fixed.json", "--reason", "性别录错")
    assert replaced.returncode == 0, replaced.stderr
    new = (await clerk.json("show", str(ward["registered"])))["replaced_by"]

    # void: nothing reaches the centre that is not a registration number
    voids = sandbox.calls(Funid.VOID)
    for key, says in (("99999", "neither a registration number"), ("陈静", "'陈*'"),
                      (f"#{ward['failing']}", "has no baz726")):
        refused = await clerk("void", key, "--reason", "录错")
        [line] = refused.stderr.strip().splitlines()
        assert refused.returncode in (1, 2) and says in line and "陈静" not in line, line
    assert sandbox.calls(Funid.VOID) == voids
    number = (await clerk.json("show", str(new)))["registration_number"]
    by_id = await clerk("void", f"#{new}", "--reason", "录错")
    assert by_id.returncode == 0 and f"voided {number}" in by_id.stdout, by_id.stderr
    refused_twice = await clerk("void", number.lower(), "--reason", "录错")  # upper-cased, sent: "already void"
    assert sandbox.calls(Funid.VOID) == voids + 2 and "Traceback" not in refused_twice.stderr


@pytest.mark.anyio
async def test_a_persons_mistakes_on_the_command_line_are_one_line_with_the_readme_exit_status(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    (tmp_path / "bigint.json").write_text('{"bme027": ' + "9" * 5000 + "}", encoding="utf-8")
    (tmp_path / "unknown.json").write_text(json.dumps({**birth_record(30), "aac006": "13800138000\n"}), encoding="utf-8")
    for args, code, says in (
        (("amend", str(ward["refused"]), "--record", "bigint.json"), 2, "more than 4,300 digits"),
        (("replace", str(ward["registered"]), "--record", "bigint.json", "--reason", "x"), 2, "more than 4,300 digits"),
        (("amend", str(ward["refused"]), "--record", "unknown.json"), 2, "aac006"),
        (("show", str(ward["registered"]), "--twin", "9" * 20), 2, "bme027 多胞胎序号 must be one digit"),
        (("show", "陈静"), 1, "no birth answers to '陈*'"),
        (("show", "350203199001010026"), 1, "3502**********0026"),
        (("review", "resolve", str(ward["review"]), "--refused", ""), 2, "the cause is required"),
        (("review", "resolve", str(ward["review"]), "--baz726", "陈静350203199001010026", "--eligible", "yes"), 2,
         "baz726 新生儿登记流水号"),
        (("review", "resolve", "abc", "--send-again"), 2, "a birth id is a number"),
        (("review", "resolve", str(ward["review"]), "--refused", "\x1b[2J"), 2, "must not contain control characters"),
        (("review", "resolve", str(ward["review"]), "--send-again", "--operator", "x" * 100_000), 2, "operator: at most 64"),
        (("void", "XSE2612010000009", "--reason", ""), 2, "bae016"),
    ):
        done = await clerk(*args)
        [line] = done.stderr.strip().splitlines()[-1:]
        assert done.returncode == code and says in line, (args, done.returncode, done.stderr)
        assert "陈静" not in done.stderr and "350203199001010026" not in done.stderr and "13800138000" not in done.stderr
    assert (await clerk.json("show", str(ward["review"])))["state"] == "needs_review"  # nothing changed


@pytest.mark.anyio
async def test_status_check_fails_on_deliveries_waiting_for_a_plugin_no_host_has(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    import sqlite3

    clerk = Clerk(tmp_path)
    assert "waiting for plugin" not in (await clerk("status", "--check")).stderr
    # A plugin a host once had (a durable subscriber), now uninstalled: an answer waits for it.
    db = sqlite3.connect(tmp_path / "journal.db")
    with db:
        event_id = "an-answer-for-the-his"
        db.execute("INSERT INTO events (id, hook, birth_id, payload, created_at) VALUES (?, 'collection_result', ?, ?, ?)",
                   (event_id, ward["registered"], b"{}", time.time()))
        db.execute("INSERT INTO subscriptions (plugin, hook, since, last_loaded_at) VALUES ('st_mary', 'collection_result', 0, 0)")
        db.execute("INSERT INTO deliveries (event_id, plugin) VALUES (?, 'st_mary')", (event_id,))
        db.execute("UPDATE events SET created_at = created_at - 3600")
    db.close()
    check = await clerk("status", "--check")
    assert check.returncode == 1 and "1 deliveries waiting for plugin st_mary" in check.stderr, check.stderr
    assert "waiting:     1 deliveries for plugin st_mary" in check.stdout
    assert (await clerk.json("status"))["undelivered"] == {"st_mary": 1}


@pytest.mark.anyio
async def test_what_came_from_the_centre_reaches_the_terminal_with_control_characters_escaped_and_capped(
    tmp_path: Path, sandbox: Sandbox, ward: dict[str, int]
) -> None:
    clerk = Clerk(tmp_path)
    config = Config.load(tmp_path / "ybplug.toml")
    async with Host(config, entry_points=False, background=False) as host:
        birth_id = (await host.record_birth(birth_record(50))).birth_id
        sandbox.inject(Fault("refuse", funid=Funid.COLLECT, cause="\x1b[2J\x1b]0;pwned\x07错\x00误" + "长" * 1_000_000))
        await host.sync("upload")
        assert (await host.birth(birth_id)).state == "refused"
    for args in (("show", str(birth_id)), ("status",), ("show", str(birth_id), "--json")):
        done = await clerk(*args)
        assert done.returncode == 0, done.stderr
        assert not any(c in done.stdout for c in "\x1b\x00\x07\x9b"), args
    shown = await clerk("show", str(birth_id))
    assert "\\x1b[2J\\x1b]0;pwned\\x07错\\x00误" in shown.stdout
    reason = (await clerk.json("show", str(birth_id)))["reason"]
    assert len(reason) <= 2000 and reason.endswith("…")
