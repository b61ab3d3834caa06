"""Hostile replies to the EcTrans reply decoder (issue "Hostile input").

Whatever bytes a library writes, :func:`ybplug.voucher.decode_reply` (and the identity built from
it) raises only ybplug's own errors, within 100 ms, with messages of at most 2 KB that never quote
a personal value.  300 examples by default; ``YBPLUG_FUZZ=full`` runs 10,000.
"""

from __future__ import annotations

import os
import time

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ybplug.errors import Error
from ybplug.voucher import VoucherReplyUnreadable, decode_reply
from ybplug.voucher.codec import identity
from ybplug.voucher.errors import MESSAGE_LIMIT

settings.register_profile("default", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("full", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("full" if os.environ.get("YBPLUG_FUZZ") == "full" else "default")

#: A personal value planted in replies: it must never come back in a message in clear.
SECRET = "350204198001010001"
PHONE = "13800138000"
#: The default output buffer, and so the most a library can write: what a reply may weigh.
BUFFER = 64 * 1024

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from([SECRET, PHONE, "张三", "𠮷"]),
)
_json = st.recursive(
    _json_leaf,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=30,
)


def _deep(depth: int, opener: str) -> str:
    if opener == "{":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "1" + "]" * depth


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Reply bytes: random, or the spec's shape with hostile parts."""
    kind = draw(st.sampled_from(["bytes", "json", "deep", "huge", "surrogate", "gb", "datatext", "number"]))
    if kind == "number":  # numbers past every machine type, where text is expected
        digits = "9" * draw(st.integers(min_value=1, max_value=6000))
        number = draw(st.sampled_from([digits, f"-{digits}", f"1e{digits[:6]}", f"0.{digits}", f"{digits}e-999"]))
        where = draw(st.sampled_from(['"flag":', '"flag":"1","cause":', '"flag":"1","data":{"idNo":']))
        return ("{" + where + number + ("}}" if "data" in where else "}")).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=2000))
    if kind == "json":
        document = {"flag": draw(st.sampled_from(["0", "1", 1, 0, None])), "cause": draw(_json), "data": draw(_json)}
        return msgspec.json.encode(document)
    if kind == "deep":
        depth = draw(st.integers(min_value=30, max_value=5000))
        where = draw(st.sampled_from(["data", "cause", "top"]))
        nested = _deep(depth, draw(st.sampled_from(["[", "{"])))
        if where == "top":
            return nested.encode()
        return f'{{"flag":"1","{where}":{nested}}}'.encode()
    if kind == "huge":
        size = draw(st.integers(min_value=1000, max_value=BUFFER // 2))
        filler = draw(st.sampled_from(["a", "\\\\", "\\n", "张", " ,", SECRET]))
        text = filler * (size // len(filler))
        return f'{{"flag":"0","cause":"{text}","data":{{"userName":"{text}"}}}}'.encode("gbk", "replace")
    if kind == "surrogate":
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\ud800\\u0041", "\\u0000"]))
        return f'{{"flag":"0","cause":"{escape} {SECRET}","data":{{"userName":"{escape}"}}}}'.encode()
    if kind == "gb":
        # GBK/GB18030 oddities: a second byte that is "\\", "]" or "}", 4-byte GB18030, lone leads.
        pieces = draw(st.lists(st.sampled_from(
            [b"\x95\x5c", b"\x81\x5d", b"\x81\x7d", b"\x95\x34\xb2\x35", b"\x81", b"\xff", b"\x80", b"\x84\x31\x95\x33", b'"', b"\\"]
        ), max_size=40))
        body = b"".join(pieces)
        return b'{"flag":"0","cause":"' + body + b'","data":{"userName":"' + body + b'"}}'
    inner = msgspec.json.encode(_deep(draw(st.integers(min_value=30, max_value=3000)), "[")).decode()
    return f'{{"flag":"1","data":{inner}}}'.encode()


def _check(error: BaseException) -> None:
    assert isinstance(error, Error), f"{type(error).__name__} is not a ybplug error"
    message = str(error)
    assert len(message) <= MESSAGE_LIMIT
    assert SECRET not in message and PHONE not in message


@given(hostile())
def test_hostile_replies_meet_only_ybplug_errors_quickly(raw: bytes) -> None:
    for decode in (lambda: decode_reply(raw, BUFFER), lambda: identity(0, raw, buffer_size=BUFFER, secrets=(SECRET,)),
                   lambda: identity(5, raw, buffer_size=BUFFER, secrets=(SECRET,))):
        # CPU time of this thread: what the decoder costs, not what the other processes sharing
        # the machine's cores cost it (a wall clock on a loaded CI machine measures those).
        began = time.thread_time()
        try:
            decode()
        except BaseException as exc:  # noqa: BLE001 - the property is about what escapes
            _check(exc)
        assert time.thread_time() - began < 0.1


def test_a_reply_nested_3000_deep_is_unreadable_not_a_recursion_error() -> None:
    # The review's case: a well-formed 6 KB reply nested 3,000 deep raised RecursionError.
    raw = ('{"flag":"1","data":' + "[" * 3000 + "]" * 3000 + "}").encode()
    with pytest.raises(VoucherReplyUnreadable, match="nests deeper than"):
        decode_reply(raw)
    as_text = msgspec.json.encode({"flag": "1", "data": "[" * 3000 + "]" * 3000})
    with pytest.raises(VoucherReplyUnreadable, match="nests deeper than"):
        decode_reply(as_text)
