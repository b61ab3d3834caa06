"""The .NET backend of :class:`ybplug.voucher.Voucher`: a vendor's
``public static int EcTrans(string inData, out string outData)`` in a .NET assembly.

Only the call is .NET's: the request's JSON, the tolerant reading of ``outData`` (the spec's
trailing comma and all), the identity, the errors and their scrubbing are the front's
(:mod:`ybplug.voucher.codec`), the same as for the C library.  ``inData`` goes as a .NET string
(UTF-8 on the Python side, so no GBK limit) and ``outData`` comes back behind a UTF-8 mark.

The call runs on the process's .NET thread (:class:`~ybplug.dotnet.runtime.DotnetRuntime`).  A
call that times out cannot be stopped: the .NET thread stays busy until EcTrans returns, and
until then a decode fails at once with :class:`~ybplug.voucher.errors.VoucherBusy`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ybplug.dedicated import Job
from ybplug.dotnet.config import DotnetSection
from ybplug.dotnet.errors import DotnetException, DotnetMethodNotFound
from ybplug.dotnet.reflect import load_type, release, signature
from ybplug.dotnet.runtime import DotnetRuntime, dotnet_exception
from ybplug.voucher.backend import timeout_message
from ybplug.voucher.codec import clean
from ybplug.voucher.config import VoucherConfig
from ybplug.voucher.errors import DotnetVoucherFailed, VoucherBusy, VoucherError, VoucherTimeout

__all__ = ["DotnetBackend"]

log = logging.getLogger("ybplug.dotnet")

_UTF8_BOM = b"\xef\xbb\xbf"
_HUNG = "a .NET call cannot be stopped: the .NET thread stays busy until it returns"


def _open_ectrans(runtime: DotnetRuntime, assembly: str, type_name: str, method_name: str) -> int:
    """(.NET thread) Find ``static int EcTrans(string inData, out string outData)``."""
    found = load_type(runtime, assembly, type_name)
    candidates = [m for m in found.GetMethods() if str(m.Name) == method_name]
    wanted = f"public static int {method_name}(string inData, out string outData)"
    if not candidates:
        raise DotnetMethodNotFound(f".NET type {type_name} has no public method {method_name}: expected `{wanted}`")
    for method in candidates:
        parameters = list(method.GetParameters())
        if (
            method.IsStatic
            and str(method.ReturnType.FullName) == "System.Int32"
            and len(parameters) == 2
            and str(parameters[0].ParameterType.FullName) == "System.String"
            and bool(parameters[1].ParameterType.IsByRef)
            and str(parameters[1].ParameterType.GetElementType().FullName) == "System.String"
        ):
            return runtime.keep(method)
    found_as = "; ".join(("static " if m.IsStatic else "") + signature(m) for m in candidates)
    raise DotnetMethodNotFound(f"{type_name}.{method_name} must be `{wanted}`; found {found_as}")


def _call_ectrans(runtime: DotnetRuntime, handle: int, in_data: str) -> tuple[int, str | None]:
    """(.NET thread) One EcTrans call; the return code and ``outData``."""
    System = runtime._System
    method = runtime.kept(handle)
    arguments = System.Array[System.Object]([in_data, None])
    try:
        code = method.Invoke(None, arguments)
    except Exception as exc:  # noqa: BLE001
        raise dotnet_exception(System, exc, where=f"{method.DeclaringType.FullName}.{method.Name}") from None
    out = arguments[1]
    return int(code), None if out is None else str(out)


class DotnetBackend:
    """EcTrans served by a .NET assembly (``library``), class ``dotnet_type``, method ``dotnet_method``."""

    name = "dotnet"
    charset = "utf-8"

    def __init__(self, config: VoucherConfig, runtime: DotnetRuntime | DotnetSection | None = None) -> None:
        assert config.dotnet_type is not None  # VoucherConfig checks it
        self.assembly = Path(config.library)
        self.type_name = config.dotnet_type
        self.method = config.dotnet_method
        self._settings = runtime
        self._runtime: DotnetRuntime | None = runtime if isinstance(runtime, DotnetRuntime) else None
        self._handle = 0
        self._closed = False
        self._lock: anyio.Lock | None = None

    async def start(self, timeout: float) -> None:
        """Load the runtime (on first use), the assembly and the method."""
        if self._closed:
            raise VoucherError("the voucher is closed")
        if self._handle:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._handle:
                return
            if self._runtime is None:
                settings = self._settings if isinstance(self._settings, DotnetSection) else None
                self._runtime = await DotnetRuntime.aget(settings)
            with anyio.fail_after(self._runtime.settings.load_timeout):
                self._handle = await self._runtime.run(
                    _open_ectrans, self._runtime, str(self.assembly), self.type_name, self.method
                )
            log.info("EcTrans from .NET: %s.%s in %s", self.type_name, self.method, self.assembly)

    async def call(self, payload: bytes, timeout: float, scanning: bool) -> tuple[int, bytes]:
        await self.start(timeout)
        runtime = self._runtime
        assert runtime is not None
        stuck = runtime.stuck_for()
        if stuck is not None:
            raise VoucherBusy(f"the .NET thread is still busy with a call that timed out (started {stuck:.1f} s ago); {_HUNG}")
        in_data = payload.decode("utf-8")
        job: Job[tuple[int, str | None]] = runtime.submit(_call_ectrans, runtime, self._handle, in_data)
        try:
            with anyio.move_on_after(timeout):
                await job.wait()
        except BaseException:
            job.drop()
            raise
        if job.state != Job.DONE and job.drop():
            busy = runtime.busy_for()
            raise VoucherBusy(
                f"waited {timeout:g} s but the .NET thread was busy with another call the whole time"
                + (f" (that call has been running for {busy:.0f} s)" if busy is not None and busy >= 1 else "")
            )
        if job.state == Job.DONE:  # possibly right at the deadline
            try:
                code, out = job.outcome()
            except DotnetException as exc:
                raise DotnetVoucherFailed(exc.dotnet_type, clean(exc.dotnet_message, _secrets(payload))) from None
            return code, b"" if out is None else _UTF8_BOM + out.encode("utf-8", "surrogatepass")
        log.warning("EcTrans (.NET) timed out after %g s; the .NET thread stays busy until it returns", timeout)
        raise VoucherTimeout(timeout_message(timeout, scanning, _HUNG), timeout)

    async def aclose(self) -> None:
        """Let the .NET method go."""
        self._closed = True
        handle, self._handle = self._handle, 0
        if handle and self._runtime is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._runtime.run(release, self._runtime, handle)


def _secrets(payload: bytes) -> tuple[str, ...]:
    """The request's personal values (:func:`ybplug.voucher.codec.request_secrets`), read back from
    the JSON the front encoded."""
    try:
        document: Any = msgspec.json.decode(payload)
    except msgspec.DecodeError:  # pragma: no cover - the front encoded it
        return ()
    if not isinstance(document, dict):  # pragma: no cover - the front encoded it
        return ()
    data = document.get("data")
    operator = data.get("operatorName") if isinstance(data, dict) else None
    return tuple(str(value) for value in (document.get("idcode"), operator) if value)
