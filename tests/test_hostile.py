"""Hostile input at every entry point: only ybplug's own errors, fast, short, and discreet.

Property-based (hypothesis).  For each entry point (``load(Birth, ...)``, ``Birth(...)``, the wire
reply decoder ``envelope.decode_reply`` and ``exchange`` over a fake transport, ``Config.load``)
every generated case must

* raise nothing but a :class:`ybplug.errors.Error` subclass (or succeed);
* take under 100 ms of CPU time (``time.thread_time``: the machine's other load is not counted);
* give an error message of at most 2 KB, encodable in UTF-8 (no lone surrogate reaches a log);
* never quote a personal value of the input (names, ID numbers, phones, passwords).

A few hundred cases per entry point by default; ``YBPLUG_FUZZ=full`` runs 10,000 each
(``pytest tests/test_hostile.py --hypothesis-show-statistics`` prints the counts and times).
"""

from __future__ import annotations

import gc
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ybplug import envelope
from ybplug.codes import Funid
from ybplug.config import Config
from ybplug.envelope import CentreReply
from ybplug.errors import Error
from ybplug.fields import CHINA_TIME, with_check_digit
from ybplug.messages import COLLECT, REALNAME, VOID, Birth, RealNameQuery, VoidRequest, load
from ybplug.wire import OutcomeUnknown, exchange

from support import CannedCentre

