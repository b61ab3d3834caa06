"""How the HIS and the clerks name a birth, and themselves, when they act on one.

A birth answers to its id (``5``, or ``#5`` as every page and line shows it), its HIS serial
(``bke042``) or its registration number (``baz726``, in any case).  These checks run at the host's
door, before anything reaches the journal: what a person typed is never a traceback, and a value
no birth can have (a lone surrogate, an id past 64 bits) is simply a birth not found.
"""

from __future__ import annotations

import re
import unicodedata

from ybplug.errors import UsageError
from ybplug.fields import REGISTRATION_NUMBER_RULE, is_registration_number, shown
from ybplug.journal.model import BirthNotFound
from ybplug.lifecycle import ResolutionError
from ybplug.privacy import mask

#: Longer than any HIS serial (bke042 is 30 characters at most) or registration number.
MAX_KEY = 64
MAX_ID = 2**63 - 1
MAX_OPERATOR = 64

#: The jobs :meth:`ybplug.host.Host.sync` runs (the built-in plugins' ``ybplug_sync`` answer to these).
JOBS = ("upload", "realname", "stale", "all")

#: What an echoed key may be shown as typed: an id, a HIS serial or a baz726 is short plain ASCII.
_PLAIN_KEY = re.compile(r"#?[0-9A-Za-z][0-9A-Za-z_./-]{0,29}")
#: A mobile or an ID number inside a key: masked even when the rest looks like a serial.
_PERSONAL_NUMBER = re.compile(r"1[3-9][0-9]{9}|[0-9]{15,17}[0-9Xx]")


class UnknownJob(UsageError):
    """``sync`` was asked for a job that does not exist (a typo would silently do nothing)."""


def lookup_key(key: object) -> int | str:
    """``key`` as the journal looks it up: an int for a birth id, else the text (trimmed; ``#5``
    becomes the id 5, a registration number upper case).  Raises :class:`BirthNotFound` for what
    cannot name a birth, :class:`TypeError` for what is not an int or a str."""
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise TypeError(f"a birth is looked up by its id (int) or by text (str), not by {type(key).__name__}")
    if isinstance(key, int):
        return birth_id_of(key)
    text = key.strip()
    if not text:
        raise BirthNotFound("give a birth id (#5), a HIS serial (bke042) or a registration number (baz726)")
    if len(text) > MAX_KEY or not _printable(text):
        raise BirthNotFound(f"no birth answers to that text ({len(text)} characters, not an id, serial or number)")
    if text.startswith("#") and text[1:].isdigit():
        return birth_id_of(int(text[1:]))
    if is_registration_number(text.upper()):
        return text.upper()
    return text


def echo_key(key: object) -> str:
    """A key a person typed, fit to echo in an error: quoted as typed when it looks like an id, a
    HIS serial or a baz726; else masked (a name or an ID number typed in the wrong place), and
    never long.  ``'#5'``, ``'DAY-0030'``; ``'陈*'``, ``'3502**********0001'``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return shown(key)
    if not isinstance(key, str):
        return f"a {type(key).__name__}"
    text = key.strip()
    if _PLAIN_KEY.fullmatch(text) and not _PERSONAL_NUMBER.search(text):
        return repr(text)
    if len(text) > MAX_KEY or not _printable(text):
        return f"text of {len(text)} characters"
    return repr(mask(text))


def twin_of(multiple_birth_number: object) -> int | None:
    """``bme027`` 多胞胎序号 picking a twin: None, or one digit (0 to 9).  Checked before it is
    formatted or sent to the journal (an int past 64 bits is an OverflowError there, one of 5,000
    digits a ValueError when shown)."""
    if multiple_birth_number is None:
        return None
    if isinstance(multiple_birth_number, bool) or not isinstance(multiple_birth_number, int):
        raise TypeError(f"bme027 多胞胎序号 is an int, not {type(multiple_birth_number).__name__}")
    if not 0 <= multiple_birth_number <= 9:
        raise BirthNotFound(f"bme027 多胞胎序号 {shown(multiple_birth_number)}: must be one digit (0 to 9)")
    return multiple_birth_number


def registration_number_of(value: object) -> str:
    """``baz726`` 新生儿登记流水号 as a person typed it (resolving a review, voiding): trimmed,
    upper case, the shape the centre issues; what is not is refused with it masked (a name or an
    ID number typed in the wrong box is not echoed)."""
    if not isinstance(value, str):
        raise TypeError(f"baz726 新生儿登记流水号 is a str, not {type(value).__name__}")
    number = value.strip().upper()
    if not is_registration_number(number):
        raise ResolutionError(f"baz726 新生儿登记流水号 {echo_key(value)}: {REGISTRATION_NUMBER_RULE}")
    return number


def check_job(job: object) -> str:
    """A job :meth:`ybplug.host.Host.sync` runs: one of :data:`JOBS` (``"uplaod"`` would run nothing)."""
    if not isinstance(job, str):
        raise TypeError(f"a sync job is a str ({', '.join(JOBS)}), not {type(job).__name__}")
    if job not in JOBS:
        raise UnknownJob(f"sync job {shown(job)}: must be one of {', '.join(JOBS)}")
    return job


def birth_id_of(birth_id: object) -> int:
    """A birth id as given to the host's actions (amend, replace, resolve): a positive int."""
    if isinstance(birth_id, bool) or not isinstance(birth_id, int):
        raise TypeError(f"a birth id is an int, not {type(birth_id).__name__}")
    if not 1 <= birth_id <= MAX_ID:
        raise BirthNotFound(f"no birth #{birth_id if abs(birth_id) < 10**20 else '…'}: ids run from 1")
    return birth_id


def operator_of(operator: object) -> str:
    """Who acted, as the journal records it with the act: a short name a person can read."""
    if not isinstance(operator, str) or not operator.strip():
        raise ResolutionError("operator: say who acts (a name or a staff number); it is journaled with the act")
    name = operator.strip()
    if len(name) > MAX_OPERATOR or not _printable(name):
        raise ResolutionError(f"operator: at most {MAX_OPERATOR} printable characters")
    return name


def _printable(text: str) -> bool:
    """No control characters, no lone surrogates (text no database or log can hold)."""
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in text)
