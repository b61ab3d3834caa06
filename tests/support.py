"""Shared test helpers (importable because pytest's ``pythonpath`` holds tests/)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ybplug.fields import CHINA_TIME
from ybplug.sandbox import SEED_MOTHERS


def birth_record(n: int = 0, *, mother: str = "local", number: int = 1, sex: str = "1") -> dict[str, Any]:
    """A valid yb04.13.01.21 record with the spec's field names.

    ``n`` shifts the birth time by seconds, so each ``n`` is a different birth; twins share ``n``
    and differ in ``number``.  ``mother`` is a key of the sandbox's seeded register.
    """
    born = datetime.now(CHINA_TIME) - timedelta(days=1) + timedelta(seconds=n)
    return {
        "akc190": f"ZY{n:06d}",
        "bke042": f"HIS{n:06d}-{number}",
        "bme027": number,
        "aac004": sex,
        "aac006": int(born.strftime("%Y%m%d%H%M%S")),
        "bkee43": "01",
        "bkee35": SEED_MOTHERS[mother],
        "bkee37": "陈静",
        "bkee33": 13800138000,
    }
