"""EcTrans: decode national medical-insurance e-voucher QR codes through the vendor's library.

The vendor ships ``ylz-certificate.dll`` exporting ``int EcTrans(char* inData, char* outData)``:
GBK JSON in, GBK JSON out into a buffer the caller allocates (no length is passed), 0 on success.
Libraries of this kind hang when the centre is unreachable, crash the process, are not safe to
call concurrently, open a scanning window when ``idcode`` is empty, must match the process's
bitness and answer with not-quite-JSON.  This module contains all of that behind one call::

    config = VoucherConfig(library=r"C:\\ybplug\\ylz-certificate.dll")
    async with Voucher(config) as voucher:
        identity = await voucher.decode(request)      # QrRequest -> QrIdentity

Backends (``VoucherConfig.backend``)
------------------------------------
``"process"`` (the default) loads the library in a small worker process and talks to it over its
stdin/stdout with length-prefixed frames.  A crash (segfault, abort) or a hang kills only the
worker: the caller gets :class:`VoucherCrashed` or :class:`VoucherTimeout` within the timeout, a
hung worker is killed, and the next call starts a fresh one.  The worker loads the library once
and serves many calls; it is started at :meth:`Voucher.start` or at the first decode.  It runs a
stdlib-only program (passed with ``python -I -c``), so the interpreter running it needs nothing
installed: not ybplug, not msgspec.  The worker also exits by itself when the HIS process dies, so
an orphan never keeps the scanner or the library's port busy.

``"thread"`` calls the library inside the HIS process, on one daemon thread per library.  It is
faster to start and needs no second interpreter, but it survives neither a crash (the HIS process
dies with the library) nor a hang: a thread cannot be killed, so after a timeout the library stays
busy until the hung call returns by itself, and every call until then fails at once with
:class:`VoucherBusy` instead of queueing behind it.  **Only the process backend survives crashes
and hangs.**

A 32-bit vendor DLL in a 64-bit HIS
-----------------------------------
A 32-bit DLL cannot load into a 64-bit Python (Windows reports ``WinError 193``).  Install a 32-bit
Python beside the HIS (no packages needed) and point the process backend at it::

    VoucherConfig(
        library=r"C:\\ylz\\ylz-certificate.dll",
        backend="process",
        python=r"C:\\Python38-32\\python.exe",    # runs the worker; Python >= 3.8
    )

The worker program is plain standard-library code kept compatible with Python 3.8, which is what
older hospital machines still run.

Calling convention: ``"auto"`` means stdcall (``ctypes.WinDLL``) on Windows, where comparable
voucher DLLs use it, and cdecl (``ctypes.CDLL``) elsewhere.  On 64-bit Windows both are the same.
For 32-bit stdcall builds the decorated export ``_EcTrans@8`` is found as well.

Limits
------
* Calls are serialised: one at a time per Voucher's worker (process backend), one at a time per
  library in this process (thread backend, even across Vouchers).  The timeout of a call counts
  from the moment it is made, so a call queued behind another one may time out without ever
  reaching the library: it then fails with :class:`VoucherBusy`.
* Crashes are survived by the process backend only; never point the thread backend at a library
  you do not trust not to crash (that is why the tests run their crash modes on processes only).
* ``idcode`` empty means the library opens its scanning window: such a call gets
  ``scan_timeout`` (default 120 s) instead of ``timeout`` (15 s).
* The output buffer is ``buffer_size`` bytes (64 KiB) plus a 4 KiB guard zone.  A reply that
  reaches the end of the buffer is reported (:class:`VoucherReplyUnreadable`), never trusted; the
  guard absorbs small overruns, a larger overrun corrupts memory (the worker's, in the process
  backend, which is then replaced).
* The library's own console output goes to the worker's stderr, never into the frames.
* A :class:`Voucher` belongs to the event loop that first uses it.
* Error messages and log lines never carry the QR code, the token, ID numbers or names; a cause
  text from the library is shown with the QR code and ID-number-like digit runs masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import inspect
import logging
import os
import queue
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from ybplug.errors import Error, Outcome
from ybplug.fields import InvalidMessage, Problem
from ybplug.messages import QrIdentity, QrReply, QrRequest, QrRequestData
from ybplug.privacy import mask, scrub

__all__ = [
    "Voucher",
    "VoucherConfig",
    "VoucherError",
    "VoucherLibraryError",
    "VoucherRequestInvalid",
    "VoucherCallFailed",
    "VoucherRefused",
    "VoucherTimeout",
    "VoucherBusy",
    "VoucherCrashed",
    "VoucherReplyUnreadable",
    "encode_request",
    "decode_reply",
]

logger = logging.getLogger(__name__)

#: Bytes allocated behind ``buffer_size``: a library that writes a little past the end of the
#: buffer (it is never told its size) damages this zone, not the heap.
_GUARD = 4096

# Frames between the HIS and the worker process.  Request: ``>I`` length, then the GBK JSON.
# Reply: ``>BiI`` kind, EcTrans's return code, length, then the body.
_REQUEST_HEAD = ">I"
_REPLY_HEAD = ">BiI"
_FRAME_READY = 0  # body: the worker's Python version and bitness
_FRAME_LOAD_FAILED = 1  # body: why the library did not load (UTF-8 text)
_FRAME_REPLY = 2  # body: outData up to its first NUL
_FRAME_CALL_FAILED = 3  # body: the exception EcTrans raised (an access violation on Windows)
_FRAME_KINDS = frozenset({_FRAME_READY, _FRAME_LOAD_FAILED, _FRAME_REPLY, _FRAME_CALL_FAILED})

_IDCODE_LABEL = "二维码扫码结果"
_WIRE_CHARSET = "gbk"


# --------------------------------------------------------------------------------------------
# Errors


class VoucherError(Error):
    """Base of every EcTrans failure.  Messages never contain personal data."""

    #: How the journal records the failed call (as :attr:`ybplug.wire.WireError.outcome`).
    outcome: Outcome = Outcome.FAILED


class VoucherLibraryError(VoucherError):
    """The library cannot be used: not found, wrong bitness, no ``EcTrans`` export, no worker."""


class VoucherRequestInvalid(VoucherError, InvalidMessage):
    """The request cannot be sent: a field holds a character GBK cannot encode.

    Also an :class:`~ybplug.fields.InvalidMessage`, so ``problems`` names each field.
    """


class VoucherCallFailed(VoucherError):
    """``EcTrans`` returned non-zero.  ``code`` is what it returned, ``cause`` any reason it wrote."""

    def __init__(self, code: int, cause: str | None = None) -> None:
        self.code = code
        self.cause = cause
        text = f"EcTrans returned {code}"
        super().__init__(f"{text}: {cause}" if cause else text)


class VoucherRefused(VoucherError):
    """The voucher service answered flag 0: the QR code was not decoded.  ``cause`` says why."""

    outcome = Outcome.REFUSED

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(f"the voucher service refused the QR code: {cause or '(no cause given)'}")


class VoucherTimeout(VoucherError, TimeoutError):
    """``EcTrans`` did not answer within ``timeout`` seconds."""

    outcome = Outcome.UNKNOWN

    def __init__(self, message: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(message)


class VoucherBusy(VoucherError):
    """The call never reached the library: it is busy, typically with a call that timed out."""


class VoucherCrashed(VoucherError):
    """The library crashed.  ``exit_code`` is the worker's exit status, ``signal`` the POSIX signal
    that killed it (``None`` when not known or not a signal)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        self.exit_code = exit_code
        self.signal = -exit_code if exit_code is not None and exit_code < 0 else None
        super().__init__(message)


