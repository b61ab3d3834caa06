"""The wire to the centre: an async ``Transport`` and the default one over aiohttp.

The spec names transactions and fields, not the envelope.  The default follows the vendor's
local HTTP agent used elsewhere in Fujian: POST ``/sieaf/business_handle/`` with
``{"inputValue": "<inner JSON as a string>", "outputLen": 20000}``, the inner request being
``{"funid", "usr", "pwd", "data"}`` and the reply ``{"data": {"outputValue": "<inner JSON>"}}``
with inner ``{"flag", "cause", "data"}``.  A hospital whose vendor wraps it differently supplies
its own ``Transport`` through the ``ybplug_transport`` hook.

Outcomes are typed because the journal's safety depends on them:

* a business refusal (``flag`` 0) is an answer, returned as a result with ``ok`` false;
* a reply is trusted only when well formed: ``flag`` exactly 0 or 1, and every ``baz726`` it
  carries of the spec's shape (:func:`ybplug.fields.is_registration_number`); anything else
  (no flag, flag 2, a flag-1 registration numbered ``"123"``, one malformed row of a .24 answer)
  is an :class:`OutcomeUnknown`, never a refusal or a success;
* :class:`NotDelivered`: the request surely never reached the centre (connection refused,
  connect timeout): safe to send again;
* :class:`OutcomeUnknown`: it may have been applied (timeout after sending, connection lost,
  HTTP 5xx, a reply that cannot be read): sending again may meet "duplicate";
* :class:`AuthenticationFailed`: ``usr``/``pwd`` refused; nothing was applied.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable

import aiohttp
import msgspec

from ybplug import envelope
from ybplug.codes import Funid
from ybplug.config import WireConfig
from ybplug.envelope import BUSINESS_PATH, MAX_REPLY_BYTES, SIGN_IN_PATH, CentreReply, MalformedReply
from ybplug.errors import Error, Outcome
from ybplug.fields import REGISTRATION_NUMBER_RULE, is_registration_number, shown
from ybplug.messages import Message, Reply, RequestT, ResultT, Transaction

log = logging.getLogger("ybplug.wire")



class WireError(Error):
    """A transaction failed on the way; ``may_have_applied`` says what the journal must assume."""

    may_have_applied: bool = True
    #: What the journal records and the observers are told.
    outcome: Outcome = Outcome.UNKNOWN

    def __init__(self, funid: str, reason: str) -> None:
        if len(reason) > 600:  # a centre's cause or a library's message can be any length
            reason = reason[:600] + "…"  # 600 characters: under 2 KB even if all are Chinese
        self.funid = funid
        self.reason = reason
        #: The journal's exchange row, once the host has recorded the attempt.
        self.exchange_id: int | None = None
        super().__init__(f"{funid}: {reason}")


class NotDelivered(WireError):
    """The request surely did not reach the centre; sending it again is safe."""

    may_have_applied = False
    outcome = Outcome.NOT_DELIVERED


class AuthenticationFailed(WireError):
    """The centre refused ``usr``/``pwd``; nothing was applied, and resending will not help.

    Not a :class:`NotDelivered`, so that no "resend when not delivered" loop resends a wrong
    password forever.
    """

    may_have_applied = False
    outcome = Outcome.AUTH_FAILED


class OutcomeUnknown(WireError):
    """The request may have been applied: the reply was lost, late or unreadable."""


class UnreadableAnswer(OutcomeUnknown):
    """The centre answered, but not in a way ybplug can trust (no flag or a strange one, a body
    that is not the envelope, a ``baz726`` of the wrong shape): the request may have been applied.
    Unlike a lost reply, asking again is unlikely to help for long, so an upload that meets
    :data:`UNREADABLE_BEFORE_REVIEW` of these in a row goes to a person (needs review)."""

    def __init__(self, funid: str, reason: str) -> None:
        super().__init__(funid, f"{UNREADABLE}: {reason}")


#: How an unreadable answer's reason begins (the journal counts them by it).
UNREADABLE = "unreadable answer"
#: Unreadable answers in a row after which an upload goes to review instead of being retried.
UNREADABLE_BEFORE_REVIEW = 3


@runtime_checkable
class Transport(Protocol):
    """Carries one transaction to the centre and back."""

    async def call(self, funid: str, data: dict[str, Any]) -> CentreReply:
        """Send ``data`` as transaction ``funid``; raise :class:`WireError` if no answer was had."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def exchange(transport: Transport, transaction: Transaction[RequestT, ResultT], request: RequestT) -> ResultT:
    """One typed round trip: encode ``request`` with wire names, decode the reply leniently, and
    trust it only when well formed (else :class:`OutcomeUnknown`: the host retries, then sends the
    record to review).

    A .24 answer with one malformed ``<xsesmlb>`` row is unknown as a whole: a centre that garbles
    one row may have garbled the others in ways that still look well formed.
    """
    funid = transaction.funid
    reply = await transport.call(funid, msgspec.to_builtins(request))
    if not isinstance(reply, CentreReply):
        raise OutcomeUnknown(funid, f"the transport returned {type(reply).__name__}, not a CentreReply")
    flag = reply.flag
    if flag is None:
        raise UnreadableAnswer(funid, "reply without flag 操作成功标志")
    if type(flag) is not int or flag not in (0, 1):
        raise UnreadableAnswer(funid, f"flag 操作成功标志 is {shown(flag)}, neither 0 nor 1")
    if reply.data is not None and not isinstance(reply.data, dict):
        raise UnreadableAnswer(funid, f"reply data is {type(reply.data).__name__}, not an object")
    problem = envelope.shape_problem(reply.data)
    if problem:
        raise UnreadableAnswer(funid, f"reply data {problem}")
    merged: dict[str, Any] = dict(reply.data or {})
    merged["flag"] = flag
    merged["cause"] = reply.cause
    try:
        result = msgspec.convert(merged, transaction.result, strict=False)
    except msgspec.ValidationError as exc:
        raise UnreadableAnswer(funid, f"reply does not match the spec: {exc}") from None
    if result.ok and funid == Funid.COLLECT and not getattr(result, "registration_number", ""):
        raise UnreadableAnswer(funid, "flag 1 without baz726 新生儿登记流水号")
    for number in result.registration_numbers:
        if not is_registration_number(number):
            raise UnreadableAnswer(funid, f"baz726 新生儿登记流水号 {shown(number)}: {REGISTRATION_NUMBER_RULE}")
    return result