_COMMON = dict(
    database=None,  # no .hypothesis directory in the repository
    deadline=None,  # timed below in CPU time, which a loaded machine does not inflate
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("ci", max_examples=200, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("full", max_examples=10_000, **_COMMON)  # type: ignore[arg-type]
settings.load_profile("full" if os.environ.get("YBPLUG_FUZZ") == "full" else "ci")

pytestmark = pytest.mark.timeout(3600)

MAX_MESSAGE = 2048
MAX_CPU_SECONDS = 0.100


# -- the properties ---------------------------------------------------------------------------------


_DIGIT_RUN = re.compile(r"[0-9]{6}")


def _personal_texts(values: Iterator[Any]) -> list[str]:
    """The personal values worth looking for in a message: those that cannot be a message's own
    words by chance (``aac004`` given as a father's name is also a field's wire name): six digits
    in a row (ID numbers, phones) or a character outside ASCII (names)."""
    found = []
    for value in values:
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and -(10**20) < value < 10**20:
            value = str(value)
        if isinstance(value, str) and len(value.strip()) >= 6:
            value = value.strip()
            if (_DIGIT_RUN.search(value) or not value.isascii()) and value not in _VOCABULARY:
                found.append(value)
    return found


#: What messages say of themselves: a personal value equal to a label (``his流水号`` given as a
#: father's name) is found in them by the label, not by a leak.
_VOCABULARY = " ".join(f"{wire} {label}" for wire, label in {**Birth.labels, **VoidRequest.labels}.items())


def _timed(call: Callable[[], Any]) -> tuple[float, Any, Error | None]:
    """CPU seconds of one call, with the garbage collector held off: a collection of the test
    generator's garbage that happens to fall inside the call is not the entry point's cost."""
    gc.disable()
    started = time.thread_time()
    try:
        result, error = call(), None
    except Error as exc:
        result, error = None, exc
    finally:
        elapsed = time.thread_time() - started
        gc.enable()
    return elapsed, result, error


def holds(call: Callable[[], Any], personal: list[str], public: list[str] = []) -> Any:  # noqa: B006
    """Run one case and check the four properties; returns what ``call`` returned (or None).

    A case over the time limit is run once more and judged by the faster run (as hypothesis's own
    deadline does): the limit is about the input's cost, not a scheduler's hiccup."""
    elapsed, result, error = _timed(call)
    if elapsed >= MAX_CPU_SECONDS:
        elapsed = min(elapsed, _timed(call)[0])
    assert elapsed < MAX_CPU_SECONDS, f"{elapsed * 1000:.0f} ms of CPU"
    if error is not None:
        message = str(error)
        assert len(message.encode("utf-8")) <= MAX_MESSAGE, f"{len(message)} characters"  # and printable anywhere
        shown_publicly = " ".join(public)
        for value in personal:
            if value in shown_publicly:  # the same text given in a field that is not personal
                continue
            assert value not in message, f"a personal value reached the message: {message[:300]!r}"
    return result


# -- hostile values -----------------------------------------------------------------------------------


def nested(depth: int, dicts: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if dicts else [value]
    return value


surrogates = st.characters(categories=["Cs"])
any_text = st.text(st.characters(exclude_categories=[]) | surrogates, max_size=60)
digits = st.text("0123456789", min_size=0, max_size=25)
# Integers over Python's 4,300 digits are built by map, not given as bounds: hypothesis 6.100
# puts a strategy's repr in its notes, and the repr of such a bound raises.
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(0, 10**100).map(lambda n: 10**4300 + n)
    | st.integers(min_value=-(10**20), max_value=10**20) | st.floats() | any_text | digits
    | st.binary(max_size=20) | st.text(max_size=3000)
    | st.datetimes(timezones=st.none() | st.just(timezone.utc) | st.just(timezone(timedelta(hours=-11))))
)
hostile = st.one_of(
    scalars,
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8),
    st.builds(nested, st.integers(1, 5000), st.booleans()),
)

MOTHER_ID = with_check_digit("35020419900101002")
plausible: dict[str, st.SearchStrategy[Any]] = {
    "akc190": st.just("YB2025000001") | st.text(max_size=25),
    "bke042": st.just("ZY20250101001") | st.text(max_size=55),
    "bme027": st.integers(0, 12) | st.sampled_from(["1", "2", "10"]),
    "aac004": st.sampled_from(["1", "2", "9", "5", ""]),
    "aac006": st.integers(10**12, 10**15) | st.just(20250101083000) | st.datetimes() | digits,
    "bkee43": st.sampled_from(["01", "02", "99", ""]),
    "bkee35": st.just(MOTHER_ID) | st.sampled_from(["350204900101002", MOTHER_ID[:17] + "X"]) | digits | any_text,
    "bkee37": st.just("王芳") | st.text(max_size=30) | st.text("𠮷王芳丽娜欧阳", min_size=6, max_size=30),
    "bkee33": st.just(13800138000) | st.integers(0, 10**12) | digits | st.just("05921234567"),
    "bkee30": st.text(max_size=30),
    "bkee42": st.sampled_from(["01", "02", None]),
    "bkee34": st.just(with_check_digit("11010519491231002")) | digits,
    "bkee36": st.text(min_size=6, max_size=30),
    "bkee32": st.integers(0, 10**12) | digits,
    "bke241": st.sampled_from(["1", "2", "", None]),
}
WIRE_TO_ATTR = dict(zip(Birth.__struct_encode_fields__, Birth.__struct_fields__, strict=True))
PERSONAL_WIRE = {wire for wire, attr in WIRE_TO_ATTR.items() if attr in Birth.personal}


@st.composite
def records(draw: st.DrawFn) -> dict[Any, Any]:
    """A collection record: each field valid-looking, hostile, or missing; sometimes extra keys."""
    record: dict[Any, Any] = {}
    for wire, strategy in plausible.items():
        choice = draw(st.sampled_from(["plausible", "plausible", "hostile", "missing"]))
        if choice == "plausible":
            record[wire] = draw(strategy)
        elif choice == "hostile":
            record[wire] = draw(hostile)
    record.update(draw(st.dictionaries(st.text(max_size=10) | st.integers(), hostile, max_size=3)))
    return record


def _as_shown(value: Any) -> str | None:
    """How a non-personal value may legitimately appear in a message (a datetime as its number)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(CHINA_TIME)
        return str(int(f"{value.year}{value.month:02}{value.day:02}{value.hour:02}{value.minute:02}{value.second:02}"))
    if isinstance(value, bool):
        return None
    if isinstance(value, str) or (isinstance(value, int) and -(10**20) < value < 10**20):
        return str(value)
    return None


def split(record: dict[Any, Any]) -> tuple[list[str], list[str]]:
    personal = _personal_texts(v for k, v in record.items() if k in PERSONAL_WIRE)
    public = [shown for k, v in record.items() if k not in PERSONAL_WIRE and (shown := _as_shown(v)) is not None]
    return personal, public


# -- load(Birth, ...) and Birth(...) --------------------------------------------------------------------


@given(records() | hostile, st.sampled_from(["gbk", "gb18030"]), st.booleans())
def test_load_birth(data: Any, charset: str, strict: bool) -> None:
    personal, public = split(data) if isinstance(data, dict) else ([], [])
    birth = holds(lambda: load(Birth, data, strict=strict, charset=charset), personal, public)
    if birth is not None:  # what load accepts is what the journal stores and the wire sends
        msgspec.json.encode(birth)
        birth.check(charset)


@given(records())
def test_birth_constructor(record: dict[Any, Any]) -> None:
    kwargs = {WIRE_TO_ATTR[k]: v for k, v in record.items() if k in WIRE_TO_ATTR}
    personal, public = split({k: v for k, v in record.items() if k in WIRE_TO_ATTR})
    birth = holds(lambda: Birth(**kwargs), personal, public)
    if birth is not None:
        msgspec.json.encode(birth)
        holds(lambda: birth.check("gbk"), personal, public)


@given(st.dictionaries(st.sampled_from(["baz726", "bae016", "bke241", "x"]), hostile, max_size=4))
def test_load_void_request(data: dict[str, Any]) -> None:
    holds(lambda: load(VoidRequest, data), [])


# -- the wire's replies ----------------------------------------------------------------------------------


NAME = "欧阳娜娜娜娜"
ID_NUMBER = with_check_digit("35020320240101001")
reply_values = scalars | st.lists(st.dictionaries(st.sampled_from(["baz726", "bae018", "aac003", "aac002", "x"]), scalars | st.just(NAME)), max_size=3)
inner_replies = st.fixed_dictionaries(
    {},
    optional={
        "flag": st.sampled_from([0, 1, "0", "1", 2, -1, "", "yes", True, None, 1.0, "1.5"]) | scalars,
        "cause": st.none() | st.text(max_size=50) | scalars,
        "data": st.none() | hostile | st.dictionaries(
            st.sampled_from(["baz726", "bkee45", "bkee46", "rownum", "xsesmlb", "x"]),
            st.sampled_from(["XSE2411300000001", "123", "XSE" + "1" * 4997, ""]) | reply_values | hostile,
        ),
    },
)


def _json(value: Any) -> bytes:
    try:
        return msgspec.json.encode(value)
    except (TypeError, OverflowError, UnicodeEncodeError, msgspec.EncodeError, ValueError, RecursionError):
        return b"{}"


@st.composite
def reply_bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["string", "object", "raw", "deep", "bytes"]))
    inner = draw(inner_replies)
    if shape == "string":
        return _json({"data": {"outputValue": _json(inner).decode()}})
    if shape == "object":
        return _json({"data": {"outputValue": inner}, draw(st.text(max_size=3)): draw(hostile)})
    if shape == "deep":
        depth = draw(st.integers(1, 200_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        where = draw(st.sampled_from(["outer", "inner"]))
        nest = opener * depth + b"1" + closer * depth
        if where == "outer":
            return b'{"data": {"outputValue": {"flag": 1}}, "x": ' + nest + b"}"
        return _json({"data": {"outputValue": '{"flag": 1, "data": {"x": ' + nest.decode() + "}}"}})
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    body = bytearray(_json({"data": {"outputValue": _json(inner).decode()}}))
    for _ in range(draw(st.integers(1, 4))):  # a few bytes flipped, cut or doubled
        if body:
            at = draw(st.integers(0, len(body) - 1))
            body[at:at + 1] = draw(st.binary(max_size=3))
    return bytes(body)


@given(reply_bodies())
@example(b'{"data":{"outputValue":"\x80}"}}')  # bad UTF-8: msgspec 0.18 raised UnicodeDecodeError
def test_decode_reply(body: bytes) -> None:
    reply = holds(lambda: envelope.decode_reply(body), [NAME, ID_NUMBER])
    if reply is not None:
        assert reply.flag is None or type(reply.flag) is int


class FakeTransport:
    """Hands ``exchange`` exactly the reply it is given (decoded from bytes or built in Python)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def call(self, funid: str, data: dict[str, Any]) -> Any:
        return self.reply

    async def aclose(self) -> None:
        pass


def run(coroutine: Any) -> Any:
    """Drive a coroutine that never waits (the fake transport answers at once) without a loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the exchange waited on something")


BIRTH = Birth(medical_serial="YB1", his_serial="ZY1", multiple_birth_number=1, newborn_sex="1",
              birth_time=20250101083000, mother_certificate_type="01", mother_id_number=MOTHER_ID,
              mother_name="王芳", mother_phone=13800138000)
REQUESTS = {
    Funid.COLLECT: (COLLECT, BIRTH),
    Funid.VOID: (VOID, VoidRequest(registration_number="XSE2411300000001", reason="重复")),
    Funid.REALNAME: (REALNAME, RealNameQuery.of(["XSE2411300000001"])),
}


@given(reply_bodies() | inner_replies, st.sampled_from(list(REQUESTS)))
def test_exchange(reply: Any, funid: Funid) -> None:
    if isinstance(reply, bytes):
        try:
            centre_reply: Any = envelope.decode_reply(reply)
        except envelope.MalformedReply:
            return
    else:
        centre_reply = CentreReply(**{k: v for k, v in reply.items() if k in ("flag", "cause", "data")})
    transaction, request = REQUESTS[funid]
    result = holds(lambda: run(exchange(FakeTransport(centre_reply), transaction, request)), [NAME, ID_NUMBER])
    if result is not None:  # trusted: a flag of 0 or 1, and every baz726 of the spec's shape
        assert result.flag in (0, 1)
        assert all(n.startswith("XSE") and len(n) == 16 for n in result.registration_numbers)


def test_exchange_refuses_a_non_reply() -> None:
    with pytest.raises(OutcomeUnknown, match="not a CentreReply"):
        run(exchange(FakeTransport({"flag": 1}), COLLECT, BIRTH))


# -- Config.load -----------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


config_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | digits
config_values = st.recursive(config_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
TOP_KEYS = [f for f in Config.__struct_fields__ if f not in ("wire", "voucher", "dotnet")] + ["journal2"]
WIRE_KEYS = ["url", "usr", "pwd", "sign_in", "connect_timeout", "read_timeout", "output_len", "max_connections", "pwd2"]
PASSWORD = "Pa55-w0rd-hostile"


@st.composite
def deep_toml(draw: st.DrawFn) -> str:
    """A TOML value nested in arrays or inline tables, now and then deeper than any parser's
    recursion goes (the depths are picked from a short list: small examples, no huge bounds)."""
    depth = draw(st.sampled_from([1, 2, 8, 64, 1_000, 5_000]))
    inner = toml_value(draw(config_scalars.filter(lambda v: v is not None)))
    if draw(st.booleans()):
        return "[" * depth + inner + "]" * depth
    return "{a = " * depth + inner + "}" * depth


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=300))
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        return f"{draw(st.sampled_from(TOP_KEYS))} = {draw(deep_toml())}"
    top = draw(st.dictionaries(st.sampled_from(TOP_KEYS), config_values, max_size=5))
    wire = draw(st.dictionaries(st.sampled_from(WIRE_KEYS), config_values, max_size=5))
    wire["pwd"] = draw(st.just(PASSWORD) | config_values)
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items() if v is not None]
    lines.append("[wire]")
    lines += [f"{k} = {toml_value(v)}" for k, v in wire.items() if v is not None]
    if draw(st.booleans()):
        lines.append("[voucher]")
        lines += [f"{k} = {toml_value(draw(config_values))}" for k in draw(st.lists(st.sampled_from(
            ["library", "backend", "convention", "timeout", "org_id", "dotnet_type"]), max_size=4, unique=True))]
    return "\n".join(lines)


_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="ybplug-hostile-"))


@given(config_texts())
def test_config_load(text: str) -> None:
    path = _CONFIG_DIR / "ybplug.toml"
    try:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    except OSError:  # pragma: no cover
        return
    config = holds(lambda: Config.load(path), [PASSWORD])
    if config is not None:
        for shown in (repr(config), str(config), repr(config.wire)):
            assert PASSWORD not in shown


# -- through the host: an unreadable answer is an unknown outcome, the charset is the config's ---------


def _wrapped(inner: bytes) -> bytes:
    return msgspec.json.encode({"data": {"outputValue": inner.decode()}})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        _wrapped(b'{"flag": 1, "data": {"baz726": "XSE2411300000001", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"),
        _wrapped(b'{"cause": "", "data": {"baz726": "XSE2411300000001"}}'),
        _wrapped(b'{"flag": "2", "cause": "", "data": {"baz726": "XSE2411300000001"}}'),
        _wrapped(b'{"flag": "1", "cause": "", "data": {"baz726": "123"}}'),
    ],
    ids=["deeply-nested", "no-flag", "flag-2", "baz726-123"],
)
async def test_an_unreadable_answer_leaves_the_birth_in_doubt_never_uploading(
    body: bytes, tmp_path: Path, anyio_backend: str
) -> None:
    from support import birth_record, host_config

    from ybplug.host import Host
    from ybplug.journal import BirthState

    async with CannedCentre(body) as centre:
        config = host_config(tmp_path, centre)  # type: ignore[arg-type]  # anything with a url
        async with Host(config, entry_points=False, background=False) as host:
            recorded = await host.record_birth(birth_record(1))
            summary = await host.sync("upload")
            row = await host.run_journal(host.journal.birth, recorded.birth_id)
    assert summary.get("upload_failed") == 1 and not summary.get("uploaded")
    assert row.state in (BirthState.PENDING, BirthState.NEEDS_REVIEW) and not row.registration_number


@pytest.mark.anyio
async def test_the_configured_charset_applies_from_any_thread(tmp_path: Path, sandbox: Any) -> None:
    import anyio.from_thread
    import anyio.to_thread
    from support import birth_record, host_config

    from ybplug.fields import InvalidMessage
    from ybplug.host import Host

    outside_gbk = {**birth_record(2), "bkee37": "𠮷芳", "bkee30": "林𠮷"}
    async with Host(host_config(tmp_path / "a", sandbox, charset="gb18030"), entry_points=False, background=False) as host:
        # a birth checked on another thread is judged by the config, not by an ambient context
        recorded = await anyio.to_thread.run_sync(anyio.from_thread.run, host.record_birth, outside_gbk)
        assert recorded.created
    async with Host(host_config(tmp_path / "b", sandbox), entry_points=False, background=False) as host:
        with pytest.raises(InvalidMessage, match="bkee37 母亲姓名: character U\\+20BB7"):
            await anyio.to_thread.run_sync(anyio.from_thread.run, host.record_birth, outside_gbk)
        built = Birth(**{WIRE_TO_ATTR[k]: v for k, v in outside_gbk.items()})  # valid in GB18030
        with pytest.raises(InvalidMessage, match="bkee30 新生儿姓名: character U\\+20BB7"):
            await host.record_birth(built)


def test_the_hosts_door_checks_bound_every_value_before_formatting_it() -> None:
    from ybplug.journal.model import BirthNotFound
    from ybplug.lifecycle import ResolutionError
    from ybplug.naming import UnknownJob, check_job, echo_key, registration_number_of, twin_of

    for job in ("upload", "realname", "stale", "all"):
        assert check_job(job) == job
    for job in ("uplaod", "", "x" * 10_000_000):
        with pytest.raises(UnknownJob, match="must be one of upload, realname, stale, all") as info:
            check_job(job)
        assert len(str(info.value)) < 200
    with pytest.raises(TypeError):
        check_job(None)
    assert twin_of(None) is None and twin_of(9) == 9
    for twin in (10**5000, -1, 10):
        with pytest.raises(BirthNotFound, match="bme027 多胞胎序号") as found:
            twin_of(twin)
        assert len(str(found.value)) < 200
    for wrong_type in ("x" * 10_000_000, 1.0, True):
        with pytest.raises(TypeError):
            twin_of(wrong_type)
    assert registration_number_of(" xse2612010000001 ") == "XSE2612010000001"
    for value in (10**5000, nested(3000, dicts=False), None):
        with pytest.raises(TypeError):
            registration_number_of(value)
    with pytest.raises(ResolutionError, match="baz726 新生儿登记流水号 '陈\\*\\*\\*'") as refused:
        registration_number_of("陈静350203199001010026")
    assert "350203199001010026" not in str(refused.value)
    assert echo_key("#5") == "'#5'" and echo_key("DAY-0030") == "'DAY-0030'"
    assert echo_key("13800138000") == "'138****8000'" and echo_key("\ud800") == "text of 1 characters"


@pytest.mark.anyio
async def test_replay_and_find_take_any_value_without_a_database_error(tmp_path: Path, sandbox: Any) -> None:
    from support import birth_record, host_config

    from ybplug.host import Host

    async with Host(host_config(tmp_path, sandbox), entry_points=False, background=False) as host:
        birth_id = (await host.record_birth(birth_record(3))).birth_id
        assert await host.replay("\ud800") == 0 and await host.replay(None, "\ud800") == 0
        assert await host.replay("x" * 10_000) == 0
        with pytest.raises(TypeError):
            await host.replay(10**30)  # type: ignore[arg-type]
        for twin in (10**30, -1, 10):
            assert await host.run_journal(host.journal.find, "HIS000003-1", twin) == []
        assert await host.run_journal(host.journal.find, 10**30) == []
        assert await host.run_journal(host.journal.find, birth_id) == [birth_id]