class VoucherReplyUnreadable(VoucherError):
    """The reply cannot be read as the spec's JSON, even after the usual repairs."""


# --------------------------------------------------------------------------------------------
# Configuration


Convention = Literal["auto", "stdcall", "cdecl"]
BackendName = Literal["thread", "process"]


@dataclass(frozen=True)
class VoucherConfig:
    """How to reach the vendor library.

    ``library``: path (or a name the system loader finds) of ylz-certificate.dll.
    ``convention``: ``"auto"`` (stdcall on Windows, cdecl elsewhere), ``"stdcall"`` or ``"cdecl"``.
    ``backend``: ``"process"`` (isolated worker, survives crashes and hangs) or ``"thread"``.
    ``buffer_size``: bytes of the output buffer; comparable libraries want 8 to 20 KB.
    ``timeout``: seconds for a call with an ``idcode``; ``scan_timeout``: for a call without one,
    when the library shows its scanning window and waits for a person.
    ``python``: interpreter running the worker (process backend); the HIS's own by default, a
    32-bit one for a 32-bit DLL.  ``workdir``: the worker's working directory, for libraries that
    read their configuration from it (the HIS's own by default).
    """

    library: str | os.PathLike[str]
    convention: Convention = "auto"
    backend: BackendName = "process"
    buffer_size: int = 64 * 1024
    timeout: float = 15.0
    scan_timeout: float = 120.0
    python: str | None = None
    workdir: str | None = None

    def __post_init__(self) -> None:
        if not os.fspath(self.library):
            raise ValueError("VoucherConfig.library is empty: give the path of ylz-certificate.dll")
        if self.convention not in ("auto", "stdcall", "cdecl"):
            raise ValueError(f"VoucherConfig.convention must be auto, stdcall or cdecl, got {self.convention!r}")
        if self.backend not in ("thread", "process"):
            raise ValueError(f"VoucherConfig.backend must be thread or process, got {self.backend!r}")
        if isinstance(self.buffer_size, bool) or not isinstance(self.buffer_size, int) or self.buffer_size < 1024:
            raise ValueError(f"VoucherConfig.buffer_size must be at least 1024 bytes, got {self.buffer_size!r}")
        for name in ("timeout", "scan_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"VoucherConfig.{name} must be a positive number of seconds, got {value!r}")

    @property
    def path(self) -> str:
        return os.fspath(self.library)

    @property
    def calling_convention(self) -> Literal["stdcall", "cdecl"]:
        """The convention ``"auto"`` stands for on this platform."""
        if self.convention == "auto":
            return "stdcall" if sys.platform == "win32" else "cdecl"
        return self.convention


# --------------------------------------------------------------------------------------------
# Request encoding


def encode_request(request: QrRequest) -> bytes:
    """``inData`` for a request: the spec's JSON with wire names, encoded in GBK.

    ``idcode`` is always present (an empty one opens the scanning window), because a C library that
    looks a key up without checking for its absence is not something to bet a HIS on.  A character
    GBK cannot hold raises :class:`VoucherRequestInvalid` naming the field: never a ``?``.
    """
    if not isinstance(request, QrRequest):
        raise TypeError(f"expected a QrRequest, got {type(request).__name__}")
    document: dict[str, Any] = {"idcode": request.idcode, "data": msgspec.to_builtins(request.data)}
    text = msgspec.json.encode(document).decode("utf-8")
    try:
        return text.encode(_WIRE_CHARSET)
    except UnicodeEncodeError:
        raise _unencodable(document) from None


def _unencodable(document: dict[str, Any]) -> VoucherRequestInvalid:
    problems = []
    for field, label, personal, value in _text_fields(document):
        try:
            value.encode(_WIRE_CHARSET)
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


# --------------------------------------------------------------------------------------------
# Reply decoding

_UTF8_BOM = b"\xef\xbb\xbf"
_GB18030_BOM = b"\x84\x31\x95\x33"
# Where a byte scan must stop: inside a string, at its end, an escape, a control character or a
# multibyte character; outside, at a string, a bracket or a multibyte character.
_IN_STRING = re.compile(rb'["\\\x00-\x1f\x80-\xff]')
_OUTSIDE = re.compile(rb'["{}\[\]\x80-\xff]')


def decode_reply(raw: bytes) -> QrReply:
    """Read ``outData`` as the spec's reply, tolerating what real libraries send.

    The bytes are cut at the first NUL; a UTF-8 or GB18030 byte-order mark and surrounding
    whitespace are dropped; only the first complete JSON object is kept (bytes after it are
    ignored); trailing commas before ``}`` and ``]`` are removed (the spec's own example has one)
    and raw control characters inside strings are escaped, by a scanner that knows where strings
    and multibyte characters are (a GBK character's second byte may be ``\\``, ``]`` or ``}``).
    The text is GBK, else GB18030 (for names outside GBK), or UTF-8 after a UTF-8 mark.  Numbers
    and nulls in the ``data`` node become text and defaults.  Raises
    :class:`VoucherReplyUnreadable`, whose message never quotes the reply.
    """
    document = _reply_document(raw)
    try:
        return msgspec.convert(document, QrReply, strict=False)
    except msgspec.ValidationError as exc:
        raise VoucherReplyUnreadable(f"the reply does not have the spec's shape: {exc}") from None


def _reply_document(raw: bytes) -> dict[str, Any]:
    text = _reply_text(raw)
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise VoucherReplyUnreadable(f"the reply is not JSON, even after repairs ({exc})") from None
    if not isinstance(document, dict):
        raise VoucherReplyUnreadable("the reply is not a JSON object")
    if "flag" not in document:
        raise VoucherReplyUnreadable("the reply has no flag")
    if isinstance(document.get("cause"), (int, float)) and not isinstance(document["cause"], bool):
        document["cause"] = str(document["cause"])
    data = document.get("data")
    if isinstance(data, str):  # some builds send the data node as a JSON string, or ""
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


def _reply_text(raw: bytes) -> str:
    data = raw.split(b"\0", 1)[0].strip()
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


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """A library's cause text, with the request's QR code and anything like an ID number masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, mask(secret))
    return scrub(text)


def _identity(code: int, raw: bytes, *, buffer_size: int, secrets: Iterable[str]) -> QrIdentity:
    """The identity in a reply, or the typed error the reply amounts to."""
    secrets = tuple(secrets)
    if len(raw) >= buffer_size:
        raise VoucherReplyUnreadable(
            f"the reply filled the whole {buffer_size}-byte output buffer and may have run past it: "
            "raise buffer_size"
        )
    if code != 0:
        try:
            cause = _reply_document(raw).get("cause")
        except VoucherReplyUnreadable:
            cause = None
        raise VoucherCallFailed(code, _scrub(cause, secrets) if isinstance(cause, str) and cause else None)
    reply = decode_reply(raw)
    if reply.flag != 1:
        raise VoucherRefused(_scrub(reply.cause or "", secrets))
    if reply.data is None:
        raise VoucherReplyUnreadable("the reply says flag 1 but has no data node")
    return reply.data


# --------------------------------------------------------------------------------------------
# Loading the library and the worker program.  These three functions use only the standard
# library and Python 3.8 syntax: their source is the worker process's program.


def _load_ectrans(path: str, convention: str) -> Any:
    """Load the library and return its ``EcTrans`` with argument and result types declared.

    Raises ``OSError`` with a message naming the path (and a hint for the usual causes).
    """
    import ctypes
    import os
    import struct

    if (os.sep in path or (os.altsep and os.altsep in path)) and not os.path.exists(path):
        raise OSError(f"voucher library not found: {path}")
    try:
        if convention == "stdcall":
            loader = getattr(ctypes, "WinDLL", None)
            if loader is None:
                raise OSError("the stdcall convention exists only on Windows: use cdecl")
            library = loader(path)
        else:
            library = ctypes.CDLL(path)
    except OSError as exc:
        hint = ""
        winerror = getattr(exc, "winerror", None)
        if winerror == 193 or "wrong ELF class" in str(exc):
            bits = 8 * struct.calcsize("P")
            hint = (
                f" (this Python is {bits}-bit and the library is not; a 32-bit DLL cannot load into"
                ' 64-bit Python: use backend = "process" with a 32-bit python)'
            )
        elif winerror == 126:
            hint = " (a DLL it depends on is missing: put the vendor's other DLLs beside it)"
        raise OSError(f"cannot load the voucher library {path}: {exc}{hint}") from None
    for name in ("EcTrans", "_EcTrans@8"):
        try:
            function = getattr(library, name)
        except AttributeError:
            continue
        function.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        function.restype = ctypes.c_int
        return function
    raise OSError(f"the library {path} does not export EcTrans: is it the voucher library?")


def _watch_parent(parent: int) -> None:
    """Exit the worker when the HIS process dies, even while EcTrans hangs.

    An orphaned worker would keep the library's scanner, port or licence busy for good.
    """
    import os
    import sys
    import threading
    import time

    def watch() -> None:
        if sys.platform == "win32":
            import ctypes

            kernel32 = getattr(ctypes, "windll").kernel32
            kernel32.OpenProcess.restype = ctypes.c_void_p
            kernel32.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
            handle = kernel32.OpenProcess(0x00100000, False, parent)  # SYNCHRONIZE
            if not handle:
                return
            kernel32.WaitForSingleObject(handle, 0xFFFFFFFF)  # INFINITE
        else:
            original = os.getppid()  # a POSIX orphan is re-parented: its parent id changes
            while os.getppid() == original:
                time.sleep(0.5)
        os._exit(70)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(argv: list[str]) -> int:
    """The worker process: load the library once, then answer framed requests until stdin ends.

    argv: library path, convention, output buffer bytes (guard included), the HIS's process id.
    The frames use private copies of stdin and stdout; fd 1 is pointed at stderr and fd 0 at the
    null device, so a library that prints to the console cannot corrupt them.
    """
    import ctypes
    import os
    import struct
    import sys

    path, convention, size, parent = argv[0], argv[1], int(argv[2]), int(argv[3])
    requests, replies = os.dup(0), os.dup(1)
    sink = os.open(os.devnull, os.O_RDWR)
    os.dup2(sink, 0)
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (a GUI parent): the library's output goes nowhere
        os.dup2(sink, 1)
    os.close(sink)
    if sys.platform == "win32":
        import msvcrt

        msvcrt.setmode(requests, os.O_BINARY)
        msvcrt.setmode(replies, os.O_BINARY)
    _watch_parent(parent)

    def send(kind: int, code: int, body: bytes) -> None:
        data = struct.pack(_REPLY_HEAD, kind, code, len(body)) + body
        while data:
            data = data[os.write(replies, data):]

    def receive(count: int) -> bytes | None:
        chunks = []
        while count:
            chunk = os.read(requests, min(count, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    try:
        function = _load_ectrans(path, convention)
    except OSError as exc:
        send(_FRAME_LOAD_FAILED, 0, str(exc).encode("utf-8", "replace"))
        return 2
    output = ctypes.create_string_buffer(size)
    bits = 8 * struct.calcsize("P")
    send(_FRAME_READY, 0, f"Python {sys.version.split()[0]}, {bits}-bit".encode())
    head_size = struct.calcsize(_REQUEST_HEAD)
    while True:
        head = receive(head_size)
        if head is None:
            return 0
        payload = receive(struct.unpack(_REQUEST_HEAD, head)[0])
        if payload is None:
            return 0
        ctypes.memset(output, 0, size)
        request = ctypes.create_string_buffer(payload)
        try:
            code = function(request, output)
        except OSError as exc:  # Windows turns an access violation inside the call into OSError
            send(_FRAME_CALL_FAILED, 0, str(exc).encode("utf-8", "replace"))
            return 3
        send(_FRAME_REPLY, code, output.value)


@functools.cache
def _worker_source() -> str | None:
    """The worker program for ``python -I -c``; ``None`` when the source is not available
    (a frozen or byte-code-only install), in which case ``-m ybplug.binding --serve`` is used."""
    try:
        functions = "\n\n".join(inspect.getsource(f) for f in (_load_ectrans, _watch_parent, _serve))
    except (OSError, TypeError):
        return None
    constants = {
        "_REQUEST_HEAD": _REQUEST_HEAD,
        "_REPLY_HEAD": _REPLY_HEAD,
        "_FRAME_READY": _FRAME_READY,
        "_FRAME_LOAD_FAILED": _FRAME_LOAD_FAILED,
        "_FRAME_REPLY": _FRAME_REPLY,
        "_FRAME_CALL_FAILED": _FRAME_CALL_FAILED,
    }
    header = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    return (
        "from __future__ import annotations\n"
        f"{header}\n\n{functions}\n\n"
        "import sys\n"
        "sys.exit(_serve(sys.argv[1:]))\n"
    )


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    windows = {0xC0000005: "access violation", 0xC00000FD: "stack overflow", 0xC0000409: "fail-fast"}
    if code in windows:
        return f"exit code {code:#x} ({windows[code]})"
    if sys.platform == "win32" and code == 3:
        return "exit code 3 (abort)"
    return f"exit code {code}"


# --------------------------------------------------------------------------------------------
# Backends


class _Backend(Protocol):
    name: str

    async def start(self, timeout: float) -> None: ...

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


def _timeout_message(timeout: float, scanning: bool, consequence: str) -> str:
    what = "with its scanning window open (scan_timeout)" if scanning else "(timeout)"
    return f"EcTrans did not answer within {timeout:g} s {what}; {consequence}"


class _Job:
    """One EcTrans call handed to a library thread.

    Three threads touch it (the event loop, an anyio worker waiting for it, the library thread),
    so ``abandoned`` and ``started`` change under ``lock``.  ``payload`` ``None`` only loads.
    """

    def __init__(self, payload: bytes | None, output_size: int) -> None:
        self.payload = payload
        self.output_size = output_size
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.started: float | None = None
        self.abandoned = False
        self.code = 0
        self.raw = b""
        self.error: VoucherError | None = None
        #: Called by the library thread once ``done`` is set (wakes the event loop directly).
        self.notify: Any = None


class _LibraryThread:
    """The one thread that calls a given library in this process.

    One per library (not per :class:`Voucher`), so two Vouchers on the same DLL still never call
    it concurrently, and the library always sees the same thread (libraries that open a window
    or keep thread-local state want that).  It is a daemon: a call that never returns does not
    keep the HIS from exiting, which an anyio worker thread (not a daemon) would.
    """

    def __init__(self, path: str, convention: str) -> None:
        self.path = path
        self.convention = convention
        self.current: _Job | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._function: Any = None
        self._buffer: ctypes.Array[ctypes.c_char] | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: _Job) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ybplug-ectrans", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def stuck_for(self) -> float | None:
        """Seconds the current call has run, if its caller gave up on it (it timed out)."""
        job = self.current
        if job is None or not job.abandoned or job.started is None:
            return None
        return time.monotonic() - job.started

    def _run(self) -> None:
        while True:
            self._serve(self._jobs.get())

    def _serve(self, job: _Job) -> None:
        with job.lock:
            if job.abandoned:  # its caller timed out while it queued: never run it
                job.done.set()
                _notify(job)
                return
            job.started = time.monotonic()
            self.current = job
        calling = False
        try:
            if self._function is None:
                self._function = _load_ectrans(self.path, self.convention)
                logger.info("voucher library %s loaded (%s)", self.path, self.convention)
            if job.payload is not None:
                buffer = self._output(job.output_size)
                ctypes.memset(buffer, 0, ctypes.sizeof(buffer))
                request = ctypes.create_string_buffer(job.payload)
                calling = True
                job.code = int(self._function(request, buffer))
                job.raw = buffer.value
        except OSError as exc:
            if calling:  # Windows: an access violation inside EcTrans, caught by ctypes
                job.error = VoucherCrashed(
                    f"the voucher library crashed inside EcTrans ({exc}); this process may now be "
                    'unstable: use backend = "process" to isolate the library'
                )
            else:
                job.error = VoucherLibraryError(str(exc))
        except Exception as exc:  # pragma: no cover - ctypes raises nothing else here
            job.error = VoucherError(f"EcTrans raised {type(exc).__name__}")
        finally:
            with job.lock:
                self.current = None
            job.done.set()
            _notify(job)

    def _output(self, size: int) -> ctypes.Array[ctypes.c_char]:
        """The reused output buffer, grown (never shrunk) to ``size`` plus the guard zone."""
        if self._buffer is None or ctypes.sizeof(self._buffer) < size + _GUARD:
            self._buffer = ctypes.create_string_buffer(size + _GUARD)
        return self._buffer


_library_threads: dict[tuple[str, str], _LibraryThread] = {}
_library_threads_lock = threading.Lock()


def _library_thread(path: str, convention: str) -> _LibraryThread:
    key = (os.path.realpath(path) if os.path.exists(path) else path, convention)
    with _library_threads_lock:
        thread = _library_threads.get(key)
        if thread is None:
            thread = _library_threads[key] = _LibraryThread(path, convention)
        return thread


def _notify(job: _Job) -> None:
    if job.notify is not None:
        try:
            job.notify()
        except RuntimeError:  # the caller's event loop is closed: nobody is waiting any more
            pass


class _ThreadBackend:
    """EcTrans on the library thread of this process; see the module docstring for its limits."""

    name = "thread"

    def __init__(self, config: VoucherConfig) -> None:
        self._config = config
        self._library = _library_thread(config.path, config.calling_convention)
        self._limiter: anyio.CapacityLimiter | None = None

    async def start(self, timeout: float) -> None:
        await self._run(_Job(None, self._config.buffer_size), timeout, scanning=False)

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        job = await self._run(_Job(payload, self._config.buffer_size), timeout, scanning=scanning)
        if len(job.raw) >= self._config.buffer_size:
            logger.warning("EcTrans wrote to the end of its output buffer: memory past it may be damaged")
        return job.code, job.raw

    async def aclose(self) -> None:
        """Nothing to release: the library thread is shared and idles on its queue."""

    def _busy(self, stuck: float) -> VoucherBusy:
        return VoucherBusy(
            f"the voucher library is still busy with a call that timed out (started {stuck:.1f} s ago); "
            "a hung call cannot be stopped in the thread backend, so calls fail at once until it "
            'returns: use backend = "process" to survive hangs'
        )

    async def _run(self, job: _Job, timeout: float, *, scanning: bool) -> _Job:
        stuck = self._library.stuck_for()
        if stuck is not None:
            raise self._busy(stuck)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        started = False
        # One hop: the library thread wakes the event loop itself when the call is done, instead
        # of an anyio worker thread waiting for it (a second thread switch per call).
        loop = asyncio.get_running_loop()
        finished = anyio.Event()
        job.notify = lambda: loop.call_soon_threadsafe(finished.set)
        try:
            with anyio.move_on_after(timeout):
                async with self._limiter:
                    stuck = self._library.stuck_for()
                    if stuck is not None:
                        raise self._busy(stuck)
                    self._library.submit(job)
                    await finished.wait()
        finally:
            if not job.done.is_set():
                with job.lock:
                    job.abandoned = True
                    started = job.started is not None
        if job.done.is_set():  # finished, possibly right at the deadline
            if job.error is not None:
                raise job.error
            return job
        if started:
            logger.warning("EcTrans timed out after %g s; the library stays busy until the call returns", timeout)
            raise VoucherTimeout(
                _timeout_message(
                    timeout, scanning,
                    "the call cannot be stopped in the thread backend: the library stays busy until "
                    'it returns (use backend = "process" to survive hangs)',
                ),
                timeout,
            )
        raise VoucherBusy(
            f"waited {timeout:g} s but the voucher library was busy with another call the whole time"
        )


class _ProcessBackend:
    """EcTrans in a worker process that a crash or a hang may take down, not the HIS."""

    name = "process"

    def __init__(self, config: VoucherConfig) -> None:
        self._config = config
        self._process: anyio.abc.Process | None = None
        self._replies: BufferedByteReceiveStream | None = None
        self._lock: anyio.Lock | None = None
        self._closed = False
        self._starting = False

    def _guard(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def start(self, timeout: float) -> None:
        with anyio.move_on_after(timeout) as scope:
            async with self._guard():
                if self._process is None:
                    await self._spawn()
        if scope.cancelled_caught:
            raise VoucherTimeout(f"the voucher worker did not load the library within {timeout:g} s", timeout)

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        reached = False
        result: tuple[int, bytes] | None = None
        with anyio.move_on_after(timeout):
            async with self._guard():
                reached = True
                result = await self._exchange(payload)
        if result is not None:
            return result
        if not reached:
            raise VoucherBusy(f"waited {timeout:g} s but the voucher library was busy with another call the whole time")
        if self._starting:
            message = f"the voucher worker did not load the library within {timeout:g} s; it was killed"
        else:
            message = _timeout_message(timeout, scanning, "the worker was killed and the next call starts a new one")
        logger.warning("EcTrans timed out after %g s; voucher worker killed", timeout)
        raise VoucherTimeout(message, timeout)

    async def aclose(self) -> None:
        self._closed = True
        process = self._process
        if process is None:
            return
        if self._lock is not None and self._lock.locked():
            await self._discard()  # a call may be hung: do not wait for it
            return
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                with contextlib.suppress(Exception):
                    await process.stdin.aclose()  # end of requests: the worker returns 0
        await self._discard(grace=2.0)

    async def _exchange(self, payload: bytes) -> tuple[int, bytes]:
        """One request and its reply; the caller holds the lock.  Anything unexpected, including
        cancellation, kills the worker: its state (maybe mid-call) is no longer known."""
        if self._closed:
            raise VoucherError("the voucher is closed")
        try:
            if self._process is None:
                await self._spawn()
            await self._send(struct.pack(_REQUEST_HEAD, len(payload)) + payload)
            kind, code, body = await self._receive()
        except BaseException:
            await self._discard()
            raise
        if kind == _FRAME_REPLY:
            if len(body) >= self._config.buffer_size:
                await self._discard()  # it wrote to the end of its buffer: its heap may be damaged
            return code, body
        await self._discard()
        if kind == _FRAME_CALL_FAILED:
            raise VoucherCrashed(f"the voucher library crashed inside EcTrans ({body.decode('utf-8', 'replace')})")
        raise VoucherReplyUnreadable(f"the voucher worker sent an unexpected frame (kind {kind})")

    def _command(self) -> list[str]:
        python = self._config.python or sys.executable
        if not python or (getattr(sys, "frozen", False) and not self._config.python):
            raise VoucherLibraryError(
                "no Python interpreter to run the voucher worker: set python in the voucher config"
            )
        arguments = [
            self._config.path,
            self._config.calling_convention,
            str(self._config.buffer_size + _GUARD),
            str(os.getpid()),
        ]
        source = _worker_source()
        if source is not None:
            return [python, "-I", "-c", source, *arguments]
        return [python, "-I", "-m", "ybplug.binding", "--serve", *arguments]

    async def _spawn(self) -> None:
        self._starting = True
        try:
            command = self._command()
            try:
                process = await anyio.open_process(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None,  # the library's console output lands where the HIS's does
                    cwd=self._config.workdir,
                    start_new_session=sys.platform != "win32",
                    creationflags=0x08000000 if sys.platform == "win32" else 0,  # CREATE_NO_WINDOW
                )
            except OSError as exc:
                raise VoucherLibraryError(f"cannot start the voucher worker with {command[0]}: {exc}") from None
            self._process = process
            assert process.stdout is not None
            self._replies = BufferedByteReceiveStream(process.stdout)
            kind, _, body = await self._receive()
            if kind == _FRAME_LOAD_FAILED:
                raise VoucherLibraryError(body.decode("utf-8", "replace"))
            if kind != _FRAME_READY:
                raise VoucherReplyUnreadable(f"the voucher worker sent an unexpected frame (kind {kind})")
            logger.info(
                "voucher worker %d ready (%s) for %s", process.pid, body.decode("utf-8", "replace"),
                self._config.path,
            )
        except BaseException:
            await self._discard()
            raise
        finally:
            self._starting = False

    async def _send(self, frame: bytes) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            await process.stdin.send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise await self._died() from None

    async def _receive(self) -> tuple[int, int, bytes]:
        replies = self._replies
        assert replies is not None
        head_size = struct.calcsize(_REPLY_HEAD)
        try:
            kind, code, length = struct.unpack(_REPLY_HEAD, await replies.receive_exactly(head_size))
            if kind not in _FRAME_KINDS or length > self._config.buffer_size + 2 * _GUARD:
                raise VoucherReplyUnreadable(
                    "the voucher worker's reply frame is garbled (did something write to its stdout?)"
                )
            body = await replies.receive_exactly(length) if length else b""
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise await self._died() from None
        return kind, code, body

    async def _died(self) -> VoucherError:
        """The worker's pipe broke: reap it and say how it ended."""
        code = await self._discard(grace=2.0)
        if self._closed:
            return VoucherError("the voucher was closed during the call")
        where = "while loading the library" if self._starting else "inside EcTrans"
        logger.warning("voucher worker died %s: %s", where, _describe_exit(code))
        return VoucherCrashed(
            f"the voucher library crashed the worker process {where} ({_describe_exit(code)}); "
            "the next call starts a new worker",
            code,
        )

    async def _discard(self, grace: float = 0.0) -> int | None:
        """Forget the worker: let it exit for ``grace`` seconds, then kill it; its exit code."""
        process, self._process, self._replies = self._process, None, None
        if process is None:
            return None
        with anyio.CancelScope(shield=True):
            if grace > 0 and process.returncode is None:
                with anyio.move_on_after(grace):
                    await process.wait()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, OSError):
                    process.kill()
            with anyio.move_on_after(5):
                await process.wait()
            with anyio.move_on_after(1), contextlib.suppress(Exception):
                await process.aclose()
        return process.returncode


