"""Masking of personal data for anything a person or a log may read.

ID numbers, names, phone numbers, QR tokens and passwords must never reach a log line in the
clear.  Messages mask themselves in ``repr``; log calls and the CLI go through :func:`mask`.
"""

from __future__ import annotations

from typing import Any


def mask(value: Any) -> str:
    """Keep enough of a value to recognise it, hide the rest.

    ``350204198001010001`` -> ``3502**********0001``; ``13800138000`` -> ``138****8000``;
    ``张三`` -> ``张*``; short values are hidden entirely.
    """
    text = "" if value is None else str(value)
    n = len(text)
    if n == 0:
        return ""
    if n >= 15:
        return text[:4] + "*" * (n - 8) + text[-4:]
    if n >= 7:
        return text[:3] + "*" * (n - 7) + text[-4:]
    if n >= 2:
        return text[0] + "*" * (n - 1)
    return "*"
