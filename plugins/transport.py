"""Built-in plugin: the default transport, the vendor agent's envelope over aiohttp."""

from __future__ import annotations

from ybplug.hooks import hookimpl
from ybplug.config import WireConfig
from ybplug.wire import HttpTransport, Transport


class DefaultTransport:
    @hookimpl(trylast=True)
    def ybplug_transport(self, config: WireConfig) -> Transport:
        return HttpTransport(config)


def plugin() -> DefaultTransport:
    return DefaultTransport()
