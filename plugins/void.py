"""Built-in plugin: yb04.13.01.22, voiding a registration, then ``collection_voided``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from ybplug.hooks import hookimpl
from ybplug.errors import Outcome
from ybplug.messages import VOID, VoidRequest, VoidResult

if TYPE_CHECKING:
    from ybplug.host import Host

log = logging.getLogger("ybplug.void")


class Void:
    @hookimpl(trylast=True)
    async def ybplug_void(self, host: Host, registration_number: str, reason: str) -> VoidResult:
        """Void, and journal it with its event.

        A void whose reply was lost may have been applied: when the retry then hears "already
        void", that is the success it means, recorded as such (else the birth would stay
        registered here while void at the centre, and ``collection_voided`` would never fire).
        """
        request = VoidRequest(registration_number=registration_number, reason=reason)
        request.check(host.config.charset)  # the centre's charset (construction checked a permissive one)
        birth_id = await host.records.birth_id_of(registration_number)
        in_doubt = await host.records.void_in_doubt(registration_number)
        exchange_id, result = await host.transact(VOID, request, birth_id=birth_id)
        reply = msgspec.json.encode(result)
        if not result.ok and in_doubt and host.cause_says(result.cause, host.config.already_void_markers):
            log.info("%s: already void after a void whose reply was lost: recorded as voided", registration_number)
            result = VoidResult(flag=1, cause=result.cause, registration_number=registration_number)
        if result.ok:
            await host.records.voided(exchange_id, reply, registration_number, request.reason)
        else:
            await host.records.finish_exchange(exchange_id, Outcome.REFUSED, reply, result.cause)
        return result


def plugin() -> Void:
    return Void()
