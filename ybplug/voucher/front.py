"""The :class:`Voucher`: decode e-voucher QR codes through the vendor's EcTrans, any backend.

The front owns what every backend shares: the request's encoding, the reply's reading, the
identity or typed error it amounts to, scrubbing (:mod:`ybplug.voucher.codec`), the lifecycle and
the log lines.  The backend (:mod:`~ybplug.voucher.process`, :mod:`~ybplug.voucher.thread`,
:mod:`ybplug.dotnet.ectrans`) only moves bytes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ybplug.messages import QrIdentity, QrRequest
from ybplug.voucher.backend import VoucherBackend
from ybplug.voucher.codec import encode_request, identity, request_secrets
from ybplug.voucher.config import VoucherConfig
from ybplug.voucher.errors import VoucherError, VoucherRefused

if TYPE_CHECKING:
    from ybplug.dotnet.config import DotnetSection
    from ybplug.dotnet.runtime import DotnetRuntime

__all__ = ["Voucher", "make_backend"]

logger = logging.getLogger("ybplug.voucher")


def make_backend(config: VoucherConfig, dotnet: DotnetSection | DotnetRuntime | None = None) -> VoucherBackend:
    """The backend ``config.backend`` names (imported only when chosen)."""
    if config.backend == "dotnet":
        from ybplug.dotnet.ectrans import DotnetBackend

        return DotnetBackend(config, dotnet)
    if config.backend == "python":
        from ybplug.voucher.pycall import PythonBackend

        return PythonBackend(config)
    if config.backend == "thread":
        from ybplug.voucher.thread import ThreadBackend

        return ThreadBackend(config)
    from ybplug.voucher.process import ProcessBackend

    return ProcessBackend(config)


class Voucher:
    """Decodes e-voucher QR codes through the vendor library, with the backend the config names.

    Use it as an async context manager (which loads the library on entry, so a wrong path shows
    at startup) or call :meth:`start` and :meth:`aclose` yourself.  ``dotnet`` is the ``[dotnet]``
    section (or a loaded runtime) for ``backend = "dotnet"``.  A Voucher belongs to the event loop
    that first uses it.
    """

    def __init__(
        self, config: VoucherConfig, *, dotnet: DotnetSection | DotnetRuntime | None = None,
        backend: VoucherBackend | None = None,
    ) -> None:
        self.config = config
        self.backend: VoucherBackend = backend or make_backend(config, dotnet)
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
        await self.backend.start(self.config.timeout)

    async def decode(self, request: QrRequest) -> QrIdentity:
        """Decode one QR code (or, with an empty ``idcode``, let the library scan one).

        Returns the insured person's identity.  Raises :class:`VoucherRequestInvalid`,
        :class:`VoucherCallFailed`, :class:`VoucherRefused`, :class:`VoucherTimeout`,
        :class:`VoucherBusy`, :class:`VoucherCrashed`, :class:`VoucherReplyUnreadable` or
        :class:`VoucherLibraryError`, all of them :class:`VoucherError`.
        """
        self._check_open()
        payload = encode_request(request, self.backend.charset)
        scanning = not request.idcode
        timeout = self.config.scan_timeout if scanning else self.config.timeout
        began = time.monotonic()
        try:
            code, raw = await self.backend.call(payload, timeout, scanning)
            found = identity(code, raw, buffer_size=self.config.buffer_size, secrets=request_secrets(request))
        except VoucherError as exc:
            # A refusal (an expired code) is business as usual; anything else needs a look.
            level = logging.INFO if isinstance(exc, VoucherRefused) else logging.WARNING
            logger.log(
                level, "EcTrans failed after %.0f ms (%s backend): %s: %s",
                1000 * (time.monotonic() - began), self.backend.name, type(exc).__name__, exc,
            )
            raise
        logger.debug(
            "EcTrans decoded a QR code in %.0f ms (%s backend)", 1000 * (time.monotonic() - began), self.backend.name
        )
        return found

    async def aclose(self) -> None:
        """Stop the worker process, if any.  Further decodes raise :class:`VoucherError`."""
        if self._closed:
            return
        self._closed = True
        await self.backend.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise VoucherError("this Voucher is closed")
