"""Alerts: when something needs a person, tell them once, remind them, and say when it cleared.

:mod:`ybplug.alerts.checks` finds what needs a person in the journal (parked deliveries, births
in review, the centre refusing the sign-in, the daily upload missed or failing, the voucher
library crashing again and again, newborns past the real-name horizon); :mod:`ybplug.alerts.watch`
turns those findings into incidents kept in the journal and fires ``ybplug_alert`` once per
incident, a reminder at the configured interval, and "resolved" when it clears.  The built-in
``ybplug.webhook`` plugin posts each alert to group robots (WeCom, DingTalk).
"""
