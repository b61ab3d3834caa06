"""What every EcTrans backend shares: the request's bytes, the reply's meaning, clean messages.

The backends only move bytes (``inData`` in, return code and ``outData`` back); this module turns
a :class:`~ybplug.messages.QrRequest` into ``inData`` and a reply into a
:class:`~ybplug.messages.QrIdentity` or the typed error it amounts to, and scrubs every text from
the library through :func:`ybplug.privacy.scrub` (the QR code, ID and phone numbers masked), so
the C and the .NET paths report alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from ybplug.fields import Problem
from ybplug.messages import QrIdentity, QrReply, QrRequest, QrRequestData
from ybplug.privacy import mask_names_beside_numbers, scrub
from ybplug.voucher.config import REPLY_LIMIT
from ybplug.voucher.errors import (
    VoucherCallFailed,
    VoucherRefused,
    VoucherReplyUnreadable,
    VoucherRequestInvalid,
    capped,
)
from ybplug.voucher.scan import check_depth, reply_text

__all__ = ["WIRE_CHARSET", "clean", "decode_reply", "encode_request", "identity", "request_secrets"]

#: The vendor library's charset.
WIRE_CHARSET = "gbk"
_IDCODE_LABEL = "二维码扫码结果"


def encode_request(request: QrRequest, charset: str = WIRE_CHARSET) -> bytes:
    """``inData`` for a request: the spec's JSON with wire names, in ``charset`` (GBK for a C
    library; a .NET one takes UTF-8, which holds everything).

    ``idcode`` is always present (an empty one opens the scanning window), because a C library that
    looks a key up without checking for its absence is not something to bet a HIS on.  A character
    the charset cannot hold raises :class:`VoucherRequestInvalid` naming the field: never a ``?``.
    """
    if not isinstance(request, QrRequest):
        raise TypeError(f"expected a QrRequest, got {type(request).__name__}")
    document: dict[str, Any] = {"idcode": request.idcode, "data": msgspec.to_builtins(request.data)}
    text = msgspec.json.encode(document).decode("utf-8")
    try:
        return text.encode(charset)
    except UnicodeEncodeError:
        raise _unencodable(document, charset) from None


def _unencodable(document: dict[str, Any], charset: str) -> VoucherRequestInvalid:
    problems = []
    for field, label, personal, value in _text_fields(document):
        try:
            value.encode(charset)
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            shown = f"U+{ord(bad):04X}" if personal else f"{bad!r} (U+{ord(bad):04X})"
            problems.append(Problem(field, label, f"character {shown} cannot be encoded in GBK, the library's charset"))
    if not problems:  # pragma: no cover - encode failed, so some field holds the character
        problems.append(Problem("?", "", "cannot be encoded in GBK"))
    return VoucherRequestInvalid("QrRequest", problems)


def _text_fields(document: dict[str, Any]) -> Iterator[tuple[str, str, bool, str]]:
    """(wire path, Chinese label, personal?, value) of every text field of an encoded request."""
    yield "idcode", _IDCODE_LABEL, True, str(document["idcode"])
    wire = {f.name: f.encode_name for f in msgspec.structs.fields(QrRequestData)}
    personal = {wire[name] for name in QrRequestData.personal}
    for key, value in document["data"].items():
        if isinstance(value, str):
            yield f"data.{key}", QrRequestData.labels.get(key, ""), key in personal, value


def request_secrets(request: QrRequest) -> tuple[str, ...]:
    """The personal values of a request that the library's text may quote back: the QR code and
    the operator's name.  (The insured person's name is not known before the decode.)"""
    return tuple(value for value in (request.idcode, request.data.operator_name) if value)


def clean(text: str, secrets: Iterable[object] = ()) -> str:
    """Text from the library (a cause, an exception's message) fit for an error message and a log
    line: ``secrets`` (:func:`request_secrets`), ID and phone numbers masked
    (:func:`ybplug.privacy.scrub`), and a name written just before such a number
    (:func:`ybplug.privacy.mask_names_beside_numbers`: ``陈静 3502…`` -> ``陈* 3502…``); lone
    surrogates replaced; capped.  A name the library writes elsewhere cannot be told from other
    text and stays."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return capped(scrub(mask_names_beside_numbers(text), secrets=secrets))


def decode_reply(raw: bytes, limit: int = REPLY_LIMIT) -> QrReply:
    """Read ``outData`` as the spec's reply, tolerating what real libraries send
    (:mod:`ybplug.voucher.scan`).  Numbers and nulls in the ``data`` node become text and defaults.

    Raises :class:`VoucherReplyUnreadable` and nothing else, whose message never quotes the reply.
    """
    document = _reply_document(raw, limit)
    try:
        return msgspec.convert(document, QrReply, strict=False)
    except msgspec.ValidationError as exc:
        raise VoucherReplyUnreadable(f"the reply does not have the spec's shape: {clean(str(exc))}") from None


def _reply_document(raw: bytes, limit: int) -> dict[str, Any]:
    text = reply_text(raw, limit)
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise VoucherReplyUnreadable(f"the reply is not JSON, even after repairs ({clean(str(exc))})") from None
    if not isinstance(document, dict):
        raise VoucherReplyUnreadable("the reply is not a JSON object")
    if "flag" not in document:
        raise VoucherReplyUnreadable("the reply has no flag")
    if isinstance(document.get("cause"), (int, float)) and not isinstance(document["cause"], bool):
        document["cause"] = str(document["cause"])
    data = document.get("data")
    if isinstance(data, str):  # some builds send the data node as a JSON string, or ""
        check_depth(data)
        try:
            data = msgspec.json.decode(data) if data.strip() else None
        except msgspec.DecodeError:
            raise VoucherReplyUnreadable("the reply's data node is text that is not JSON") from None
    if isinstance(data, dict):
        data = {key: _as_text(value) for key, value in data.items() if value is not None}
    document["data"] = data
    return document


def _as_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return value


def identity(code: int, raw: bytes, *, buffer_size: int, secrets: Iterable[str]) -> QrIdentity:
    """The identity in a reply, or the typed error the reply amounts to."""
    secrets = tuple(secrets)
    if len(raw) >= buffer_size:
        raise VoucherReplyUnreadable(
            f"the reply filled the whole {buffer_size}-byte output buffer and may have run past it: "
            "raise buffer_size"
        )
    if code != 0:
        try:
            cause = _reply_document(raw, buffer_size).get("cause")
        except VoucherReplyUnreadable:
            cause = None
        raise VoucherCallFailed(code, clean(cause, secrets) if isinstance(cause, str) and cause else None)
    reply = decode_reply(raw, buffer_size)
    if reply.flag != 1:
        raise VoucherRefused(clean(reply.cause or "", secrets))
    if reply.data is None:
        raise VoucherReplyUnreadable("the reply says flag 1 but has no data node")
    return reply.data
