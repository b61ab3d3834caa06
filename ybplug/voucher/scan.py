"""The tolerant reader of EcTrans replies: finds the JSON object real libraries send, repairs it.

The bytes are cut at the first NUL; a UTF-8 or GB18030 byte-order mark and surrounding whitespace
are dropped; only the first complete JSON object is kept (bytes after it are ignored); trailing
commas before ``}`` and ``]`` are removed (the spec's own example has one) and raw control
characters inside strings are escaped, by a scanner that knows where strings and multibyte
characters are (a GBK character's second byte may be ``\\``, ``]`` or ``}``).  The text is GBK,
else GB18030 (for names outside GBK), or UTF-8 after a UTF-8 mark.

Hostile replies meet limits before any recursive decoder sees them: at most ``limit`` bytes
(:data:`~ybplug.voucher.config.REPLY_LIMIT` by default) and :data:`MAX_DEPTH` levels of nesting.
"""

from __future__ import annotations

import re

from ybplug.voucher.config import REPLY_LIMIT
from ybplug.voucher.errors import VoucherReplyUnreadable

__all__ = ["MAX_DEPTH", "check_depth", "reply_text"]

#: Nesting the spec's reply needs: 2 (the reply, its data node); real libraries add little.
MAX_DEPTH = 32

_UTF8_BOM = b"\xef\xbb\xbf"
_GB18030_BOM = b"\x84\x31\x95\x33"
# Where a byte scan must stop: inside a string, at its end, an escape, a control character or a
# multibyte character; outside, at a string, a bracket or a multibyte character.
_IN_STRING = re.compile(rb'["\\\x00-\x1f\x80-\xff]')
_OUTSIDE = re.compile(rb'["{}\[\]\x80-\xff]')
# Runs inside a string that need no repair, matched in one go (a hostile reply of 100,000 escapes or
# Chinese characters must not cost a Python loop turn each): printable ASCII but the quote and the
# backslash, an escape of an ASCII character, and (GB) whole 4-byte then 2-byte characters.
_PLAIN_RUN = re.compile(rb'(?:[\x20\x21\x23-\x5b\x5d-\xff]+|\\[\x20-\x7f])+')
_GB_RUN = re.compile(
    rb'(?:[\x20\x21\x23-\x5b\x5d-\x7f]+|\\[\x20-\x7f]|[\x81-\xfe][\x30-\x39][\x81-\xfe][\x30-\x39]'
    rb'|[\x81-\xfe][\x40-\x7e\x80-\xfe])+'
)
# In decoded text: a whole string (escapes included) or a bracket.
_TEXT_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def check_depth(text: str) -> None:
    """Raise :class:`VoucherReplyUnreadable` if JSON ``text`` nests deeper than :data:`MAX_DEPTH`
    (for the data node some libraries send as a JSON string inside the reply)."""
    depth = 0
    for match in _TEXT_TOKEN.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            if depth > MAX_DEPTH:
                raise VoucherReplyUnreadable(f"the reply's data node nests deeper than {MAX_DEPTH} levels")
        elif token in ("}", "]"):
            depth -= 1


def reply_text(raw: bytes, limit: int = REPLY_LIMIT) -> str:
    """The first JSON object in ``raw``, repaired and decoded to text (see the module docstring).

    Raises :class:`VoucherReplyUnreadable` (never anything else), whose message never quotes the
    reply."""
    data = raw.split(b"\0", 1)[0].strip()
    if len(data) > limit:
        raise VoucherReplyUnreadable(f"the reply ({len(data)} bytes) is longer than the {limit} bytes ybplug reads")
    utf8 = data.startswith(_UTF8_BOM)
    if utf8:
        data = data[len(_UTF8_BOM):].lstrip()
    elif data.startswith(_GB18030_BOM):
        data = data[len(_GB18030_BOM):].lstrip()
    if not data:
        raise VoucherReplyUnreadable("the reply is empty")
    # (scan multibyte characters the GB way?, encodings to try on the object found)
    attempts: list[tuple[bool, tuple[str, ...]]] = [(False, ("utf-8",))] if utf8 else []
    attempts.append((True, ("gbk", "gb18030")))
    failure = VoucherReplyUnreadable("the reply is neither GBK nor GB18030 text")
    for gb, encodings in attempts:
        try:
            body = _first_object(data, gb=gb)
        except VoucherReplyUnreadable as exc:
            failure = exc
            continue
        for encoding in encodings:
            try:
                return body.decode(encoding)
            except UnicodeDecodeError:
                continue
        failure = VoucherReplyUnreadable("the reply is neither GBK nor GB18030 text")
    raise failure


def _unit(data: bytes, i: int, *, gb: bool) -> int:
    """Bytes of the character starting at ``data[i]``: GB18030 has 1, 2 and 4-byte characters."""
    first = data[i]
    if not gb or first < 0x81 or first == 0xFF or i + 1 >= len(data):
        return 1
    second = data[i + 1]
    if 0x30 <= second <= 0x39:
        if i + 3 < len(data) and 0x81 <= data[i + 2] <= 0xFE and 0x30 <= data[i + 3] <= 0x39:
            return 4
        return 1
    if 0x40 <= second <= 0xFE and second != 0x7F:
        return 2
    return 1


def _first_object(data: bytes, *, gb: bool) -> bytes:
    """The first complete JSON object in ``data``, with trailing commas removed and control
    characters inside strings escaped; stepping over multibyte characters whole."""
    n = len(data)
    i = 0
    while i < n and data[i] != 0x7B:  # leading junk, if any, up to the first real "{"
        i += _unit(data, i, gb=gb)
    if i >= n:
        raise VoucherReplyUnreadable(f"the reply ({n} bytes) holds no JSON object")
    out = bytearray()
    depth = 0
    in_string = False
    while i < n:
        if in_string:
            run = (_GB_RUN if gb else _PLAIN_RUN).match(data, i)
            if run is not None:
                out += run.group()
                i = run.end()
                if i >= n:
                    break
        match = (_IN_STRING if in_string else _OUTSIDE).search(data, i)
        if match is None:
            out += data[i:]
            break
        out += data[i:match.start()]
        i = match.start()
        byte = data[i]
        if byte >= 0x80:
            width = _unit(data, i, gb=gb)
            out += data[i:i + width]
            i += width
        elif in_string:
            if byte == 0x5C:  # an escape: keep it with the character it escapes
                width = 1 + (_unit(data, i + 1, gb=gb) if i + 1 < n else 0)
                out += data[i:i + width]
                i += width
                continue
            if byte == 0x22:
                in_string = False
                out.append(byte)
            else:
                out += b"\\u%04x" % byte
            i += 1
        else:
            if byte == 0x22:
                in_string = True
                out.append(byte)
            elif byte in b"{[":
                depth += 1
                if depth > MAX_DEPTH:
                    raise VoucherReplyUnreadable(f"the reply nests deeper than {MAX_DEPTH} levels")
                out.append(byte)
            else:  # } or ]
                _drop_trailing_comma(out)
                depth -= 1
                out.append(byte)
                if depth == 0:
                    return bytes(out)
            i += 1
    raise VoucherReplyUnreadable(
        f"the reply ({n} bytes) ends before its JSON object closes: cut short by the library?"
    )


def _drop_trailing_comma(out: bytearray) -> None:
    """Remove a comma that is the last thing before a closing bracket.

    Called outside strings only, so the last non-blank byte, if a comma, is structural: a string
    always ends with its closing quote.
    """
    j = len(out) - 1
    while j >= 0 and out[j] in b" \t\r\n":
        j -= 1
    if j >= 0 and out[j] == 0x2C:
        del out[j]


