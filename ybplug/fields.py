"""Field rules of the spec, with errors a person can act on.

Every problem names the wire field, its Chinese name from the spec and the rule it broke, e.g.
``bkee35 母亲证件号码: check digit is wrong``.  Messages collect all problems of a record before
raising, so a clerk fixes a form once, not once per field.

Length limits are Oracle ``varchar2(n)`` limits: bytes in the centre's database character set
(GBK by default), not characters.  A character the charset cannot hold is rejected by name rather
than sent as ``?``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import msgspec

from ybplug.codes import Code
from ybplug.errors import Error
from ybplug.privacy import mask

#: The centre's database character set; ``gb18030`` where the peer accepts it.
wire_charset: contextvars.ContextVar[str] = contextvars.ContextVar("wire_charset", default="gbk")

#: Set while decoding records this process validated before it journaled them: checks already ran.
_trusted: contextvars.ContextVar[bool] = contextvars.ContextVar("trusted", default=False)


@contextlib.contextmanager
def trusted() -> Iterator[None]:
    """Decode without re-running the checks (for the journal's own records, read back often)."""
    token = _trusted.set(True)
    try:
        yield
    finally:
        _trusted.reset(token)


def checks_skipped() -> bool:
    return _trusted.get()


#: China Standard Time: birth times are the HIS's local wall clock, whatever the server's zone.
CHINA_TIME = timezone(timedelta(hours=8), "CST")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_CONTROL = re.compile(r"[\x00-\x1f]")
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82".split()
)


#: ``baz726`` 新生儿登记流水号: declared number(16), described as "a temporary number starting XSE";
#: the centre issues ``XSE`` + yymmdd + a 7-digit daily sequence.  ASCII digits only (``\d`` would
#: take any script's digits).  The one definition: the wire checks replies with it, the sandbox
#: may issue by it.
REGISTRATION_NUMBER = re.compile(r"XSE[0-9]{13}")
REGISTRATION_NUMBER_RULE = "a registration number is 16 characters: XSE and 13 digits"


def is_registration_number(value: object) -> bool:
    """Whether ``value`` has the shape of a ``baz726`` the centre issues."""
    return isinstance(value, str) and REGISTRATION_NUMBER.fullmatch(value) is not None


def shown(value: object, limit: int = 40) -> str:
    """A value fit for an error message about a non-personal field: short, and never the
    expensive or unbounded ``str`` of a huge number or a nested container."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value) if -(10**20) < value < 10**20 else "a number of more than 20 digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = repr(value[:limit])
        return text if len(value) <= limit else f"{text[:-1]}…{text[-1]} ({len(value)} characters)"
    return f"a {type(value).__name__}"


def id_check_digit(first17: str) -> str:
    """GB 11643 check character for the first 17 digits of a resident ID number."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def with_check_digit(first17: str) -> str:
    """A full 18-character resident ID number (handy for tests and the sandbox's register)."""
    return first17 + id_check_digit(first17)


@dataclass(frozen=True)
class Problem:
    """One broken rule: which field (wire name and Chinese name) and what is wrong."""

    field: str
    label: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field} {self.label}: {self.rule}"


