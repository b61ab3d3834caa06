"""Built-in plugin: decoding the national insurance QR code through the vendor's EcTrans.

Active when ``[voucher] library`` is configured.  The library is started lazily at the first
decode (the process backend's worker, the thread backend's library thread, or the .NET runtime
for ``backend = "dotnet"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ybplug.hooks import hookimpl

if TYPE_CHECKING:
    from ybplug.host import Host
    from ybplug.messages import QrIdentity, QrRequest
    from ybplug.voucher.front import Voucher


class VoucherPlugin:
    def __init__(self) -> None:
        self._voucher: Voucher | None = None

    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        section = host.config.voucher
        if section is None:
            return
        from ybplug.voucher.front import Voucher

        self._voucher = Voucher(section, dotnet=host.config.dotnet)

    @hookimpl
    async def ybplug_shutdown(self) -> None:
        if self._voucher is not None:
            await self._voucher.aclose()
            self._voucher = None

    @hookimpl(trylast=True)
    async def ybplug_decode_qr(self, request: QrRequest) -> QrIdentity | None:
        if self._voucher is None:
            return None
        return await self._voucher.decode(request)


def plugin() -> VoucherPlugin:
    return VoucherPlugin()
