"""HttpTransport + exchange against the sandbox: results, refusals, and every failure classified.

The journal's safety rests on these classes: NotDelivered may be resent blindly, OutcomeUnknown may
have been applied (a resend can meet "duplicate"), a flag-0 refusal is an answer, not an error.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import anyio
import pytest

from ybplug.fields import with_check_digit
from ybplug.messages import COLLECT, REALNAME, VOID, RealNameQuery, VoidRequest
from ybplug.sandbox import DUPLICATE_CAUSE, Fault, Sandbox
from ybplug.wire import (
    AuthenticationFailed,
    HttpTransport,
    NotDelivered,
    OutcomeUnknown,
    WireConfig,
    exchange,
)

from support import CannedCentre

pytestmark = pytest.mark.timeout(30)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def wait_for_registrations(sandbox: Sandbox, count: int, seconds: float = 3.0) -> None:
    with anyio.fail_after(seconds):
        while len(sandbox.registrations()) < count:
            await anyio.sleep(0.02)


# -- answers -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_collect_success_and_duplicate_refusal(transport: HttpTransport, birth_for: Any) -> None:
    birth = birth_for("short_permit")
    result = await exchange(transport, COLLECT, birth)
    assert result.ok and result.flag == 1  # "1" on the wire
    assert str(result.registration_number).startswith("XSE")
    assert not result.eligible and result.ineligibility_reason == "居住证未满一年"

    again = await exchange(transport, COLLECT, birth)
    assert not again.ok and again.flag == 0
    assert again.cause == DUPLICATE_CAUSE
    assert again.registration_number == ""


@pytest.mark.anyio
async def test_void_and_realname(transport: HttpTransport, sandbox: Sandbox, birth_for: Any) -> None:
    first = await exchange(transport, COLLECT, birth_for())
    second = await exchange(transport, COLLECT, birth_for())
    numbers = [str(first.registration_number), str(second.registration_number)]

    voided = await exchange(transport, VOID, VoidRequest(registration_number=numbers[1], reason="重复上传"))
    assert voided.ok and voided.registration_number == numbers[1]
    refused = await exchange(transport, VOID, VoidRequest(registration_number=numbers[1], reason="重复上传"))
    assert not refused.ok and "already void" in (refused.cause or "")

    sandbox.real_name(numbers[0], id_number=with_check_digit("35020320240101001"), name="林小雨", sex="2")
    result = await exchange(transport, REALNAME, RealNameQuery.of([*numbers, "XSE0000000000000"]))
    assert result.ok and result.row_count == 2
    named, void = result.records
    assert named.real_named and named.name == "林小雨" and named.sex_name == "女" and named.personal_code
    assert void.voided and not void.real_named


# -- failures, classified ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_connection_refused_is_not_delivered(birth_for: Any, anyio_backend: str) -> None:
    client = HttpTransport(WireConfig(url=f"http://127.0.0.1:{unused_port()}", usr="his", pwd="sandbox"))
    try:
        with pytest.raises(NotDelivered) as caught:
            await exchange(client, COLLECT, birth_for())
    finally:
        await client.aclose()
    assert not caught.value.may_have_applied
    assert type(caught.value) is NotDelivered


@pytest.mark.anyio
async def test_latency_beyond_read_timeout_is_outcome_unknown(sandbox: Sandbox, birth_for: Any) -> None:
    sandbox.inject(Fault("latency", seconds=0.6))
    client = HttpTransport(WireConfig(url=sandbox.url, usr="his", pwd="sandbox", read_timeout=0.2))
    try:
        with pytest.raises(OutcomeUnknown) as caught:
            await exchange(client, COLLECT, birth_for())
        assert caught.value.may_have_applied
        # A slow centre still applies what it received after the client stopped waiting.
        await wait_for_registrations(sandbox, 1)
        # Latency within the timeout is just slow.
        sandbox.inject(Fault("latency", seconds=0.05))
        assert (await exchange(client, COLLECT, birth_for())).ok
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_http_503_is_outcome_unknown_and_nothing_registered(
    transport: HttpTransport, sandbox: Sandbox, birth_for: Any
) -> None:
    sandbox.inject(Fault("http_error", funid=COLLECT.funid))
    birth = birth_for()
    with pytest.raises(OutcomeUnknown, match="HTTP 503"):
        await exchange(transport, COLLECT, birth)
    assert sandbox.registrations() == []
    assert (await exchange(transport, COLLECT, birth)).ok  # times=1: the next call goes through


@pytest.mark.anyio
async def test_http_4xx_is_not_delivered(transport: HttpTransport, sandbox: Sandbox, birth_for: Any) -> None:
    sandbox.inject(Fault("http_error", status=404))
    with pytest.raises(NotDelivered):
        await exchange(transport, COLLECT, birth_for())
    assert sandbox.registrations() == []


@pytest.mark.anyio
async def test_drop_after_commit_is_outcome_unknown_then_duplicate(
    transport: HttpTransport, sandbox: Sandbox, birth_for: Any
) -> None:
    sandbox.inject(Fault("drop_after_commit", funid=COLLECT.funid))
    birth = birth_for()
    with pytest.raises(OutcomeUnknown):
        await exchange(transport, COLLECT, birth)
    assert len(sandbox.registrations()) == 1  # the centre did register it
    resent = await exchange(transport, COLLECT, birth)
    assert not resent.ok and resent.cause == DUPLICATE_CAUSE  # "probably registered, number unknown"


@pytest.mark.anyio
async def test_malformed_reply_is_outcome_unknown(transport: HttpTransport, sandbox: Sandbox, birth_for: Any) -> None:
    sandbox.inject(Fault("malformed"))
    with pytest.raises(OutcomeUnknown, match="malformed"):
        await exchange(transport, COLLECT, birth_for())
    assert len(sandbox.registrations()) == 1


@pytest.mark.anyio
async def test_refuse_is_a_result_not_an_exception(
    transport: HttpTransport, sandbox: Sandbox, birth_for: Any
) -> None:
    sandbox.inject(Fault("refuse", cause="系统维护中, 请稍后再试"))
    result = await exchange(transport, COLLECT, birth_for())
    assert not result.ok and result.flag == 0 and result.cause == "系统维护中, 请稍后再试"
    assert sandbox.registrations() == []


@pytest.mark.anyio
async def test_wrong_password_is_authentication_failed(sandbox: Sandbox, birth_for: Any) -> None:
    client = HttpTransport(WireConfig(url=sandbox.url, usr="his", pwd="wrong"))
    try:
        with pytest.raises(AuthenticationFailed) as caught:
            await exchange(client, COLLECT, birth_for())
    finally:
        await client.aclose()
    assert not caught.value.may_have_applied
    assert sandbox.registrations() == []


@pytest.mark.anyio
async def test_sign_in(sandbox: Sandbox, birth_for: Any) -> None:
    client = HttpTransport(WireConfig(url=sandbox.url, usr="his", pwd="sandbox", sign_in=True))
    try:
        assert (await exchange(client, COLLECT, birth_for())).ok
        assert (await exchange(client, COLLECT, birth_for())).ok
    finally:
        await client.aclose()
    assert sandbox.sign_ins == 1

    client = HttpTransport(WireConfig(url=sandbox.url, usr="his", pwd="wrong", sign_in=True))
    try:
        with pytest.raises(AuthenticationFailed):
            await exchange(client, COLLECT, birth_for())
    finally:
        await client.aclose()
    assert sandbox.calls() == 2  # the refused sign-in sent no business call


# -- secrets stay secret -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_password_and_personal_data_never_logged(
    birth_for: Any, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    secret = "Pa55-w0rd-9f3c"
    config = WireConfig(url="http://127.0.0.1:1", usr="his", pwd=secret)
    assert secret not in repr(config) and secret not in str(config)

    birth = birth_for("nonlocal", mother_name="欧阳娜娜", mother_phone=13712345678)
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with Sandbox(pwd=secret) as centre:
        centre.inject(Fault("drop_after_commit", times=1))
        client = HttpTransport(WireConfig(url=centre.url, usr="his", pwd=secret, sign_in=True))
        wrong = HttpTransport(WireConfig(url=centre.url, usr="his", pwd=secret + "x"))
        try:
            with pytest.raises(OutcomeUnknown) as lost:
                await exchange(client, COLLECT, birth)
            errors.append(str(lost.value))
            refused = await exchange(client, COLLECT, birth)
            assert not refused.ok
            first = await exchange(client, COLLECT, birth_for("nonlocal"))
            centre.real_name(str(first.registration_number), id_number=birth.mother_id_number, name="欧阳小雨")
            await exchange(client, REALNAME, RealNameQuery.of([str(first.registration_number)]))
            with pytest.raises(AuthenticationFailed) as denied:
                await exchange(wrong, COLLECT, birth_for())
            errors.append(str(denied.value))
        finally:
            await client.aclose()
            await wrong.aclose()

    assert caplog.records, "expected some log records at DEBUG"
    logged = "\n".join([r.getMessage() for r in caplog.records] + errors)
    for needle in (secret, birth.mother_id_number, "欧阳", "13712345678"):
        assert needle not in logged, f"{needle!r} leaked into logs"


def test_config_file_and_transport_share_one_struct_that_hides_the_password(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ybplug.config import Config

    secret = "Pa55-w0rd-7d1e"
    path = tmp_path / "ybplug.toml"
    path.write_text(f'[wire]\nurl = "http://10.1.2.3:8080"\nusr = "H35020001"\npwd = "{secret}"\nread_timeout = 7\n')
    config = Config.load(path)
    assert type(config.wire) is WireConfig and config.wire.read_timeout == 7.0
    for text in (repr(config), str(config), repr(config.wire), str(config.wire), f"{config.wire_config()!r}"):
        assert secret not in text and "pwd=***" in text
    assert config.wire_config().pwd == secret  # what goes on the wire keeps it

    monkeypatch.setenv("YBPLUG_PWD", "from-env")
    monkeypatch.setenv("YBPLUG_USR", "env-usr")
    monkeypatch.delenv("YBPLUG_URL", raising=False)
    partial = Config.load(_write(tmp_path / "partial.toml", '[wire]\nusr = "H35020001"\n'))
    filled = partial.wire_config()
    assert (filled.url, filled.usr, filled.pwd) == ("http://127.0.0.1:8721", "H35020001", "from-env")


def _write(path: Any, text: str) -> Any:
    path.write_text(text)
    return path


# -- a reply is trusted only when well formed -----------------------------------------------------


def inner(reply: Any) -> bytes:
    import msgspec

    return msgspec.json.encode({"data": {"outputValue": msgspec.json.encode(reply).decode()}})


GOOD_NUMBER = "XSE2411300000001"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("transaction", "body", "reason"),
    [
        (COLLECT, inner({"cause": "", "data": {"baz726": GOOD_NUMBER}}), "without flag"),
        (COLLECT, inner({"flag": "2", "cause": "", "data": {"baz726": GOOD_NUMBER}}), "neither 0 nor 1"),
        (COLLECT, inner({"flag": -1, "cause": "x"}), "neither 0 nor 1"),
        (COLLECT, inner({"flag": "yes", "cause": ""}), "malformed"),
        (COLLECT, inner({"flag": True, "cause": ""}), "malformed"),
        (COLLECT, inner({"flag": "1", "cause": "", "data": {"baz726": "123"}}), "baz726"),
        (COLLECT, inner({"flag": "1", "cause": "", "data": {"baz726": "XSE" + "1" * 4997}}), "baz726"),
        (COLLECT, inner({"flag": "1", "cause": "", "data": {"baz726": "XSE24113000000０1"}}), "baz726"),
        (COLLECT, inner({"flag": "1", "cause": "", "data": {"baz726": 2411300000001}}), "baz726"),
        (COLLECT, inner({"flag": "0", "cause": "重复", "data": {"baz726": "XSE1"}}), "baz726"),
        (VOID, inner({"flag": "1", "cause": "", "data": {"baz726": "XSE-void"}}), "baz726"),
        (REALNAME, inner({"flag": "1", "cause": "", "data": {"rownum": 2, "xsesmlb": [
            {"baz726": GOOD_NUMBER, "bae018": "Y", "aac003": "林小雨"}, {"baz726": "123", "bae018": "N"}]}}), "baz726"),
        (REALNAME, inner({"flag": "1", "data": {"xsesmlb": [{"baz726": [[[[GOOD_NUMBER]]]]}]}}), "malformed"),
        (COLLECT, b'{"data": {"outputValue": "{\\"flag\\": 1, \\"x\\": ' + b"[" * 100_000 + b"]" * 100_000 + b'}"}}', "malformed"),
        (COLLECT, b'{"data": {"outputValue": {"flag": 1}}, "x": ' + b"{\"a\":" * 50_000 + b"1" + b"}" * 50_000 + b"}", "nested too deeply"),
    ],
    ids=["no-flag", "flag-2", "flag-minus-1", "flag-text", "flag-bool", "baz726-123", "baz726-5000",
         "baz726-fullwidth-digit", "baz726-number", "refusal-with-bad-baz726", "void-bad-baz726",
         "realname-one-bad-row", "realname-nested-row", "deep-inner", "deep-outer"],
)
async def test_a_reply_not_well_formed_is_outcome_unknown(
    transaction: Any, body: bytes, reason: str, birth_for: Any, anyio_backend: str
) -> None:
    request = {COLLECT: lambda: birth_for(), VOID: lambda: VoidRequest(registration_number=GOOD_NUMBER, reason="重复"),
               REALNAME: lambda: RealNameQuery.of([GOOD_NUMBER, "XSE2411300000002"])}[transaction]()
    async with CannedCentre(body) as centre:
        client = HttpTransport(WireConfig(url=centre.url, usr="his", pwd="sandbox"))
        try:
            with pytest.raises(OutcomeUnknown, match=reason) as caught:
                await exchange(client, transaction, request)
        finally:
            await client.aclose()
    assert caught.value.may_have_applied
    assert len(str(caught.value)) < 2048 and "林小雨" not in str(caught.value)


@pytest.mark.anyio
async def test_well_formed_replies_still_count(birth_for: Any, anyio_backend: str) -> None:
    async with CannedCentre(inner({"flag": "1", "cause": "", "data": {"baz726": GOOD_NUMBER, "bkee45": "1"}})) as centre:
        client = HttpTransport(WireConfig(url=centre.url))
        try:
            assert (await exchange(client, COLLECT, birth_for())).registration_number == GOOD_NUMBER
        finally:
            await client.aclose()
    async with CannedCentre(inner({"flag": 0, "cause": "重复上传"})) as centre:
        client = HttpTransport(WireConfig(url=centre.url))
        try:
            refused = await exchange(client, COLLECT, birth_for())
            assert not refused.ok and refused.cause == "重复上传"
        finally:
            await client.aclose()


@pytest.mark.anyio
async def test_a_reply_over_the_size_limit_is_outcome_unknown(
    birth_for: Any, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ybplug.wire

    monkeypatch.setattr(ybplug.wire, "MAX_REPLY_BYTES", 4096)
    padding = "x" * 10_000
    async with CannedCentre(inner({"flag": "1", "cause": padding, "data": {"baz726": GOOD_NUMBER}})) as centre:
        client = HttpTransport(WireConfig(url=centre.url))
        try:
            with pytest.raises(ybplug.wire.UnreadableAnswer, match="4096-byte limit"):  # counted towards review
                await exchange(client, COLLECT, birth_for())
        finally:
            await client.aclose()
