"""The process backend: EcTrans in a worker process that a crash or a hang may take down, not the HIS.

The worker (:mod:`ybplug.voucher.worker`, run as a script by path under ``python -I``) loads the
library once and serves many calls over its stdin/stdout with length-prefixed frames.  A crash
(segfault, abort) or a hang kills only the worker: the caller gets :class:`VoucherCrashed` or
:class:`VoucherTimeout` within its timeout, a hung worker is killed, and the next call starts a
fresh one.

Calls are serialised, one at a time per Voucher.  A call queued behind another waits for it, and
every call ahead of it is bounded by its own timeout (a hung call's worker is killed at its
deadline), so a call queued behind a hang waits only until the hung call's deadline, then for a
fresh worker (bounded by ``timeout``, at least :data:`START_MIN`), then gets its own full timeout: it is not failed for the
other call's hang.

The worker gets the HIS's environment without ybplug's own settings (``YBPLUG_PWD`` and every
other ``YBPLUG_`` variable), anything named like a password, secret, token, credential or key, nor
any value that carries a password (a URL with one, a connection string's ``Password=``): a vendor
library has no business with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from ybplug.voucher import worker
from ybplug.voucher.backend import GUARD, timeout_message
from ybplug.voucher.codec import WIRE_CHARSET
from ybplug.voucher.config import VoucherConfig
from ybplug.voucher.errors import (
    VoucherCrashed,
    VoucherError,
    VoucherLibraryError,
    VoucherReplyUnreadable,
    VoucherTimeout,
)

__all__ = ["ProcessBackend", "worker_command", "worker_environment"]

logger = logging.getLogger("ybplug.voucher")

#: Seconds a worker always gets to start and load the library.
START_MIN = 5.0

#: Names a secret goes by: ybplug's settings; PASS, PWD, SECRET, TOKEN, CREDENTIAL anywhere in the
#: name (PGPASSWORD, HIS_DB_PASS, ORACLE_PWD, HIS_CREDENTIALS); KEY, PW, AUTH as a part of it
#: (MY_API_KEY, AWS_SECRET_ACCESS_KEY, DB_PW) or APIKEY.  A harmless name caught too (BYPASS_X) costs
#: nothing: a vendor library needs PATH, SystemRoot, TEMP and the like.
_SECRET_NAME = re.compile(
    r"^YBPLUG_|PASS|PWD|SECRET|TOKEN|CREDENTIAL|APIKEY|(^|[_.-])(KEY|PW|AUTH)([_.-]|$)", re.IGNORECASE
)
#: Values that carry a password whatever their name: a URL with one (postgresql://his:pw@db/his),
#: a connection string's Password=/Pwd= (an ODBC or ADO.NET one on Windows).
_SECRET_VALUE = re.compile(r"://[^/@\s]*:[^@\s]*@|(^|[;\s])(password|pwd)\s*=", re.IGNORECASE)


def worker_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the HIS's, less ybplug's settings and anything secret-looking
    (by its name or by its value)."""
    source = os.environ if environ is None else environ
    return {
        name: value for name, value in source.items()
        if not _SECRET_NAME.search(name) and not _SECRET_VALUE.search(value)
    }


def worker_script() -> Path | None:
    """The worker's source file; None in a byte-code-only or frozen install."""
    path = Path(worker.__file__)
    return path if path.suffix == ".py" and path.is_file() else None


def worker_command(config: VoucherConfig, script: Path | None = None) -> list[str]:
    """The worker's command line: ``python -I worker.py LIBRARY CONVENTION BYTES PID``, or
    ``python -I -m ybplug.voucher.worker ...`` when there is no source file to run."""
    python = config.python or sys.executable
    if not python or (getattr(sys, "frozen", False) and not config.python):
        raise VoucherLibraryError("no Python interpreter to run the voucher worker: set python in the voucher config")
    arguments = [config.path, config.calling_convention, str(config.buffer_size + GUARD), str(os.getpid())]
    if script is not None:
        return [python, "-I", str(script), *arguments]
    return [python, "-I", "-m", "ybplug.voucher.worker", *arguments]


def describe_exit(code: int | None) -> str:
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


