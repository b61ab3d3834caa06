"""Built-in plugin: the alerts watch (:mod:`ybplug.alerts.watch`) in the worker.

Active in a host with background work (``ybplug run``) when ``[alerts]`` is in the config.  A
one-shot command (``ybplug sync``, ``ybplug console``) does not watch: the worker is the process
that runs all day, and one watcher per journal keeps one alert per incident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ybplug.hooks import hookimpl

if TYPE_CHECKING:
    from ybplug.host import Host


class AlertsPlugin:
    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        section = host.config.alerts
        if section is None or not host.background:
            return
        from ybplug.alerts.watch import Watcher

        host.start_soon(Watcher(host, section).loop, name="ybplug alerts")


def plugin() -> AlertsPlugin:
    return AlertsPlugin()
