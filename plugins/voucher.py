"""Built-in plugin: decoding the national insurance QR code through the vendor's EcTrans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ybplug.hooks import hookimpl

if TYPE_CHECKING:
    from ybplug.host import Host
    from ybplug.messages import QrIdentity, QrRequest


class VoucherPlugin:
    @hookimpl(trylast=True)
    async def ybplug_decode_qr(self, host: Host, request: QrRequest) -> QrIdentity | None:
        return None


def plugin() -> VoucherPlugin:
    return VoucherPlugin()
