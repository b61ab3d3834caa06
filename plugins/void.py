"""Built-in plugin: yb04.13.01.22, voiding a registration, then ``collection_voided``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ybplug.hooks import hookimpl
from ybplug.errors import Outcome
from ybplug.messages import VOID, VoidRequest, VoidResult

if TYPE_CHECKING:
    from ybplug.host import Host


class Void:
    @hookimpl(trylast=True)
    async def ybplug_void(self, host: Host, registration_number: str, reason: str) -> VoidResult:
        request = VoidRequest(registration_number=registration_number, reason=reason)
        exchange_id, result = await host.transact(VOID, request)
        if result.ok:
            await host.run_journal(
                host.journal.voided, exchange_id, msgspec.json.encode(result), registration_number, request.reason
            )
        else:
            await host.run_journal(host.journal.finish_exchange, exchange_id, Outcome.REFUSED, msgspec.json.encode(result), result.cause)
        return result


def plugin() -> Void:
    return Void()
