"""The vendor agent's envelope, both ways: what the HIS sends and the centre answers, as bytes.

The spec names transactions and fields, not the envelope.  The default follows the vendor's
local HTTP agent used elsewhere in Fujian: POST ``sieaf/business_handle/`` with
``{"inputValue": "<inner JSON as a string>", "outputLen": 20000}``, the inner request being
``{"funid", "usr", "pwd", "data"}`` and the reply ``{"data": {"outputValue": "<inner JSON>"}}``
with inner ``{"flag", "cause", "data"}``; sign-in is ``sieaf/authorization/`` with
``{"usr", "pwd"}``.

One module for both ends (the client in :mod:`ybplug.wire`, the simulated centre in
:mod:`ybplug.sandbox`), so the two can never drift apart.  No aiohttp here: the sandbox's rules
and the config can use it without loading an HTTP stack.

A reply is read as hostile input: at most :data:`MAX_REPLY_BYTES`, decoded into a schema whose
depth is bounded (the ``data`` node holds scalars, rows of scalars or lists of such rows; nothing
deeper), and anything else raises :class:`MalformedReply`, never a library's exception.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ybplug.errors import Error

# Relative, so that a vendor agent mounted under a prefix (http://host/agent/) keeps it.
BUSINESS_PATH = "sieaf/business_handle/"
SIGN_IN_PATH = "sieaf/authorization/"
#: ``outputLen`` the vendor agent expects: the largest reply it may write.
OUTPUT_LEN = 20000
#: The largest reply body read at all (a .24 answer of 99,999 rows is about 30 MB; no real batch
#: comes near, the default is 100 rows).  Anything larger is an unreadable reply.
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: Deepest nesting of a reply's ``data`` node a transport may hand to :func:`ybplug.wire.exchange`:
#: ``data`` -> ``xsesmlb`` list -> row -> value is 3; the bound leaves room for a vendor's wrapping.
MAX_DEPTH = 8
#: Most values (scalars, lists, objects) in one reply's ``data`` node: 100 rows of 11 fields is 1,200.
MAX_NODES = 2_000_000


class MalformedReply(Error, ValueError):
    """A reply that cannot be read as the envelope says; the reason never quotes the body."""


class CentreReply(msgspec.Struct, frozen=True):
    """The inner reply as it arrives: ``flag`` (often a string; None when absent), ``cause`` and
    the ``data`` node.  Only a ``flag`` of exactly 0 or 1 is an answer (see :func:`ybplug.wire.exchange`)."""

    flag: int | None = None
    cause: str | None = None
    data: dict[str, Any] | None = None


# The shape a reply is decoded into: bounded depth by construction, so that no reply can make the
# decoder recurse (a value of any other shape is a ValidationError, raised at the first token).
_Scalar = str | int | float | bool | None
_Row = dict[str, _Scalar]


class _WireReply(msgspec.Struct, frozen=True):
    flag: int | None = None
    cause: str | int | float | None = None
    data: dict[str, _Scalar | list[_Row] | _Row] | None = None


class _OuterData(msgspec.Struct):
    outputValue: str | _WireReply


class Request(msgspec.Struct):
    """The inner request as the centre reads it."""

    funid: str
    usr: str = ""
    pwd: str = ""
    data: Any = None


class Credentials(msgspec.Struct):
    """The sign-in body."""

    usr: str = ""
    pwd: str = ""


class _Envelope(msgspec.Struct):
    inputValue: str
    outputLen: int | None = None


class _Outer(msgspec.Struct):
    data: _OuterData


_encode = msgspec.json.Encoder().encode
_decode_envelope = msgspec.json.Decoder(_Envelope, strict=False).decode
_decode_request = msgspec.json.Decoder(Request, strict=False).decode
_decode_outer = msgspec.json.Decoder(_Outer).decode
_decode_inner = msgspec.json.Decoder(_WireReply, strict=False).decode
_decode_credentials = msgspec.json.Decoder(Credentials, strict=False).decode


# --- the HIS's side -------------------------------------------------------------------------------


def encode_request(funid: str, usr: str, pwd: str, data: Any, output_len: int = OUTPUT_LEN) -> bytes:
    """The body of a business call."""
    inner = _encode({"funid": funid, "usr": usr, "pwd": pwd, "data": data})
    return _encode(_Envelope(inputValue=inner.decode(), outputLen=output_len))


def encode_credentials(usr: str, pwd: str) -> bytes:
    """The body of a sign-in."""
    return _encode(Credentials(usr=usr, pwd=pwd))


def decode_reply(body: bytes) -> CentreReply:
    """The inner reply of a business call; ``outputValue`` is a JSON string by the vendor's
    convention, an object is accepted too.  Raises :class:`MalformedReply` for a reply it cannot read."""
    _check_size(body)
    outer = _guarded(_decode_outer, body)
    value = outer.data.outputValue
    return _reply(_guarded(_decode_inner, value) if isinstance(value, str) else value)


def decode_sign_in_reply(body: bytes) -> CentreReply:
    """The sign-in answer (``{"flag", "cause"}``); raises :class:`MalformedReply` like :func:`decode_reply`."""
    _check_size(body)
    return _reply(_guarded(_decode_inner, body))


def _check_size(body: bytes | str) -> None:
    if len(body) > MAX_REPLY_BYTES:
        raise MalformedReply(f"reply of {len(body)} bytes, over the {MAX_REPLY_BYTES}-byte limit")


def _guarded(decode: Any, body: bytes | str) -> Any:
    try:
        return decode(body)
    except msgspec.ValidationError as exc:
        # msgspec's message names the place (``$.data.flag``), never the value.
        raise MalformedReply(f"reply does not match the envelope: {_short(str(exc))}") from None
    except (msgspec.DecodeError, UnicodeError):  # msgspec before 0.19 raises UnicodeDecodeError for bad UTF-8
        raise MalformedReply("reply is not JSON") from None
    except RecursionError:  # an unknown key's value nested deeper than the decoder's stack allows
        raise MalformedReply("reply nested too deeply") from None


def _reply(wire: _WireReply) -> CentreReply:
    cause = wire.cause if wire.cause is None or isinstance(wire.cause, str) else str(wire.cause)
    return CentreReply(flag=wire.flag, cause=cause, data=wire.data)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


_LEAVES = frozenset({str, int, float, bool, type(None)})


def shape_problem(data: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> str | None:
    """Why a reply's ``data`` node (Python values, from any transport) is too deep or too large to
    read, or None.  Iterative, so that the check itself cannot exhaust the stack."""
    if not isinstance(data, dict | list | tuple):
        return None
    stack: list[tuple[Any, int]] = [(data, 0)]
    nodes = 1
    while stack:
        value, depth = stack.pop()
        children: Any = value.values() if isinstance(value, dict) else value
        if depth >= max_depth:
            return f"nested deeper than {max_depth} levels"
        nodes += len(children)
        if nodes > max_nodes:
            return f"more than {max_nodes} values"
        if _LEAVES.issuperset(map(type, children)):  # a row of plain values: nothing below (a loop in C)
            continue
        below = depth + 1
        # Only containers are pushed: the leaves (most of a reply) are counted, not visited.
        stack += [(child, below) for child in children if isinstance(child, dict | list | tuple)]
    return None


# --- the centre's side ----------------------------------------------------------------------------


def decode_request(body: bytes) -> Request:
    """The inner request of a business call; raises ``msgspec.DecodeError`` /
    ``msgspec.ValidationError`` for one it cannot read."""
    return _decode_request(_decode_envelope(body).inputValue)


def decode_credentials(body: bytes) -> Credentials:
    return _decode_credentials(body)


def encode_reply(inner: dict[str, Any]) -> bytes:
    """The body of the centre's answer: the inner reply as a JSON string under ``outputValue``."""
    return _encode({"data": {"outputValue": _encode(inner).decode()}})


__all__ = [
    "BUSINESS_PATH", "SIGN_IN_PATH", "OUTPUT_LEN", "MAX_REPLY_BYTES", "MAX_DEPTH", "MAX_NODES",
    "CentreReply", "MalformedReply", "Request", "Credentials", "shape_problem", "encode_request", "encode_credentials", "decode_reply", "decode_sign_in_reply",
    "decode_request", "decode_credentials", "encode_reply",
]