class ProcessBackend:
    """EcTrans in a worker process."""

    name = "process"
    charset = WIRE_CHARSET

    def __init__(self, config: VoucherConfig) -> None:
        self._config = config
        self._process: anyio.abc.Process | None = None
        self._replies: BufferedByteReceiveStream | None = None
        self._lock: anyio.Lock | None = None
        self._closed = False
        self._starting = False
        #: Which worker script to run (tests point it elsewhere); None: ``-m``.
        self.script = worker_script()

    def _guard(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def start(self, timeout: float) -> None:
        async with self._guard():
            await self._ensure_worker(timeout)

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        # No deadline on the wait for the lock: whoever holds it is bounded by its own timeout.
        async with self._guard():
            await self._ensure_worker(self._config.timeout)
            result: tuple[int, bytes] | None = None
            with anyio.move_on_after(timeout):
                result = await self._exchange(payload)
        if result is not None:
            return result
        logger.warning("EcTrans timed out after %g s; voucher worker killed", timeout)
        raise VoucherTimeout(
            timeout_message(timeout, scanning, "the worker was killed and the next call starts a new one"), timeout
        )

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

    async def _ensure_worker(self, timeout: float) -> None:
        """Start a worker if there is none, within ``timeout`` (at least :data:`START_MIN`: starting
        an interpreter on a loaded machine may take longer than a short call timeout); the caller
        holds the lock."""
        timeout = max(timeout, START_MIN)
        if self._closed:
            raise VoucherError("the voucher is closed")
        if self._process is not None:
            return
        with anyio.move_on_after(timeout) as scope:
            await self._spawn()
        if scope.cancelled_caught:
            raise VoucherTimeout(
                f"the voucher worker did not load the library within {timeout:g} s; it was killed", timeout
            )

    async def _exchange(self, payload: bytes) -> tuple[int, bytes]:
        """One request and its reply; the caller holds the lock.  Anything unexpected, including
        cancellation, kills the worker: its state (maybe mid-call) is no longer known."""
        try:
            await self._send(struct.pack(worker.REQUEST_HEAD, len(payload)) + payload)
            kind, code, body = await self._receive()
        except BaseException:
            await self._discard()
            raise
        if kind == worker.FRAME_REPLY:
            if len(body) >= self._config.buffer_size:
                await self._discard()  # it wrote to the end of its buffer: its heap may be damaged
            return code, body
        await self._discard()
        if kind == worker.FRAME_CALL_FAILED:
            raise VoucherCrashed(f"the voucher library crashed inside EcTrans ({body.decode('utf-8', 'replace')})")
        raise VoucherReplyUnreadable(f"the voucher worker sent an unexpected frame (kind {kind})")

    async def _spawn(self) -> None:
        self._starting = True
        try:
            command = worker_command(self._config, self.script)
            try:
                process = await anyio.open_process(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None,  # the library's console output lands where the HIS's does
                    cwd=self._config.workdir,
                    env=worker_environment(),
                    start_new_session=sys.platform != "win32",
                    creationflags=0x08000000 if sys.platform == "win32" else 0,  # CREATE_NO_WINDOW
                )
            except OSError as exc:
                raise VoucherLibraryError(f"cannot start the voucher worker with {command[0]}: {exc}") from None
            self._process = process
            assert process.stdout is not None
            self._replies = BufferedByteReceiveStream(process.stdout)
            kind, _, body = await self._receive()
            if kind == worker.FRAME_LOAD_FAILED:
                raise VoucherLibraryError(body.decode("utf-8", "replace"))
            if kind != worker.FRAME_READY:
                raise VoucherReplyUnreadable(f"the voucher worker sent an unexpected frame (kind {kind})")
            logger.info(
                "voucher worker %d ready (%s) for %s", process.pid, body.decode("utf-8", "replace"), self._config.path
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
        head_size = struct.calcsize(worker.REPLY_HEAD)
        try:
            kind, code, length = struct.unpack(worker.REPLY_HEAD, await replies.receive_exactly(head_size))
            if kind not in worker.FRAME_KINDS or length > self._config.buffer_size + 2 * GUARD:
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
        aborted = sys.platform == "win32" and code == 3  # abort() in the library, on Windows
        if self._starting and code is not None and 0 <= code < 0xC0000000 and not aborted:
            # An exit status, no signal (nor a Windows exception code) before even the library's
            # load was answered: the interpreter did not run the worker (python = "/bin/false",
            # a Python too old for it), which is no crash of the library.
            return VoucherLibraryError(
                f"the voucher worker's interpreter could not start the worker ({self._config.python or sys.executable}"
                f" ended with {describe_exit(code)} before loading the library); check `python` in [voucher]"
            )
        where = "while loading the library" if self._starting else "inside EcTrans"
        logger.warning("voucher worker died %s: %s", where, describe_exit(code))
        return VoucherCrashed(
            f"the voucher library crashed the worker process {where} ({describe_exit(code)}); "
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
