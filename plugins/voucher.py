"""Built-in plugin: decoding the national insurance QR code through the vendor's EcTrans.

Active when ``[voucher] library`` is configured.  The library is started lazily at the first
decode (the process backend's worker, or the thread backend's library thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ybplug.hooks import hookimpl

if TYPE_CHECKING:
    from ybplug.binding import Voucher
    from ybplug.dotnet import DotnetVoucher
    from ybplug.host import Host
    from ybplug.messages import QrIdentity, QrRequest


class VoucherPlugin:
    def __init__(self) -> None:
        self._voucher: Voucher | DotnetVoucher | None = None

    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        section = host.config.voucher
        if section is None:
            return
        if section.backend == "dotnet":
            from ybplug.dotnet import DotnetSection, DotnetVoucher

            assert section.dotnet_type is not None  # VoucherSection checks it
            self._voucher = DotnetVoucher(
                section.library,
                section.dotnet_type,
                method=section.dotnet_method,
                timeout=section.timeout,
                scan_timeout=section.scan_timeout,
                runtime=host.config.dotnet or DotnetSection(),
            )
            return
        from ybplug.binding import Voucher, VoucherConfig

        self._voucher = Voucher(
            VoucherConfig(
                library=section.library,
                convention=section.convention,
                backend=section.backend,
                buffer_size=section.buffer_size,
                timeout=section.timeout,
                scan_timeout=section.scan_timeout,
                python=section.python,
                workdir=section.workdir,
            )
        )

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