class HttpTransport:
    """The default transport: the vendor agent's envelope over one reused aiohttp session."""

    def __init__(self, config: WireConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._signed_in = False

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.config.connect_timeout,
                sock_connect=self.config.connect_timeout,
                sock_read=self.config.read_timeout,
            )
            connector = aiohttp.TCPConnector(limit=self.config.max_connections)
            self._session = aiohttp.ClientSession(
                base_url=self.config.endpoint.rstrip("/") + "/", timeout=timeout, connector=connector
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sign_in(self) -> None:
        """``/sieaf/authorization/`` with ``usr``/``pwd``; raises :class:`AuthenticationFailed`."""
        body = envelope.encode_credentials(self.config.usr, self.config.pwd)
        status, payload = await self._post("sign-in", SIGN_IN_PATH, body)
        if status in (401, 403):
            raise AuthenticationFailed("sign-in", f"the centre refused usr {self.config.usr!r} (HTTP {status})")
        if status != 200:
            raise NotDelivered("sign-in", f"HTTP {status} from {SIGN_IN_PATH}")
        try:
            reply = envelope.decode_sign_in_reply(payload)
        except MalformedReply:
            raise NotDelivered("sign-in", "unreadable sign-in reply") from None
        if not reply.flag == 1:
            raise AuthenticationFailed("sign-in", f"sign-in refused: {reply.cause or 'no cause given'}")
        self._signed_in = True

    async def call(self, funid: str, data: dict[str, Any]) -> CentreReply:
        if self.config.sign_in and not self._signed_in:
            await self.sign_in()
        body = envelope.encode_request(funid, self.config.usr, self.config.pwd, data, self.config.output_len)
        started = time.perf_counter()
        status, payload = await self._post(funid, BUSINESS_PATH, body)
        if status in (401, 403):
            self._signed_in = False
            raise AuthenticationFailed(funid, f"the centre refused usr {self.config.usr!r} (HTTP {status}); check usr/pwd")
        if status >= 500:
            raise OutcomeUnknown(funid, f"HTTP {status} from the centre")
        if status != 200:
            raise NotDelivered(funid, f"HTTP {status} from {self.config.endpoint.rstrip('/')}/{BUSINESS_PATH}")
        try:
            reply = envelope.decode_reply(payload)
        except MalformedReply as exc:
            raise UnreadableAnswer(funid, f"malformed reply: {exc}") from None
        log.debug("%s flag=%s in %.1f ms", funid, reply.flag, (time.perf_counter() - started) * 1000)
        return reply

    @staticmethod
    async def _read(funid: str, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, up to :data:`ybplug.envelope.MAX_REPLY_BYTES` (a larger one is unknown)."""
        if (response.content_length or 0) > MAX_REPLY_BYTES:
            raise UnreadableAnswer(funid, f"reply of {response.content_length} bytes, over the {MAX_REPLY_BYTES}-byte limit")
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > MAX_REPLY_BYTES:
                raise UnreadableAnswer(funid, f"reply over the {MAX_REPLY_BYTES}-byte limit")
        return bytes(body)

    async def _post(self, funid: str, path: str, body: bytes) -> tuple[int, bytes]:
        """POST and read the whole body, classifying every failure by what the centre may have seen."""
        headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            async with self._client().post(path, data=body, headers=headers) as response:
                return response.status, await self._read(funid, response)
        except aiohttp.ConnectionTimeoutError:
            raise NotDelivered(funid, f"no connection to {self.config.endpoint} within {self.config.connect_timeout} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise NotDelivered(funid, f"cannot connect to {self.config.endpoint}: {exc.os_error.strerror or exc}") from None
        except TimeoutError:
            raise OutcomeUnknown(funid, f"no reply within {self.config.read_timeout} s after sending") from None
        except aiohttp.ClientError as exc:
            raise OutcomeUnknown(funid, f"connection lost after sending ({type(exc).__name__})") from None


__all__ = [
    "Transport", "HttpTransport", "WireConfig", "CentreReply", "exchange",
    "WireError", "NotDelivered", "OutcomeUnknown", "UnreadableAnswer", "AuthenticationFailed", "Message", "Reply",
]
