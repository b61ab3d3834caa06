"""Built-in plugin: each alert posted as JSON to the ``[alerts] webhooks`` URLs.

The body is the group-robot text message both WeCom (企业微信) and DingTalk (钉钉) accept:
``{"msgtype": "text", "text": {"content": "..."}}``.  A DingTalk robot guarded by a keyword
needs that keyword in the text: every message starts with ``【ybplug``.  (A robot guarded by a
signature is not supported: use a keyword or an IP allow-list.)  The URLs carry the robots'
keys, so they are never logged.  A post that fails is tried once more; if no URL took the alert
the hook raises, and the watch sends it again at its next look.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ybplug.errors import Error
from ybplug.hooks import hookimpl

if TYPE_CHECKING:
    import aiohttp

    from ybplug.alerts.config import AlertsSection
    from ybplug.alerts.model import Alert
    from ybplug.host import Host

log = logging.getLogger("ybplug.webhook")


class WebhookFailed(Error):
    """No configured URL accepted the alert."""


class WebhookPlugin:
    def __init__(self) -> None:
        self._section: AlertsSection | None = None

    @hookimpl
    async def ybplug_startup(self, host: Host) -> None:
        self._section = host.config.alerts

    @hookimpl
    async def ybplug_alert(self, alert: Alert) -> None:
        if self._section is None or not self._section.webhooks:
            return
        import aiohttp

        body = {"msgtype": "text", "text": {"content": alert.message()}}
        taken = 0
        timeout = aiohttp.ClientTimeout(total=self._section.webhook_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for number, url in enumerate(self._section.webhooks, start=1):
                for attempt in (1, 2):
                    problem = await _post(http, url, body)
                    if problem is None:
                        taken += 1
                        break
                    log.warning("webhook %d: %s alert %s not taken (attempt %d): %s",
                                number, alert.status, alert.key, attempt, problem)
        if not taken:
            raise WebhookFailed(f"no webhook took the {alert.status} alert {alert.key}")


async def _post(http: aiohttp.ClientSession, url: str, body: Mapping[str, object]) -> str | None:
    """Post once; None when the robot took it, else why not (without the URL)."""
    import aiohttp

    try:
        async with http.post(url, json=body) as response:
            if response.status != 200:
                return f"HTTP {response.status}"
            try:
                reply = await response.json(content_type=None)
            except ValueError:
                return "reply is not JSON"
            # WeCom and DingTalk both answer {"errcode": 0, "errmsg": "ok"}; a non-zero code is a refusal.
            code = reply.get("errcode", 0) if isinstance(reply, dict) else 0
            return None if code == 0 else f"errcode {code}: {str(reply.get('errmsg', ''))[:100]}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


def plugin() -> WebhookPlugin:
    return WebhookPlugin()
