"""Masking of personal data for anything a person or a log may read.

ID numbers, names, phone numbers, QR tokens and passwords must never reach a log line in the
clear.  Messages mask themselves in ``repr``; log calls and the CLI go through :func:`mask`.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from typing import Any

from ybplug.errors import Error


#: What an identifier looks like (an ID, passport or permit number, a phone, a QR token, a card
#: number): letters and digits, at least one a digit.  Any other text is masked as a name.
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]*[0-9][0-9A-Za-z-]*")

#: The most asterisks a masked name has: its length beyond that is not shown either.
_NAME_STARS = 3


def mask(value: Any) -> str:
    """Keep enough of a value to recognise it, hide the rest.

    Identifiers keep their shape: ``350204198001010001`` -> ``3502**********0001``;
    ``13800138000`` -> ``138****8000``; ``1380013`` -> ``13***13``.  Anything else is a name
    (:func:`mask_name`): ``张三`` -> ``张*``, ``Mary Watson`` -> ``M***``.  One character is
    hidden entirely.
    """
    text = "" if value is None else str(value)
    if not _IDENTIFIER.fullmatch(text):
        return mask_name(text)
    n = len(text)
    if n >= 15:
        return text[:4] + "*" * (n - 8) + text[-4:]
    if n >= 11:
        return text[:3] + "*" * (n - 7) + text[-4:]
    if n >= 7:
        return text[:2] + "*" * (n - 4) + text[-2:]
    if n >= 2:
        return text[0] + "*" * (n - 1)
    return "*"


def mask_name(value: Any) -> str:
    """A name, or any text that is not an identifier: its first character at most, and not its
    length past four (``王*``, ``王**``, ``王***`` for 王芳芳芳芳芳芳芳芳芳芳芳芳芳芳芳).

    A name's end is as telling as its start (``…tson``, ``…拉提``), and a long name is rare enough
    to tell a person by its length alone: neither is shown.
    """
    text = "" if value is None else str(value)
    if len(text) <= 1:
        return "*" if text else ""
    return text[0] + "*" * min(len(text) - 1, _NAME_STARS)


#: Runs of digits as long as a mobile number or longer (ID numbers end in a digit or X).
_NUMBER_LIKE = re.compile(r"(?<![\dA-Za-z])1[3-9]\d{9}(?!\d)|\d{15,}[\dXx]?")


def scrub(text: str, secrets: Iterable[object] = ()) -> str:
    """Text from elsewhere (a centre's cause, a plugin's error, a library's message) made fit for
    a log line: each of ``secrets`` (the personal values of the record at hand: names, a QR code)
    masked wherever it appears, then ID and phone numbers masked.  The one scrubber of ybplug."""
    for secret in sorted({str(s) for s in secrets if s is not None and str(s)}, key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return _NUMBER_LIKE.sub(lambda m: mask(m.group()), text)


def described(error: BaseException, secrets: Iterable[object] = ()) -> str:
    """What a log line says of an error that ended some work: an ybplug :class:`Error` is one line
    (its message is already fit for a log); anything else is a bug, whose whole traceback the
    log keeps so it can be fixed, scrubbed like any text from elsewhere."""
    if isinstance(error, Error):
        return str(error)
    return "a bug: " + scrub("".join(traceback.format_exception(error)).rstrip(), secrets)
