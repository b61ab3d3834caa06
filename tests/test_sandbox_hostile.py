"""The sandbox against hostile input, and the personal data it holds.

Property tests drive the request parser (:mod:`ybplug.sandbox.parse`) and the centre's rules
directly, without a server, with random bytes and with structured hostile JSON (deep nesting, huge
strings, lone surrogates, wrong types everywhere): the only outcome allowed is a clean refusal,
each case within 100 ms.  ``YBPLUG_FUZZ=full`` runs 10,000 cases a property instead of 300.  A few
cases then go over real HTTP, where nothing may be a 500 or leave a traceback in the log.

Then privacy: the password never in argv, the database and its folders private to the user, and
no ID number, name or phone number in the sandbox's log lines, even at DEBUG.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ybplug import envelope
from ybplug.codes import Funid
from ybplug.fields import with_check_digit
from ybplug.sandbox import SEED_MOTHERS, Fault, Sandbox
from ybplug.sandbox.centre import Centre, SandboxError
from ybplug.sandbox.cli import PWD_ENV
from ybplug.sandbox.parse import MAX_BODY, MAX_DEPTH, BadRequest, parse_admin, parse_business, parse_credentials
from ybplug.sandbox.server import _MotherIn, _RealNameIn

from support import birth_record

# No hypothesis deadline: on a shared machine one run in thousands meets a pause (GC, another
# process) and hypothesis calls that flaky.  quickly() below holds each case to 100 ms instead.
settings.register_profile(
    "sandbox-quick", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "sandbox-full", max_examples=10_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
fuzz = settings.get_profile("sandbox-full" if os.environ.get("YBPLUG_FUZZ") == "full" else "sandbox-quick")
CASE_LIMIT = 0.1  # seconds


def quickly(check: Callable[[], None]) -> None:
    """Run ``check`` (it asserts); over 100 ms, run it again: it fails only when slow three times
    running (a slow parser is slow every time; a pause of the machine is not)."""
    for _ in range(3):
        start = time.perf_counter()
        check()
        elapsed = time.perf_counter() - start
        if elapsed < CASE_LIMIT:
            return
    pytest.fail(f"a case took over {CASE_LIMIT * 1000:.0f} ms three times running (last {elapsed * 1000:.0f} ms)")

YBPLUG = Path(sys.executable).parent / "ybplug"

# -- strategies -----------------------------------------------------------------------------------

#: Any code point, lone surrogates included (hypothesis leaves them out of text() by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
wire_keys = st.sampled_from(["funid", "usr", "pwd", "data", "inputValue", "outputLen", "bkee35", "aac006",
                             "bme027", "baz726", "bae016", "rownum", "xseqqlb", "kind", "times", "id_number"])
#: Objects with the wire's own keys, each holding anything: wrong types everywhere.
wire_objects = st.dictionaries(wire_keys | any_text, json_values, max_size=8)


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Deep nesting, lists or objects, from just over the limit to far past msgspec's own guard."""
    depth = draw(st.integers(MAX_DEPTH - 2, 5000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return opener * depth + "1" + closer * depth


@st.composite
def huge(draw: st.DrawFn) -> str:
    return json.dumps("x" * draw(st.integers(MAX_BODY - 64, MAX_BODY + 4096)))


def to_json(value: Any, ascii_only: bool) -> bytes:
    """JSON of ``value``; lone surrogates either escaped (``\\ud800``) or as raw (invalid) UTF-8."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


#: A valid record of each transaction, for mutating one field at a time.
VALID: dict[str, dict[str, Any]] = {
    Funid.COLLECT: birth_record(1),
    Funid.VOID: {"baz726": "XSE2401010000001", "bae016": "重复上传", "bke241": "1"},
    Funid.REALNAME: {"rownum": 1, "xseqqlb": [{"baz726": "XSE2401010000001"}]},
}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A transaction's valid data with some fields replaced by anything, or dropped."""
    funid = draw(st.sampled_from(list(VALID)))
    data = dict(VALID[funid])
    for key in draw(st.lists(st.sampled_from(sorted(data)), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            data[key] = draw(json_values)
        else:
            del data[key]
    return funid, data


def json_text(ascii_only: bool = True) -> st.SearchStrategy[str]:
    """Hostile JSON as text (nesting past what Python's json module can build or dump)."""
    as_text = lambda v: to_json(v, ascii_only).decode("utf-8", "surrogatepass")  # noqa: E731
    return st.one_of(
        json_values.map(as_text), wire_objects.map(as_text), mutated().map(lambda m: as_text(m[1])),
        nested(), huge(),
    )


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """A business body: junk at every level of the envelope, or around a well-formed one."""
    ascii_only = draw(st.booleans())
    request = draw(st.just({}) | wire_objects)
    request.pop("data", None)
    if draw(st.booleans()):  # a transaction's own data, some fields wrong: the rules must refuse
        request["funid"], data = draw(mutated())
        data_text = to_json(data, ascii_only).decode("utf-8", "surrogatepass")
    else:
        request.setdefault("funid", draw(st.sampled_from([*Funid, "", "yb99.99"]) | json_values))
        data_text = draw(json_text(ascii_only))
    request.setdefault("usr", "his")
    request.setdefault("pwd", "sandbox")
    head = to_json(request, ascii_only).decode("utf-8", "surrogatepass")
    inner = head[:-1] + (', "data": ' if len(head) > 2 else '"data": ') + data_text + "}"
    shape = draw(st.sampled_from([0, 1, 2, 3, 4, 4, 4, 4]))
    if shape == 0:  # the inner request where the envelope belongs
        return inner.encode("utf-8", "surrogatepass")
    if shape == 1:  # inputValue of the wrong type
        return ('{"outputLen": 20000, "inputValue": ' + inner + "}").encode("utf-8", "surrogatepass")
    if shape == 2:  # junk beside the envelope's fields
        return to_json({**draw(wire_objects), "inputValue": inner}, ascii_only)
    if shape == 3:  # text that is not JSON inside a good envelope
        return to_json({"inputValue": inner[: draw(st.integers(0, len(inner)))] + draw(any_text)}, ascii_only)
    return to_json({"inputValue": inner, "outputLen": 20000}, ascii_only)


# -- the parser, directly ------------------------------------------------------------------------

centre = Centre()  # in memory, shared by the properties: the rules, no server


def refused_cleanly(exc: BadRequest) -> None:
    assert exc.status in (400, 413)
    assert str(exc) and len(str(exc)) < 400 and "Traceback" not in str(exc)


def answered_cleanly(inner: envelope.Request) -> None:
    """Whatever got through the parser, the rules answer it, never raise: a refusal naming the
    reason or (a mutated record that is still valid, say one without an optional field) a success."""
    funid = inner.funid if isinstance(inner.funid, str) else ""
    reply = centre.dispatch(funid, inner.data)
    if reply["flag"] == "1":
        assert funid in centre.rules and isinstance(reply["data"], dict) and reply["data"]
    else:
        assert reply["flag"] == "0" and isinstance(reply["cause"], str) and reply["cause"]
    envelope.encode_reply(reply)  # the server can always send it


@fuzz
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(body: bytes) -> None:
    quickly(lambda: random_bytes_case(body))


def random_bytes_case(body: bytes) -> None:
    for parse in (parse_business, parse_credentials, lambda b: parse_admin(b, Fault | list[Fault])):
        try:
            value = parse(body)
        except BadRequest as exc:
            refused_cleanly(exc)
        else:  # bytes that happen to be JSON of the right shape, e.g. {} for credentials
            assert value is not None


@fuzz
@given(hostile_bodies())
def test_hostile_business_bodies_get_a_clean_refusal(body: bytes) -> None:
    quickly(lambda: business_case(body))


def business_case(body: bytes) -> None:
    try:
        inner = parse_business(body)
    except BadRequest as exc:
        refused_cleanly(exc)
    else:
        answered_cleanly(inner)


@fuzz
@given(st.booleans().flatmap(json_text))
def test_hostile_admin_and_sign_in_bodies_get_a_clean_refusal(text: str) -> None:
    quickly(lambda: admin_case(text.encode("utf-8", "surrogatepass")))


def admin_case(body: bytes) -> None:
    for kind, act in [
        (_MotherIn, lambda m: centre.add_mother(m.id_number, m.kind, m.permit_start, m.permit_end)),
        (_RealNameIn, lambda r: centre.real_name(r.baz726, id_number=r.id_number, name=r.name, sex=r.sex,
                                                 certificate_type=r.certificate_type)),
        (Fault | list[Fault], lambda f: None),
    ]:
        try:
            act(parse_admin(body, kind))
        except BadRequest as exc:
            refused_cleanly(exc)
        except SandboxError as exc:  # read, then refused by the rules (unknown baz726, bad kind...)
            assert str(exc)
    try:
        parse_credentials(body)
    except BadRequest as exc:
        refused_cleanly(exc)


def test_limits_are_the_documented_ones() -> None:
    good = envelope.encode_request(Funid.COLLECT, "his", "sandbox", {"a": [[[1]]]})
    assert parse_business(good).data == {"a": [[[1]]]}
    deep = envelope.encode_request(Funid.COLLECT, "his", "sandbox", json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH))
    assert parse_business(deep).funid == Funid.COLLECT
    deeper = envelope.encode_request(Funid.COLLECT, "his", "sandbox", json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)))
    with pytest.raises(BadRequest, match=f"nested deeper than {MAX_DEPTH}"):
        parse_business(deeper)
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_business(b'{"inputValue": "x", "junk": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(BadRequest, match="limit") as raised:
        parse_business(b" " * (MAX_BODY + 1))
    assert raised.value.status == 413
    with pytest.raises(BadRequest, match="malformed request envelope"):
        parse_business(b'{"inputValue": "\\ud800"}')


# -- over HTTP -----------------------------------------------------------------------------------


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


@pytest.mark.anyio
async def test_hostile_requests_over_http_are_400_never_500(sandbox: Sandbox, server_log: pytest.LogCaptureFixture) -> None:
    business = f"{sandbox.url}/{envelope.BUSINESS_PATH}"
    deep_data = json.loads("[" * 100 + "]" * 100)
    cases: list[tuple[str, bytes, int]] = [
        (business, b"\xff\xfe not json", 400),
        (business, envelope.encode_request(Funid.COLLECT, "his", "sandbox", deep_data), 400),
        (business, b'{"inputValue": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
        (business, b'{"inputValue": "{\\"funid\\": \\"\\ud800\\"}"}', 400),
        (business, b'{"inputValue": 7, "outputLen": "many"}', 400),
        (business, b'{"inputValue": "' + b"x" * (MAX_BODY + 10) + b'"}', 413),
        (f"{sandbox.url}/{envelope.SIGN_IN_PATH}", b'{"usr": ["his"], "pwd": {"a": 1}}', 400),
        (f"{sandbox.url}/{envelope.SIGN_IN_PATH}", b"[" * 10_000, 400),
        (f"{sandbox.url}/admin/faults", b'{"kind": "latency", "seconds": "soon"}', 400),
        (f"{sandbox.url}/admin/faults", b'[{"kind": "refuse"}, 1]', 400),
        (f"{sandbox.url}/admin/mothers", b'{"id_number": 350203199001010020, "kind": "local"}', 400),
        (f"{sandbox.url}/admin/real_name", b"\x00" * 100, 400),
    ]
    async with aiohttp.ClientSession() as session:
        for url, body, status in cases:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                assert response.status == status, (url, body[:60])
                reply = await response.json()
                if url == business:
                    inner = json.loads(reply["data"]["outputValue"])
                    assert inner["flag"] == "0" and inner["cause"]
                else:
                    assert reply.get("error") or reply.get("cause")
    assert sandbox.registrations() == [] and sandbox.faults() == []
    assert sandbox.calls() == 0  # nothing unreadable counts as a call
    assert_no_traceback(server_log)


@pytest.mark.anyio
async def test_unknown_funids_are_counted_in_one_bucket(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        for n in range(3):
            body = envelope.encode_request(f"yb{n}", "his", "sandbox", {})
            async with session.post(f"{sandbox.url}/{envelope.BUSINESS_PATH}", data=body) as response:
                inner = envelope.decode_reply(await response.read())
                assert inner.flag == 0 and "unknown funid" in (inner.cause or "")
    assert sandbox.calls() == 3 and sandbox.calls("(unknown funid)") == 3 and sandbox.calls("yb0") == 0


# -- personal data -------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes; on Windows the folder's ACL decides")
def test_database_and_folders_are_private(tmp_path: Path) -> None:
    db = tmp_path / "made" / "here" / "centre.db"
    centre = Centre(db)
    centre.add_mother(with_check_digit("44030419940202004"), "local")  # a write: WAL and SHM exist
    for folder in (tmp_path / "made", tmp_path / "made" / "here"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    assert all(f.exists() for f in files)
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    centre.close()


@pytest.mark.anyio
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
async def test_password_comes_from_the_environment_never_argv(tmp_path: Path) -> None:
    secret = "s3cret-" + os.urandom(4).hex()
    process = await anyio.open_process(
        [str(YBPLUG), "sandbox", "--port", "0", "--db", str(tmp_path / "c.db")],
        env={**os.environ, PWD_ENV: secret},
    )
    try:
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(20):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        url = line.decode().strip()
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"ybplug" in cmdline and secret.encode() not in cmdline
        async with aiohttp.ClientSession() as session:
            for pwd, status in ((secret, 200), ("sandbox", 401)):
                body = envelope.encode_credentials("his", pwd)
                async with session.post(f"{url}/{envelope.SIGN_IN_PATH}", data=body) as response:
                    assert response.status == status
    finally:
        process.kill()
        await process.wait()
        await process.aclose()


def test_password_file(tmp_path: Path) -> None:
    from ybplug.sandbox.cli import _password

    path = tmp_path / "pwd"
    path.write_text("from-a-file\nignored\n", encoding="utf-8")
    assert _password(path) == "from-a-file"


@pytest.mark.anyio
async def test_nothing_personal_in_the_log_at_debug(sandbox: Sandbox, birth_for: Any,
                                                   server_log: pytest.LogCaptureFixture) -> None:
    mother = SEED_MOTHERS["nonlocal"]
    child = with_check_digit("35020320240101001")
    other_mother = with_check_digit("44030419940202004")
    birth = msgspec.to_builtins(birth_for(mother, mother_name="林晓红", mother_phone=13912345678))
    bad = {**birth, "bkee35": mother[:17] + ("0" if mother[17] != "0" else "1")}
    sandbox.inject(Fault("latency", seconds=0.001))

    async def call(funid: str, data: Any, pwd: str = "sandbox") -> dict[str, Any]:
        body = envelope.encode_request(funid, "his", pwd, data)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{sandbox.url}/{envelope.BUSINESS_PATH}", data=body) as response:
                return json.loads((await response.json())["data"]["outputValue"])  # type: ignore[no-any-return]

    number = (await call(Funid.COLLECT, birth))["data"]["baz726"]
    assert (await call(Funid.COLLECT, birth))["flag"] == "0"  # duplicate
    assert (await call(Funid.COLLECT, bad))["flag"] == "0"  # invalid
    assert (await call(Funid.COLLECT, birth, pwd="wrong-" + mother))["flag"] == "0"
    sandbox.add_mother(other_mother, "nonlocal_permit", "20200101", "20300101")
    sandbox.real_name(number, id_number=child, name="林小雨", sex="2")
    assert (await call(Funid.REALNAME, {"rownum": 1, "xseqqlb": [{"baz726": number}]}))["flag"] == "1"
    assert (await call(Funid.VOID, {"baz726": number, "bae016": "重复上传", "bke241": "1"}))["flag"] == "1"
    with pytest.raises(SandboxError) as raised:
        sandbox.real_name(number, id_number=child[:17] + "Y", name="林小雨")
    assert child not in str(raised.value)

    text = "\n".join(record.getMessage() for record in server_log.records if record.name.startswith("ybplug"))
    assert "registered" in text and "real-named" in text  # the log did speak, at DEBUG
    for personal in (mother, child, other_mother, "林晓红", "林小雨", "13912345678"):
        assert personal not in text, personal
    assert not re.search(r"\d{15,}", text)
    assert_no_traceback(server_log)
