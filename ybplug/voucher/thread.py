"""The thread backend: EcTrans called inside the HIS process, on one dedicated thread per library.

It is faster to start than the process backend and needs no second interpreter, but it survives
neither a crash (the HIS process dies with the library) nor a hang: a thread cannot be killed, so
after a timeout the library stays busy until the hung call returns by itself.  Calls do not queue
behind a hung call: one made while a call is stuck fails at once with :class:`VoucherBusy`, and
calls queued behind a call are dropped (failing with :class:`VoucherBusy` at once) the moment
that call times out.  One thread per library (not per Voucher), so two Vouchers on the same DLL
never call it concurrently, and the library always sees the same thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from typing import Any

import anyio

from ybplug.dedicated import DedicatedThread, Job
from ybplug.voucher.backend import GUARD, timeout_message
from ybplug.voucher.codec import WIRE_CHARSET
from ybplug.voucher.config import VoucherConfig
from ybplug.voucher.errors import VoucherBusy, VoucherCrashed, VoucherLibraryError, VoucherTimeout
from ybplug.voucher.worker import load_ectrans

__all__ = ["ThreadBackend"]

logger = logging.getLogger("ybplug.voucher")

_HUNG = 'a hung call cannot be stopped in the thread backend: use backend = "process" to survive hangs'


class _Library:
    """The library as seen from its thread: loaded on first use, one reused output buffer."""

    def __init__(self, path: str, convention: str) -> None:
        self.path = path
        self.convention = convention
        self.thread = DedicatedThread("ybplug-ectrans")
        self._function: Any = None
        self._buffer: ctypes.Array[ctypes.c_char] | None = None

    def load(self) -> None:
        """(library thread) Load the library once."""
        if self._function is None:
            try:
                self._function = load_ectrans(self.path, self.convention)
            except OSError as exc:
                raise VoucherLibraryError(str(exc)) from None
            logger.info("voucher library %s loaded (%s)", self.path, self.convention)

    def call(self, payload: bytes, size: int) -> tuple[int, bytes]:
        """(library thread) One EcTrans call into the reused buffer of ``size`` plus the guard."""
        self.load()
        if self._buffer is None or ctypes.sizeof(self._buffer) < size + GUARD:
            self._buffer = ctypes.create_string_buffer(size + GUARD)
        buffer = self._buffer
        ctypes.memset(buffer, 0, ctypes.sizeof(buffer))
        request = ctypes.create_string_buffer(payload)
        try:
            code = int(self._function(request, buffer))
        except OSError as exc:  # Windows: an access violation inside EcTrans, caught by ctypes
            raise VoucherCrashed(
                f"the voucher library crashed inside EcTrans ({exc}); this process may now be "
                'unstable: use backend = "process" to isolate the library'
            ) from None
        return code, buffer.value

    def stuck_for(self) -> float | None:
        """Seconds the current call has run, if its caller gave up on it (it timed out)."""
        job = self.thread.current()
        if job is None or not job.abandoned or job.started is None:
            return None
        return self.thread.busy_for()


_libraries: dict[tuple[str, str], _Library] = {}
_libraries_lock = threading.Lock()


def _library(path: str, convention: str) -> _Library:
    key = (os.path.realpath(path) if os.path.exists(path) else path, convention)
    with _libraries_lock:
        library = _libraries.get(key)
        if library is None:
            library = _libraries[key] = _Library(path, convention)
        return library


class ThreadBackend:
    """EcTrans on the library thread of this process."""

    name = "thread"
    charset = WIRE_CHARSET

    def __init__(self, config: VoucherConfig) -> None:
        self._config = config
        self._library = _library(config.path, config.calling_convention)

    async def start(self, timeout: float) -> None:
        await self._run(self._library.thread.submit(self._library.load), timeout, scanning=False)

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        self._check_stuck()
        job = self._library.thread.submit(self._library.call, payload, self._config.buffer_size)
        code, raw = await self._run(job, timeout, scanning=scanning)
        if len(raw) >= self._config.buffer_size:
            logger.warning("EcTrans wrote to the end of its output buffer: memory past it may be damaged")
        return code, raw

    async def aclose(self) -> None:
        """Nothing to release: the library thread is shared and idles on its queue."""

    def _check_stuck(self) -> None:
        stuck = self._library.stuck_for()
        if stuck is not None:
            raise VoucherBusy(
                f"the voucher library is still busy with a call that timed out (started {stuck:.1f} s ago); "
                f"{_HUNG}; calls fail at once until it returns"
            )

    async def _run(self, job: Job[Any], timeout: float, *, scanning: bool) -> Any:
        with anyio.move_on_after(timeout):
            try:
                await job.wait()
            except BaseException:
                job.drop()
                raise
        if job.state == Job.DONE:  # finished, possibly right at the deadline
            return job.outcome()
        if job.state == Job.DROPPED:  # dropped when the call ahead of it hung
            self._check_stuck()
            raise VoucherBusy("the voucher library was busy with another call (dropped from the queue)")
        if job.drop():  # still queued at its own deadline: it never reached the library
            raise VoucherBusy(
                f"waited {timeout:g} s but the voucher library was busy with another call the whole time"
            )
        if job.state == Job.DONE:  # it finished between the deadline and the drop
            return job.outcome()
        dropped = self._library.thread.drop_pending()  # nobody may queue behind a hung call
        logger.warning(
            "EcTrans timed out after %g s; the library stays busy until the call returns (%d queued calls failed)",
            timeout, dropped,
        )
        raise VoucherTimeout(timeout_message(timeout, scanning, f"the library stays busy until it returns ({_HUNG})"), timeout)

