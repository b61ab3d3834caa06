"""When the worker's scheduled jobs run next, by the configuration and the journal's last runs.

The console does not know whether a worker is running (it may be stopped); this is when one
running with this configuration would start each job, as the overview shows it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from ybplug.clerk import china_time
from ybplug.config import Config, upload_time
from ybplug.fields import CHINA_TIME
from ybplug.plugins.collection import last_slot


def next_runs(config: Config, runs: dict[str, Any], now: float | None = None) -> dict[str, str]:
    """``{"upload": ..., "realname": ...}``: a China time, or what happens instead."""
    now = time.time() if now is None else now
    daily = upload_time(config.upload)
    if daily is None:
        upload = "随记录即时上传"
    else:
        upload = china_time((last_slot(*daily, datetime.fromtimestamp(now, CHINA_TIME)) + timedelta(days=1)).timestamp()) or ""
    last = (runs.get("realname") or {}).get("finished_at")
    if not last or last + config.realname_interval <= now:
        realname = "已到期：工作进程运行时立即查询"
    else:
        realname = china_time(last + config.realname_interval) or ""
    return {"upload": upload, "realname": realname}
