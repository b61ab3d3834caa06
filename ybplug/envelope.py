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
"""

from __future__ import annotations

from typing import Any

import msgspec

# Relative, so that a vendor agent mounted under a prefix (http://host/agent/) keeps it.
BUSINESS_PATH = "sieaf/business_handle/"
SIGN_IN_PATH = "sieaf/authorization/"
#: ``outputLen`` the vendor agent expects: the largest reply it may write.
OUTPUT_LEN = 20000


class CentreReply(msgspec.Struct, frozen=True):
    """The inner reply as it arrives: ``flag`` (often a string), ``cause`` and the ``data`` node."""

    flag: int = 0
    cause: str | None = None
    data: dict[str, Any] | None = None


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
    data: dict[str, Any]


_encode = msgspec.json.Encoder().encode
_decode_envelope = msgspec.json.Decoder(_Envelope, strict=False).decode
_decode_request = msgspec.json.Decoder(Request, strict=False).decode
_decode_outer = msgspec.json.Decoder(_Outer).decode
_decode_inner = msgspec.json.Decoder(CentreReply, strict=False).decode
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
    convention, an object is accepted too.  Raises ``msgspec.DecodeError`` /
    ``msgspec.ValidationError`` / ``KeyError`` / ``TypeError`` for a reply it cannot read."""
    value = _decode_outer(body).data["outputValue"]
    if isinstance(value, str):
        return _decode_inner(value)
    return msgspec.convert(value, CentreReply, strict=False)


def decode_sign_in_reply(body: bytes) -> CentreReply:
    return _decode_inner(body)


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
    "BUSINESS_PATH", "SIGN_IN_PATH", "OUTPUT_LEN", "CentreReply", "Request", "Credentials",
    "encode_request", "encode_credentials", "decode_reply", "decode_sign_in_reply",
    "decode_request", "decode_credentials", "encode_reply",
]