# --------------------------------------------------------------------------------------------
# The public entry


class Voucher:
    """Decodes e-voucher QR codes through the vendor library, with the backend the config names.

    Use it as an async context manager (which loads the library on entry, so a wrong path shows
    at startup) or call :meth:`start` and :meth:`aclose` yourself.
    """

    def __init__(self, config: VoucherConfig) -> None:
        self.config = config
        self._backend: _Backend = (
            _ProcessBackend(config) if config.backend == "process" else _ThreadBackend(config)
        )
        self._closed = False

    async def __aenter__(self) -> Voucher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load the library now (the process backend starts its worker) rather than at the first
        decode.  Raises :class:`VoucherLibraryError` when it cannot be loaded."""
        self._check_open()
        await self._backend.start(self.config.timeout)

    async def decode(self, request: QrRequest) -> QrIdentity:
        """Decode one QR code (or, with an empty ``idcode``, let the library scan one).

        Returns the insured person's identity.  Raises :class:`VoucherRequestInvalid`,
        :class:`VoucherCallFailed`, :class:`VoucherRefused`, :class:`VoucherTimeout`,
        :class:`VoucherBusy`, :class:`VoucherCrashed`, :class:`VoucherReplyUnreadable` or
        :class:`VoucherLibraryError`, all of them :class:`VoucherError`.
        """
        self._check_open()
        payload = encode_request(request)
        scanning = not request.idcode
        timeout = self.config.scan_timeout if scanning else self.config.timeout
        began = time.monotonic()
        try:
            code, raw = await self._backend.call(payload, timeout, scanning)
            identity = _identity(code, raw, buffer_size=self.config.buffer_size, secrets=(request.idcode,))
        except VoucherError as exc:
            # A refusal (an expired code) is business as usual; anything else needs a look.
            level = logging.INFO if isinstance(exc, VoucherRefused) else logging.WARNING
            logger.log(
                level, "EcTrans failed after %.0f ms (%s backend): %s: %s",
                1000 * (time.monotonic() - began), self._backend.name, type(exc).__name__, exc,
            )
            raise
        logger.debug("EcTrans decoded a QR code in %.0f ms (%s backend)", 1000 * (time.monotonic() - began),
                     self._backend.name)
        return identity

    async def aclose(self) -> None:
        """Stop the worker process, if any.  Further decodes raise :class:`VoucherError`."""
        if self._closed:
            return
        self._closed = True
        await self._backend.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise VoucherError("this Voucher is closed")


if __name__ == "__main__":  # the worker, when its source cannot be passed with -c
    if sys.argv[1:2] == ["--serve"] and len(sys.argv) == 6:
        sys.exit(_serve(sys.argv[2:]))
    print("usage: python -m ybplug.binding --serve LIBRARY CONVENTION BUFFER_BYTES PARENT_PID", file=sys.stderr)
    sys.exit(2)
