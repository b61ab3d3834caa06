"""``[alerts]``: how often to look, how often to remind, and where the webhook plugin posts.

Example::

    [alerts]
    webhooks = ["https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."]
    remind_minutes = 240

Imported by :mod:`ybplug.config`: nothing heavy here.
"""

from __future__ import annotations

import msgspec


class AlertsSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The alerts' settings (all optional: ``[alerts]`` alone turns the watch on)."""

    #: Group-robot URLs the built-in webhook plugin posts each alert to (WeCom, DingTalk).
    webhooks: list[str] = msgspec.field(default_factory=list)
    #: How often the worker looks for incidents.
    check_seconds: float = 60.0
    #: An incident still open this long after its last alert is announced again.
    remind_minutes: float = 240.0
    #: How long after its due time (the daily slot, or the recording in immediate mode) a birth
    #: still waiting for upload is an incident.
    upload_grace_minutes: float = 60.0
    #: This many voucher-library crashes within ``voucher_window_minutes`` are an incident.
    voucher_crashes: int = 3
    voucher_window_minutes: float = 60.0
    #: Seconds for one webhook post.
    webhook_timeout: float = 10.0

    def __post_init__(self) -> None:
        for url in self.webhooks:
            if not url.startswith(("http://", "https://")):
                raise ValueError("alerts webhooks: each must be an http:// or https:// URL")
        if min(self.check_seconds, self.remind_minutes, self.upload_grace_minutes, self.voucher_window_minutes,
               self.webhook_timeout) <= 0 or self.voucher_crashes <= 0:
            raise ValueError("alerts: check_seconds, remind_minutes, upload_grace_minutes, voucher_crashes,"
                             " voucher_window_minutes and webhook_timeout must be positive")

    def __repr__(self) -> str:  # a robot's URL carries its key: not for a log
        return f"AlertsSection(webhooks=[{len(self.webhooks)} URLs], remind_minutes={self.remind_minutes!r})"
