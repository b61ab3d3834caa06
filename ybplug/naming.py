"""How the HIS and the clerks name a birth, and themselves, when they act on one.

A birth answers to its id (``5``, or ``#5`` as every page and line shows it), its HIS serial
(``bke042``) or its registration number (``baz726``, in any case).  These checks run at the host's
door, before anything reaches the journal: what a person typed is never a traceback, and a value
no birth can have (a lone surrogate, an id past 64 bits) is simply a birth not found.
"""

from __future__ import annotations

import unicodedata

from ybplug.fields import is_registration_number
from ybplug.journal.model import BirthNotFound
from ybplug.lifecycle import ResolutionError

#: Longer than any HIS serial (bke042 is 30 characters at most) or registration number.
MAX_KEY = 64
MAX_ID = 2**63 - 1
MAX_OPERATOR = 64


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
