"""The sandbox centre, spoken to by hand (raw aiohttp, envelopes built here), not via HttpTransport.

These tests pin the wire and the rules the rest of the suite relies on: the envelope, flag as a
string, duplicates, twins, void, the real-name lifecycle, eligibility, usr/pwd, persistence, the
admin surface and the ``ybplug sandbox`` command.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest

from ybplug.codes import Funid
from ybplug.fields import with_check_digit
from ybplug.sandbox import (
    DUPLICATE_CAUSE,
    SEED_MOTHERS,
    UNREGISTERED_MOTHER,
    Fault,
    Sandbox,
    SandboxError,
    parse_fault,
)

COLLECT = Funid.COLLECT.value
VOID = Funid.VOID.value
REALNAME = Funid.REALNAME.value
YBPLUG = Path(sys.executable).parent / "ybplug"
BAZ726 = re.compile(r"^XSE\d{13}$")


async def post(
    url: str, funid: str, data: Any, *, usr: str = "his", pwd: str = "sandbox"
) -> tuple[int, dict[str, Any]]:
    """One business call with the envelope built by hand; returns the HTTP status and inner reply."""
    inner = json.dumps({"funid": funid, "usr": usr, "pwd": pwd, "data": data}, ensure_ascii=False)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/sieaf/business_handle/", json={"inputValue": inner, "outputLen": 20000}) as r:
            outer = json.loads(await r.read())
            return r.status, json.loads(outer["data"]["outputValue"])


async def admin(url: str, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{url}/admin/{path}", json=payload) as r:
            return r.status, await r.json()


def wrong_check_digit(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def wire(birth: Any) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(birth)
    return data


async def realname_rows(url: str, *numbers: str) -> list[dict[str, Any]]:
    items = [{"baz726": n} for n in numbers]
    status, reply = await post(url, REALNAME, {"rownum": len(items), "xseqqlb": items})
    assert status == 200 and reply["flag"] == "1", reply
    assert reply["data"]["rownum"] == len(reply["data"]["xsesmlb"])
    rows: list[dict[str, Any]] = reply["data"]["xsesmlb"]
    return rows


# -- collection ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_collect_by_hand_then_duplicate(sandbox: Sandbox, birth_for: Any) -> None:
    # Numbers as strings, as real peers send them: the centre decodes leniently.
    data = {
        "akc190": "ZY0001", "bke042": "HIS0001", "bme027": "1", "aac004": "1",
        "aac006": str(birth_for().birth_time), "bkee43": "01", "bkee35": SEED_MOTHERS["local"],
        "bkee37": "陈静", "bkee33": "13912345678", "bke241": "1",
    }
    status, reply = await post(sandbox.url, COLLECT, data)
    assert status == 200
    assert reply["flag"] == "1" and reply["cause"] == ""
    number = reply["data"]["baz726"]
    assert BAZ726.match(number)
    assert reply["data"]["bkee45"] == "1" and reply["data"]["bkee46"] == ""

    status, again = await post(sandbox.url, COLLECT, data)
    assert status == 200 and again["flag"] == "0"
    assert again["cause"] == DUPLICATE_CAUSE and "重复申报" in again["cause"]
    assert number not in json.dumps(again, ensure_ascii=False)  # the real centre gives no number
    assert [r["baz726"] for r in sandbox.registrations()] == [number]
    assert sandbox.calls(COLLECT) == 2 and sandbox.calls() == 2


@pytest.mark.anyio
async def test_twins_are_two_registrations(sandbox: Sandbox, birth_for: Any) -> None:
    first = birth_for()
    second = birth_for(multiple_birth_number=2, birth_time=first.birth_time, newborn_sex="1")
    numbers = []
    for birth in (first, second):
        _, reply = await post(sandbox.url, COLLECT, wire(birth))
        assert reply["flag"] == "1", reply
        numbers.append(reply["data"]["baz726"])
    assert numbers[0] != numbers[1]
    rows = sandbox.registrations()
    assert [(r["bme027"], r["aac006"]) for r in rows] == [(1, first.birth_time), (2, first.birth_time)]
    # Same time and number for another mother is another birth, not a duplicate.
    _, other = await post(sandbox.url, COLLECT, wire(birth_for("nonlocal", birth_time=first.birth_time)))
    assert other["flag"] == "1"


@pytest.mark.anyio
async def test_invalid_birth_is_refused_with_the_field(sandbox: Sandbox, birth_for: Any) -> None:
    data = wire(birth_for())
    data["bkee35"] = wrong_check_digit(data["bkee35"])
    status, reply = await post(sandbox.url, COLLECT, data)
    assert status == 200 and reply["flag"] == "0"
    assert "bkee35" in reply["cause"] and "check digit" in reply["cause"]
    _, reply = await post(sandbox.url, COLLECT, [1, 2])
    assert reply["flag"] == "0" and "JSON object" in reply["cause"]
    _, reply = await post(sandbox.url, "yb99.99", {})
    assert reply["flag"] == "0" and "unknown funid" in reply["cause"]
    assert sandbox.registrations() == []


@pytest.mark.anyio
async def test_malformed_envelope_is_http_400(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox.url}/sieaf/business_handle/", data=b"not json") as r:
            assert r.status == 400
            inner = json.loads((await r.json())["data"]["outputValue"])
            assert inner["flag"] == "0" and "malformed" in inner["cause"]


def test_centre_rules_without_a_server(birth_for: Any) -> None:
    """The rules are a plain class: no HTTP, no event loop, and importing them loads no aiohttp."""
    from ybplug.sandbox.centre import Centre

    centre = Centre()
    data = wire(birth_for("short_permit"))
    first = centre.dispatch(COLLECT, data)
    assert first["flag"] == "1" and BAZ726.match(first["data"]["baz726"])
    assert (first["data"]["bkee45"], first["data"]["bkee46"]) == ("0", "居住证未满一年")
    assert centre.dispatch(COLLECT, data) == {"flag": "0", "cause": DUPLICATE_CAUSE, "data": {}}
    assert centre.authorised("his", "sandbox") and not centre.authorised("his", "Sandbox")
    centre.close()
    code = "import sys, ybplug.sandbox.centre, ybplug.sandbox.faults, ybplug.sandbox.parse; print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


# -- void ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_void(sandbox: Sandbox, birth_for: Any) -> None:
    birth = wire(birth_for())
    _, reply = await post(sandbox.url, COLLECT, birth)
    number = reply["data"]["baz726"]

    _, voided = await post(sandbox.url, VOID, {"baz726": number, "bae016": "重复上传", "bke241": "1"})
    assert voided == {"flag": "1", "cause": "", "data": {"baz726": number}}
    assert sandbox.registrations()[0]["voided"] is True
    assert sandbox.registrations()[0]["bae016"] == "重复上传"

    _, again = await post(sandbox.url, VOID, {"baz726": number, "bae016": "重复上传", "bke241": "1"})
    assert again["flag"] == "0" and "already void" in again["cause"]
    _, unknown = await post(sandbox.url, VOID, {"baz726": "XSE0000000000000", "bae016": "x", "bke241": "1"})
    assert unknown["flag"] == "0" and "no such registration" in unknown["cause"]
    _, no_reason = await post(sandbox.url, VOID, {"baz726": number, "bke241": "1"})
    assert no_reason["flag"] == "0" and "bae016" in no_reason["cause"]
    _, empty_reason = await post(sandbox.url, VOID, {"baz726": number, "bae016": " ", "bke241": "1"})
    assert empty_reason["flag"] == "0" and "bae016" in empty_reason["cause"]

    # Once void, the same birth may be collected again, under a new number.
    _, again = await post(sandbox.url, COLLECT, birth)
    assert again["flag"] == "1" and again["data"]["baz726"] != number


# -- real name -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_realname_lifecycle(sandbox: Sandbox, birth_for: Any) -> None:
    numbers = []
    for _ in range(2):
        _, reply = await post(sandbox.url, COLLECT, wire(birth_for()))
        numbers.append(reply["data"]["baz726"])
    first, second = numbers

    rows = await realname_rows(sandbox.url, first, second, "XSE9999999999999")
    assert rows == [
        {"baz726": first, "bae018": "N", "bae009": "Z"},
        {"baz726": second, "bae018": "N", "bae009": "Z"},
    ]

    child_id = with_check_digit("35020320240101001")
    sandbox.real_name(first, id_number=child_id, name="林小雨", sex="2")
    (row,) = await realname_rows(sandbox.url, first)
    assert row["bae018"] == "Y" and row["bae009"] == "Z"
    assert row["aac058"] == "01" and row["aac058_mc"] == "居民身份证"
    assert row["aac002"] == child_id and row["aac003"] == "林小雨"
    assert row["aac004"] == "2" and row["aac004_mc"] == "女"
    assert row["aac999"] and len(row["aac999"]) <= 20
    assert re.match(r"^\d{14}$", row["bae014"])
    assert sandbox.registrations()[0]["real_named"] is True

    with pytest.raises(SandboxError, match="already real-named"):
        sandbox.real_name(first, id_number=child_id, name="林小雨")
    with pytest.raises(SandboxError, match="no such registration"):
        sandbox.real_name("XSE9999999999999", id_number=child_id, name="x")
    with pytest.raises(SandboxError, match="check digit"):
        sandbox.real_name(second, id_number=wrong_check_digit(child_id), name="x")

    await post(sandbox.url, VOID, {"baz726": second, "bae016": "取消", "bke241": "1"})
    (row,) = await realname_rows(sandbox.url, second)
    assert row == {"baz726": second, "bae018": "N", "bae009": "F"}
    with pytest.raises(SandboxError, match="void"):
        sandbox.real_name(second, id_number=child_id, name="x")

    # A real-named registration voided afterwards keeps its identity, flagged F.
    await post(sandbox.url, VOID, {"baz726": first, "bae016": "取消", "bke241": "1"})
    (row,) = await realname_rows(sandbox.url, first)
    assert row["bae018"] == "Y" and row["bae009"] == "F"


@pytest.mark.anyio
async def test_realname_query_validation(sandbox: Sandbox) -> None:
    _, reply = await post(sandbox.url, REALNAME, {"rownum": 2, "xseqqlb": [{"baz726": "XSE1"}]})
    assert reply["flag"] == "0" and "rownum" in reply["cause"]
    _, reply = await post(sandbox.url, REALNAME, {"rownum": 0, "xseqqlb": []})
    assert reply["flag"] == "0" and "xseqqlb" in reply["cause"]


# -- eligibility ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mother", "eligible", "reason"),
    [
        ("local", "1", ""),
        ("nonlocal", "1", ""),
        ("short_permit", "0", "居住证未满一年"),
        ("expired_permit", "0", "居住证已失效"),
        ("not_insured", "0", "母亲未参保"),
        (UNREGISTERED_MOTHER, "0", "母亲未参保"),
    ],
)
async def test_eligibility_of_seeded_mothers(
    sandbox: Sandbox, birth_for: Any, mother: str, eligible: str, reason: str
) -> None:
    _, reply = await post(sandbox.url, COLLECT, wire(birth_for(mother)))
    assert reply["flag"] == "1"
    assert (reply["data"]["bkee45"], reply["data"]["bkee46"]) == (eligible, reason)


@pytest.mark.anyio
async def test_permit_held_exactly_one_year(sandbox: Sandbox, birth_for: Any) -> None:
    one_year = with_check_digit("44030419940202004")
    almost = with_check_digit("44030419940202012")
    sandbox.add_mother(one_year, "nonlocal_permit", "20230615", "20300101")
    status, body = await admin(sandbox.url, "POST", "mothers", {
        "id_number": almost, "kind": "nonlocal_permit", "permit_start": "2023-06-16", "permit_end": "20300101",
    })
    assert (status, body) == (200, {"ok": True})
    birth_time = 20240615080000
    _, held = await post(sandbox.url, COLLECT, wire(birth_for(one_year, birth_time=birth_time)))
    _, short = await post(sandbox.url, COLLECT, wire(birth_for(almost, birth_time=birth_time)))
    assert held["data"]["bkee45"] == "1"
    assert (short["data"]["bkee45"], short["data"]["bkee46"]) == ("0", "居住证未满一年")
    # Valid through the day of birth counts as valid.
    sandbox.add_mother(one_year, "nonlocal_permit", "20200101", "20240615")
    _, last_day = await post(sandbox.url, COLLECT, wire(birth_for(one_year, birth_time=20240615090000)))
    assert last_day["data"]["bkee45"] == "1"


def test_register_rejects_bad_entries() -> None:
    centre = Sandbox()
    with pytest.raises(SandboxError, match="kind"):
        centre.add_mother(SEED_MOTHERS["local"], "tourist")
    with pytest.raises(SandboxError, match="permit_start"):
        centre.add_mother(SEED_MOTHERS["local"], "nonlocal_permit")
    with pytest.raises(SandboxError, match="check digit"):
        centre.add_mother(wrong_check_digit(SEED_MOTHERS["local"]), "local")
    with pytest.raises(SandboxError, match="before"):
        centre.add_mother(SEED_MOTHERS["local"], "nonlocal_permit", "20240101", "20230101")
    centre.close()


def test_seeded_mothers_have_valid_id_numbers() -> None:
    from ybplug.fields import id_check_digit

    for number in [*SEED_MOTHERS.values(), UNREGISTERED_MOTHER]:
        assert len(number) == 18 and id_check_digit(number[:17]) == number[17]
    assert len(set(SEED_MOTHERS.values())) == len(SEED_MOTHERS)


# -- usr/pwd -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wrong_password_is_401(sandbox: Sandbox, birth_for: Any) -> None:
    status, reply = await post(sandbox.url, COLLECT, wire(birth_for()), pwd="guess")
    assert status == 401
    assert reply["flag"] == "0" and reply["cause"] == "usr/pwd rejected"
    status, _ = await post(sandbox.url, COLLECT, wire(birth_for()), usr="someone")
    assert status == 401
    assert sandbox.registrations() == []

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox.url}/sieaf/authorization/", json={"usr": "his", "pwd": "sandbox"}) as r:
            assert r.status == 200 and json.loads(await r.read()) == {"flag": "1", "cause": ""}
        async with session.post(f"{sandbox.url}/sieaf/authorization/", json={"usr": "his", "pwd": "no"}) as r:
            assert r.status == 401 and json.loads(await r.read())["flag"] == "0"


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_faults_are_per_funid_and_counted(sandbox: Sandbox, birth_for: Any) -> None:
    sandbox.inject(Fault("refuse", funid=VOID, times=2, cause="系统维护"))
    _, collected = await post(sandbox.url, COLLECT, wire(birth_for()))
    assert collected["flag"] == "1"
    number = collected["data"]["baz726"]
    for _ in range(2):
        _, refused = await post(sandbox.url, VOID, {"baz726": number, "bae016": "x", "bke241": "1"})
        assert refused == {"flag": "0", "cause": "系统维护", "data": {}}
    assert sandbox.faults() == []
    _, voided = await post(sandbox.url, VOID, {"baz726": number, "bae016": "x", "bke241": "1"})
    assert voided["flag"] == "1"
    assert (sandbox.calls(COLLECT), sandbox.calls(VOID), sandbox.calls()) == (1, 3, 4)


@pytest.mark.anyio
async def test_faults_queue_in_order(sandbox: Sandbox, birth_for: Any) -> None:
    sandbox.inject(Fault("refuse", cause="first"), Fault("refuse", cause="second", times=None))
    causes = []
    for _ in range(3):
        _, reply = await post(sandbox.url, COLLECT, wire(birth_for()))
        causes.append(reply["cause"])
    assert causes == ["first", "second", "second"]
    sandbox.clear_faults()
    _, reply = await post(sandbox.url, COLLECT, wire(birth_for()))
    assert reply["flag"] == "1"


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="times"):
        Fault("refuse", times=0)
    with pytest.raises(ValueError, match="status"):
        Fault("http_error", status=200)
    with pytest.raises(TypeError, match="funid"):
        Fault("refuse", funid=object())  # type: ignore[arg-type]  # e.g. COLLECT instead of COLLECT.funid


def test_parse_fault() -> None:
    assert parse_fault("latency") == Fault("latency", times=None)
    assert parse_fault(f"http_error:{COLLECT},times=2,status=502") == Fault(
        "http_error", funid=COLLECT, times=2, status=502
    )
    assert parse_fault("latency,seconds=1.5,times=all") == Fault("latency", seconds=1.5, times=None)
    assert parse_fault(f"refuse:{VOID},times=1,cause=停机, 请稍后") == Fault(
        "refuse", funid=VOID, times=1, cause="停机, 请稍后"
    )
    for bad in ("nope", "latency,seconds=x", "latency,speed=2", "refuse,times", "http_error,status=200"):
        with pytest.raises(ValueError):
            parse_fault(bad)


# -- admin endpoints -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_admin_endpoints(sandbox: Sandbox, birth_for: Any) -> None:
    url = sandbox.url
    status, body = await admin(url, "POST", "faults", {"kind": "refuse", "funid": COLLECT, "cause": "维护中"})
    assert status == 200 and body["faults"][0]["kind"] == "refuse"
    _, refused = await post(url, COLLECT, wire(birth_for()))
    assert refused["cause"] == "维护中"
    status, body = await admin(url, "POST", "faults", [{"kind": "latency", "seconds": 0.01}, {"kind": "malformed"}])
    assert status == 200 and [f["kind"] for f in body["faults"]] == ["latency", "malformed"]
    assert (await admin(url, "GET", "faults"))[1]["faults"][1]["times"] == 1
    assert await admin(url, "DELETE", "faults") == (200, {"faults": []})
    status, body = await admin(url, "POST", "faults", {"kind": "bogus"})
    assert status == 400 and "unknown fault kind" in body["error"]

    uploaded = wire(birth_for())
    _, collected = await post(url, COLLECT, uploaded)
    number = collected["data"]["baz726"]
    status, body = await admin(url, "GET", "registrations")
    assert status == 200 and [r["baz726"] for r in body["registrations"]] == [number]
    assert body["registrations"][0]["real_named"] is False

    child = with_check_digit("35020320240301003")
    status, body = await admin(url, "POST", "real_name", {"baz726": number, "id_number": child, "name": "陈一"})
    assert (status, body) == (200, {"ok": True})
    (row,) = await realname_rows(url, number)
    assert row["bae018"] == "Y" and row["aac004"] == str(uploaded["aac004"])  # real-named as the newborn uploaded
    assert row["aac004_mc"] == {"1": "男", "2": "女"}[row["aac004"]]
    status, body = await admin(url, "POST", "real_name", {"baz726": "XSE0", "id_number": child, "name": "x"})
    assert status == 400 and "no such registration" in body["error"]
    status, body = await admin(url, "POST", "mothers", {"id_number": child, "kind": "alien"})
    assert status == 400 and "kind" in body["error"]

    status, body = await admin(url, "GET", "calls")
    assert status == 200 and body["total"] == 3 and body["by_funid"] == {COLLECT: 2, REALNAME: 1}


# -- persistence ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_state_persists_across_restart(tmp_path: Path, birth_for: Any) -> None:
    db = tmp_path / "persist.db"
    birth = wire(birth_for())
    async with Sandbox(db) as first:
        _, reply = await post(first.url, COLLECT, birth)
        number = reply["data"]["baz726"]
        first.real_name(number, id_number=with_check_digit("35020320240101001"), name="林小雨")
        first.add_mother(with_check_digit("44030419940202004"), "local")
        before = first.registrations()
    async with Sandbox(db) as second:
        assert second.registrations() == before
        _, again = await post(second.url, COLLECT, birth)
        assert again["flag"] == "0" and again["cause"] == DUPLICATE_CAUSE
        (row,) = await realname_rows(second.url, number)
        assert row["bae018"] == "Y"
        _, other = await post(second.url, COLLECT, wire(birth_for(with_check_digit("44030419940202004"))))
        assert other["data"]["bkee45"] == "1"  # the register persisted too
        assert other["data"]["baz726"] != number  # numbering continues, never reissues


# -- the command ---------------------------------------------------------------------------------


async def _start_cli(*args: str) -> tuple[anyio.abc.Process, str]:
    process = await anyio.open_process([str(YBPLUG), "sandbox", "--port", "0", *args])
    assert process.stdout is not None
    line = b""
    with anyio.fail_after(20):
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive(1)
            line += chunk
    url = line.decode().strip()
    assert re.match(r"^http://127\.0\.0\.1:\d+$", url), url
    return process, url


@pytest.mark.anyio
async def test_cli_serves_and_persists_after_kill(tmp_path: Path, birth_for: Any) -> None:
    db = tmp_path / "cli.db"
    birth = wire(birth_for())
    process, url = await _start_cli("--db", str(db))
    try:
        _, reply = await post(url, COLLECT, birth)
        assert reply["flag"] == "1"
    finally:
        process.kill()  # SIGKILL: the committed registration must survive
        await process.wait()
    process, url = await _start_cli("--db", str(db), "--fault", f"refuse:{VOID},times=1,cause=维护")
    try:
        _, again = await post(url, COLLECT, birth)
        assert again["flag"] == "0" and again["cause"] == DUPLICATE_CAUSE
        _, refused = await post(url, VOID, {"baz726": reply["data"]["baz726"], "bae016": "x", "bke241": "1"})
        assert refused["cause"] == "维护"
    finally:
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            code = await process.wait()
        await process.aclose()
    assert code == 0


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--fault", "explode"], "unknown fault kind"),
        (["--port", "http"], "not a port number"),
        (["--port", "70000"], "not a port number"),
        (["--frobnicate"], "unrecognized arguments"),
        # A folder cannot be made under a plain file (this test file), even by root.
        (["--db", str(Path(__file__) / "x" / "centre.db")], "--db"),
        (["--pwd", "secret"], "YBPLUG_SANDBOX_PWD"),
        (["--pwd=secret"], "YBPLUG_SANDBOX_PWD"),
        (["--pwd-file", str(Path(__file__).parent / "no-such-pwd-file")], "--pwd-file"),
    ],
)
def test_cli_bad_flag_is_one_line_and_exit_2(args: list[str], mentions: str) -> None:
    done = subprocess.run([str(YBPLUG), "sandbox", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert mentions in lines[0] and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.anyio
@pytest.mark.parametrize("charset", ["gbk", "gb18030"])
async def test_the_sandbox_judges_names_in_its_configured_charset(tmp_path: Path, charset: str) -> None:
    """䶮 is outside GBK: a GBK centre refuses it by name, a GB18030 centre registers it."""
    from ybplug.codes import Funid as _Funid
    from support import make_birth as _make_birth

    async with Sandbox(tmp_path / f"{charset}.db", charset=charset) as centre:
        record = msgspec.to_builtins(_make_birth("local", mother_name="王䶮"))
        answer = centre.dispatch(_Funid.COLLECT, record)
    if charset == "gbk":
        assert answer["flag"] == "0" and "bkee37" in answer["cause"] and "GBK" in answer["cause"]
    else:
        assert answer["flag"] == "1" and answer["data"]["baz726"].startswith("XSE")


@pytest.mark.anyio
@pytest.mark.parametrize("charset", ["gbk", "gb18030"])
async def test_the_sandbox_judges_a_void_reason_in_its_configured_charset(tmp_path: Path, charset: str) -> None:
    """A void's bae016 注销原因 is judged like a name: 𠀀 (outside GBK) is refused by a GBK centre,
    voided by a GB18030 one (it was refused as "cannot be encoded in GBK" whatever --charset said)."""
    from support import make_birth as _make_birth

    async with Sandbox(tmp_path / f"{charset}.db", charset=charset) as centre:
        registered = centre.dispatch(Funid.COLLECT, msgspec.to_builtins(_make_birth("local")))
        number = registered["data"]["baz726"]
        answer = centre.dispatch(Funid.VOID, {"baz726": number, "bae016": "重复𠀀", "bke241": "1"})
    if charset == "gbk":
        assert answer["flag"] == "0" and "bae016" in answer["cause"] and "GBK" in answer["cause"]
    else:
        assert answer == {"flag": "1", "cause": "", "data": {"baz726": number}}