class InvalidMessage(Error, ValueError):
    """A message broke the spec's rules; ``problems`` lists each field and rule."""

    def __init__(self, message_type: str, problems: list[Problem]) -> None:
        self.message_type = message_type
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every spec message.

    ``labels`` maps each wire name to the spec's Chinese field name; ``personal`` names the
    attributes that ``repr`` masks, so a message logged by accident leaks nothing.
    """

    labels: ClassVar[dict[str, str]] = {}
    personal: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            shown = repr(mask(value)) if name in self.personal and value else repr(value)
            parts.append(f"{name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"


@functools.cache
def _wire_names(message_type: type[Message]) -> dict[str, str]:
    """Attribute -> wire name, computed once per type (msgspec.structs.fields re-reads annotations)."""
    return dict(zip(message_type.__struct_fields__, message_type.__struct_encode_fields__, strict=True))


class Checker:
    """Collects the problems of one message; raises them together at the end."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.problems: list[Problem] = []
        self._wire = _wire_names(type(message))

    def fail(self, attr: str, rule: str) -> None:
        wire = self._wire[attr]
        self.problems.append(Problem(wire, self.message.labels.get(wire, ""), rule))

    def failed(self, attr: str) -> bool:
        wire = self._wire[attr]
        return any(p.field == wire for p in self.problems)

    def _set(self, attr: str, value: Any) -> None:
        msgspec.structs.force_setattr(self.message, attr, value)

    def text(self, attr: str, limit: int, *, required: bool = True) -> str | None:
        """A ``varchar2(limit)`` field: present if required, encodable, within ``limit`` bytes."""
        value = getattr(self.message, attr)
        if value is None or value == "":
            if required:
                self.fail(attr, "is required")
            return None
        if not isinstance(value, str):
            self.fail(attr, f"must be text, got {type(value).__name__}")
            return None
        stripped = value.strip()
        if stripped != value:
            self._set(attr, stripped)
            value = stripped
        if not value:
            if required:
                self.fail(attr, "is required")
            return None
        if _CONTROL.search(value):
            self.fail(attr, "must not contain control characters")
            return None
        if value.isascii():  # one byte a character in GBK and GB18030: nothing to encode
            if len(value) > limit:
                self.fail(attr, f"is {len(value)} bytes in {wire_charset.get().upper()}, over the varchar2({limit}) limit")
                return None
            return value
        charset = wire_charset.get()
        try:
            size = len(value.encode(charset))
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            self.fail(
                attr,
                f"character {bad!r} (U+{ord(bad):04X}) cannot be encoded in {charset.upper()}",
            )
            return None
        if size > limit:
            self.fail(attr, f"is {size} bytes in {charset.upper()}, over the varchar2({limit}) limit")
            return None
        return value

    def number(self, attr: str, digits: int, *, required: bool = True, missing: str = "is required") -> int | None:
        """A ``number(digits)`` field: an integer of at most ``digits`` digits (digit strings accepted)."""
        value = getattr(self.message, attr)
        # Required numbers default to 0 so that every missing field is reported at once.
        if value is None or value == "" or (required and value == 0):
            if required:
                self.fail(attr, missing)
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
            self._set(attr, value)
        shown = mask(value) if attr in self.message.personal else repr(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(attr, f"must be a number of at most {digits} digits, got {shown}")
            return None
        if value < 0 or len(str(value)) > digits:
            self.fail(attr, f"must be a number of at most {digits} digits (number({digits})), got {shown}")
            return None
        return value

    def code(self, attr: str, table: type[Code], *, required: bool = True) -> str | None:
        """A coded field: its value must be in ``table``."""
        value = self.text(attr, 3, required=required)
        if value is not None and not table.has(value):
            self.fail(attr, f"{value!r} is not a code of {table.__name__} ({table.describe()})")
            return None
        return value

    def id_number(self, attr: str, certificate_type: str | None) -> None:
        """GB 11643 shape and check digit, when the certificate is a resident ID card."""
        value = getattr(self.message, attr)
        if not isinstance(value, str) or certificate_type != "01" or self.failed(attr):
            return
        value = value.upper()
        self._set(attr, value)
        if not _ID_SHAPE.match(value):
            self.fail(attr, "a resident ID number is 17 digits and a check digit (0-9 or X)")
        elif id_check_digit(value[:17]) != value[17]:
            self.fail(attr, "check digit is wrong")

    def mobile(self, attr: str) -> None:
        value = getattr(self.message, attr)
        if value is not None and not self.failed(attr) and not _MOBILE.match(str(value)):
            self.fail(attr, f"must be an 11-digit mobile number starting with 1, got {mask(value)}")

    def timestamp(self, attr: str, *, now: datetime | None = None) -> None:
        """``YYYYMMDDHHMMSS``, a real date and time, not in the future (China time)."""
        value = getattr(self.message, attr)
        if value is None or self.failed(attr):
            return
        text = str(value)
        if len(text) != 14:
            self.fail(attr, f"must be YYYYMMDDHHMMSS (14 digits), got {text}")
            return
        try:  # by hand: strptime costs more than the rest of a Birth's checks
            moment = datetime(
                int(text[0:4]), int(text[4:6]), int(text[6:8]),
                int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=CHINA_TIME,
            )
        except ValueError:
            self.fail(attr, f"{text} is not a real date and time (YYYYMMDDHHMMSS)")
            return
        if moment > (now or datetime.now(CHINA_TIME)):
            self.fail(attr, f"{text} is in the future")

    def division(self, attr: str, value: str | None, *, exact: bool) -> None:
        """Digits whose first six are an administrative division with a real province code."""
        if value is None or self.failed(attr):
            return
        shape = len(value) == 6 if exact else 6 <= len(value) <= 20
        if not (shape and value.isascii() and value.isdigit() and value[:2] in _PROVINCES):
            what = "six digits" if exact else "6 to 20 digits"
            self.fail(attr, f"must be {what} starting with an administrative division code, got {value!r}")

    def done(self) -> None:
        if self.problems:
            raise InvalidMessage(type(self.message).__name__, self.problems)
