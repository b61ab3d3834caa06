"""The python backend: EcTrans as a Python function, for a library with no C ABI to load.

``library = "package.module:function"`` names a callable ``EcTrans(in_data: bytes) -> (code,
out_data)``: the same bytes a C library takes and gives (``inData`` in GBK, its return code and
``outData``).  The sandbox's pure-Python fake, :func:`ybplug.sandbox.ectrans.fake_ectrans`, is
the one it was made for: a hospital developer's Windows desk has no C compiler to build the C
test library, and the demo and :mod:`ybplug.testing` must still decode QR codes there.

The function runs on a worker thread, one call at a time (a vendor library is not safe to call
concurrently, and a fake must not teach otherwise); a call past its timeout raises
:class:`VoucherTimeout` and is left to finish on its own, and until it has, a call fails at once
with :class:`VoucherBusy` (as in the thread backend) rather than run beside it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from ybplug.voucher.backend import timeout_message
from ybplug.voucher.codec import WIRE_CHARSET
from ybplug.voucher.config import VoucherConfig
from ybplug.voucher.errors import VoucherBusy, VoucherError, VoucherLibraryError, VoucherTimeout

__all__ = ["PythonBackend", "resolve_function"]

EcTransFunction = Callable[[bytes], tuple[int, bytes]]


def resolve_function(spec: str) -> EcTransFunction:
    """``"module:function"`` -> the function; :class:`VoucherLibraryError` naming what is wrong."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise VoucherLibraryError(f'backend = "python" needs library = "module:function", got {spec!r}')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise VoucherLibraryError(f"voucher library {spec}: cannot import {module_name} ({exc})") from None
    function: Any = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
    if not callable(function):
        raise VoucherLibraryError(f"voucher library {spec}: {module_name} has no function {attribute}")
    return function  # type: ignore[no-any-return]


class PythonBackend:
    """EcTrans as a Python callable, run on a worker thread one call at a time."""

    name = "python"
    charset = WIRE_CHARSET

    def __init__(self, config: VoucherConfig) -> None:
        self._config = config
        self._function: EcTransFunction | None = None
        self._lock = anyio.Lock()
        #: Held by the worker thread while the function runs, an abandoned (timed-out) call included.
        self._running = threading.Lock()

    async def start(self, timeout: float) -> None:
        if self._function is None:
            self._function = resolve_function(self._config.library)

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        await self.start(timeout)
        function = self._function
        assert function is not None
        async with self._lock:
            if self._running.locked():
                raise VoucherBusy("the Python EcTrans is still busy with a call that timed out; calls fail at once until it returns")
            with anyio.move_on_after(timeout):
                answer = await anyio.to_thread.run_sync(_guarded, function, payload, self._running, abandon_on_cancel=True)
                return _checked(answer)
        raise VoucherTimeout(timeout_message(timeout, scanning, "the call is left to finish on its own"), timeout)

    async def aclose(self) -> None:
        """Nothing to release."""


def _guarded(function: EcTransFunction, payload: bytes, running: threading.Lock) -> object:
    """A Python EcTrans that raises is a library that failed, not a bug of the caller's."""
    with running:
        try:
            return function(payload)
        except Exception as exc:
            return exc


def _checked(answer: object) -> tuple[int, bytes]:
    if isinstance(answer, Exception):
        raise VoucherError(f"the Python EcTrans raised {type(answer).__name__}")
    if (
        not isinstance(answer, tuple) or len(answer) != 2
        or not isinstance(answer[0], int) or not isinstance(answer[1], (bytes, bytearray))
    ):
        raise VoucherError(f"the Python EcTrans must return (int, bytes), got {type(answer).__name__}")
    code, out = answer
    return code, bytes(out).split(b"\0", 1)[0]
