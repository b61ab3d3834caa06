"""Findings into incidents, incidents into alerts: once when it starts, again every
``remind_minutes`` while it lasts, and once when it clears.  Never a flood: one incident per key
however much its count moves, its state in the journal (``incidents``), so a restart neither
repeats an alert nor forgets an open incident.

An alert that no implementation of ``ybplug_alert`` took (every one raised: the chat service is
unreachable) is sent again at the next look; a "resolved" is told once.  Two workers on one
journal each look, but a notice is claimed in the journal before it is told, so only one tells it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ybplug.alerts.checks import findings
from ybplug.alerts.config import AlertsSection
from ybplug.alerts.model import Alert, Finding, Status
from ybplug.errors import Error
from ybplug.journal.console import (
    Incident,
    claim_notice,
    incident_seen,
    open_incident,
    open_incidents,
    release_notice,
    resolve_incident,
)

if TYPE_CHECKING:
    from ybplug.host import Host

log = logging.getLogger("ybplug.alerts")


class Watcher:
    """Looks at the journal of ``host`` and fires ``ybplug_alert`` through its plugins."""

    def __init__(self, host: Host, section: AlertsSection, *, clock: Callable[[], float] = time.time) -> None:
        self.host = host
        self.section = section
        self.clock = clock

    async def loop(self) -> None:
        """Look every ``check_seconds`` until the host stops (a failed look is one log line)."""
        while True:
            try:
                await self.check()
            except Error as exc:
                log.error("alerts: could not look at the journal: %s", exc)
            await anyio.sleep(self.section.check_seconds)

    async def check(self) -> list[Alert]:
        """One look: returns the alerts sent (or tried)."""
        host, now = self.host, self.clock()
        found = await host.run_journal(findings, host.journal, host.config, self.section, now)
        known = await host.run_journal(open_incidents, host.journal)
        sent: list[Alert] = []
        for key, finding in found.items():
            incident = known.get(key)
            summary = f"{finding.title}: {finding.count}"
            if incident is None:
                incident = await host.run_journal(open_incident, host.journal, key, finding.kind, summary, now)
            elif summary != incident.summary:
                await host.run_journal(incident_seen, host.journal, key, summary, now)
            if incident.notified_at is None:
                status: Status | None = "firing"
            elif now - incident.notified_at >= self.section.remind_minutes * 60:
                status = "reminder"
            else:
                status = None
            if status is not None:
                reminder = status == "reminder"
                seen = incident.notified_at
                if not await host.run_journal(claim_notice, host.journal, key, seen, now, reminder=reminder):
                    continue  # another worker on this journal tells it
                alert = self._alert(key, finding, incident, status, now)
                sent.append(alert)
                if not await self._fire(alert):
                    await host.run_journal(release_notice, host.journal, key, seen, now, reminder=reminder)
        for key, incident in known.items():
            if key not in found and await host.run_journal(resolve_incident, host.journal, key, now):
                if incident.notified_at is not None:  # nobody was told it started: nothing to clear
                    alert = self._resolved(incident, now)
                    sent.append(alert)
                    await self._fire(alert)  # told once, taken or not: the incident is over
        return sent

    @staticmethod
    def _alert(key: str, finding: Finding, incident: Incident, status: Status, now: float) -> Alert:
        return Alert(key=key, kind=finding.kind, status=status, title=finding.title, text=finding.text,
                     count=finding.count, opened_at=incident.opened_at, at=now)

    @staticmethod
    def _resolved(incident: Incident, now: float) -> Alert:
        title = incident.summary.rsplit(": ", 1)[0]
        minutes = (now - incident.opened_at) / 60
        return Alert(key=incident.key, kind=incident.kind, status="resolved", title=title,
                     text=f"已不再需要处理（持续约 {minutes:.0f} 分钟）。", count=0, opened_at=incident.opened_at, at=now)

    async def _fire(self, alert: Alert) -> bool:
        """Whether some implementation took it (or none is loaded: nobody to retry for)."""
        outcomes = await self.host.caller.call_each("ybplug_alert", alert=alert)
        if not self.section.webhooks:  # the built-in webhook with no URL to post to took nothing
            outcomes = [o for o in outcomes if o.plugin != "ybplug.webhook"]
        log.warning("alert %s %s: %s", alert.status, alert.key, alert.title)
        return not outcomes or any(o.ok for o in outcomes)
