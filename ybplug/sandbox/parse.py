"""Everything the sandbox reads off the network, and one clear refusal for everything else.

A sandbox bound to a test network meets scanners, fuzzers and broken clients.  Whatever arrives
(the business envelope, a sign-in, an admin body) goes through one of the three functions here,
which either return a typed value or raise :class:`BadRequest`, never anything else: no handler
raises, no 500, no traceback in the log.  The limits:

* a body of at most :data:`MAX_BODY` bytes (the HTTP face also tells aiohttp, so a larger one is
  refused before it is read into memory);
* JSON nested at most :data:`MAX_DEPTH` levels where the shape is free (the business call's
  ``data``); elsewhere the body decodes into a fixed struct and msgspec skips anything unknown,
  its own recursion guard refusing pathological nesting (a ``RecursionError``, caught here);
* strings must be valid UTF-8 (msgspec refuses invalid bytes and lone surrogates), numbers must
  fit 64 bits.

No aiohttp here: a property test drives these functions directly, thousands of cases a second.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ybplug import envelope
from ybplug.sandbox.centre import SandboxError

#: The largest body the sandbox reads: a real-name batch of a thousand numbers is about 30 KB.
MAX_BODY = 1024 * 1024
#: The deepest nesting a business call's ``data`` may have (the spec's deepest is 3: a list of
#: objects under ``data``).
MAX_DEPTH = 32

T = TypeVar("T")

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


class BadRequest(SandboxError):
    """A request the sandbox refuses to read; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _sized(body: bytes) -> bytes:
    if not isinstance(body, bytes):
        raise BadRequest(f"body must be bytes, got {type(body).__name__}")
    if len(body) > MAX_BODY:
        raise BadRequest(f"request body is {len(body)} bytes, over the {MAX_BODY}-byte limit", status=413)
    return body


def _unreadable(what: str, exc: BaseException) -> BadRequest:
    if isinstance(exc, RecursionError):
        return BadRequest(f"malformed {what}: JSON nested too deeply")
    return BadRequest(f"malformed {what}: {str(exc)[:200]}")


def parse_business(body: bytes) -> envelope.Request:
    """The inner request of a business call (``funid``, ``usr``, ``pwd``, ``data``)."""
    try:
        inner = envelope.decode_request(_sized(body))
    except _DECODE_ERRORS as exc:
        raise _unreadable("request envelope", exc) from None
    data = inner.data
    # Cheap first: fewer opening brackets in the whole body than the limit cannot nest deeper.
    if isinstance(data, (dict, list)) and body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        # The client's own check of a reply's shape, with the sandbox's looser depth (the body
        # limit already bounds the count of values).
        problem = envelope.shape_problem(data, max_depth=MAX_DEPTH)
        if problem is not None:
            raise BadRequest(f"malformed request envelope: data {problem}")
    return inner


def parse_credentials(body: bytes) -> envelope.Credentials:
    """The sign-in body ``{"usr", "pwd"}``."""
    try:
        return envelope.decode_credentials(_sized(body))
    except _DECODE_ERRORS as exc:
        raise _unreadable("sign-in request", exc) from None


def parse_admin(body: bytes, kind: type[T] | Any) -> T:
    """An admin body as ``kind`` (a struct, or a union such as ``Fault | list[Fault]``); a
    struct's own checks (``__post_init__``) refuse through the same :class:`BadRequest`."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        value: T = decoder.decode(_sized(body))
    except _DECODE_ERRORS as exc:
        raise _unreadable("admin request", exc) from None
    return value


__all__ = ["MAX_BODY", "MAX_DEPTH", "BadRequest", "parse_business", "parse_credentials", "parse_admin"]
