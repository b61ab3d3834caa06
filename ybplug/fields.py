"""Field rules of the spec, with errors a person can act on.

Every problem names the wire field, its Chinese name from the spec and the rule it broke, e.g.
``bkee35 母亲证件号码: check digit is wrong``.  Messages collect all problems of a record before
raising, so a clerk fixes a form once, not once per field.

Length limits are Oracle ``varchar2(n)`` limits: bytes in the centre's database character set
(GBK by default), not characters.  A character the charset cannot hold is rejected by name rather
than sent as ``?``.

The charset is always passed explicitly.  Constructing a message (``Birth(...)``, or msgspec
decoding one) checks against :data:`PERMISSIVE_CHARSET`, GB18030, a superset of GBK in which a
character outside GBK costs 4 bytes; ``load(Birth, data, charset=...)`` and ``birth.check(charset)``
apply the configured one, which is how the host applies ``config.charset`` whatever the thread or
task that records the birth.

Input is treated as hostile: any Python value in any field yields problems, never another
exception; messages quote no personal value (masked) and no unbounded one, and stay under
:data:`MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import msgspec

from ybplug.codes import Code
from ybplug.errors import Error
from ybplug.privacy import mask

#: What constructing a message checks against: GB18030 holds every character and counts each
#: character outside GBK as 4 bytes, so a message valid here may still fail the configured GBK.
PERMISSIVE_CHARSET = "gb18030"
#: The centre's database character set when none is configured.
DEFAULT_CHARSET = "gbk"
#: Longest error text an :class:`InvalidMessage` carries (UTF-8 bytes).
MAX_MESSAGE_BYTES = 2048

#: No longer read by anything: the charset is passed explicitly (``load(..., charset=)``,
#: ``Message.check(charset)``).  Kept only so that old imports do not break; setting it has no effect.
wire_charset: contextvars.ContextVar[str] = contextvars.ContextVar("wire_charset", default=DEFAULT_CHARSET)

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
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
#: An 11-digit landline: area code (010, 02x or a 4-digit 0xxx) and a 7- or 8-digit number.
_LANDLINE = re.compile(r"0(?:10|2[0-9]|[3-9][0-9]{2})[0-9]{7,8}")
_FIRST_GENERATION_ID = re.compile(r"[0-9]{15}")
#: What in a non-personal field is most likely personal data typed in the wrong box: a mobile or
#: ID number, or Chinese text (a name).  Echoed masked, not as typed.
_LOOKS_PERSONAL = re.compile(r"1[3-9][0-9]{9}|[0-9]{15,}|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
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


def second_generation_id(first_generation: str) -> str:
    """The 18-digit ID number a 15-digit first-generation one converts to (GB 11643): "19" inserted
    after the 6-digit region code (the year had two digits), the check digit appended.

    Anything but 15 ASCII digits (full-width digits included, which would convert to garbage) is
    an :class:`InvalidMessage` naming bkee35 母亲证件号码 and the rule, the value masked."""
    if not isinstance(first_generation, str) or not _FIRST_GENERATION_ID.fullmatch(first_generation):
        got = _describe(first_generation, personal=True)
        raise InvalidMessage("ID number", [Problem(
            "bkee35", "母亲证件号码", f"a first-generation ID number is 15 ASCII digits, got {got}"
        )])
    return with_check_digit(first_generation[:6] + "19" + first_generation[6:])


class Problem(msgspec.Struct, frozen=True):
    """One broken rule: which field (wire name and Chinese name) and what is wrong."""

    field: str
    label: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field} {self.label}: {self.rule}" if self.label else f"{self.field}: {self.rule}"


class InvalidMessage(Error, ValueError):
    """A message broke the spec's rules; ``problems`` lists each field and rule."""

    def __init__(self, message_type: str, problems: list[Problem]) -> None:
        self.message_type = message_type
        self.problems = problems
        text = "; ".join(str(p) for p in problems)
        encoded = text.encode("utf-8", "replace")
        if len(encoded) > MAX_MESSAGE_BYTES:
            cut = encoded[: MAX_MESSAGE_BYTES - 40].decode("utf-8", "ignore")
            text = f"{cut}… ({len(problems)} problems in all)"
        super().__init__(text)


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every spec message.

    ``labels`` maps each wire name to the spec's Chinese field name; ``personal`` names the
    attributes that ``repr`` masks, so a message logged by accident leaks nothing.
    """

    labels: ClassVar[dict[str, str]] = {}
    personal: ClassVar[frozenset[str]] = frozenset()
    #: Whether :meth:`rules` check every field's type too, so that ``load`` may hand the message
    #: raw values and report type errors with the rule errors, all at once.
    checks_types: ClassVar[bool] = False

    def rules(self, check: Checker) -> None:
        """The spec's rules for this message (none for replies): one ``check`` call per field."""

    def secrets(self) -> list[str]:
        """The personal values this message holds (nested messages' too): what a text about it
        (a plugin's error, a centre's cause) must be scrubbed of before it is logged."""
        found: list[str] = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, Message):
                found.extend(value.secrets())
            elif name in self.personal and value not in (None, ""):
                found.append(str(value))
        return found

    def check(self, charset: str = DEFAULT_CHARSET) -> None:
        """Check the message against ``charset`` (the configured wire charset); raise
        :class:`InvalidMessage` with every problem.  Construction already checked everything
        against :data:`PERMISSIVE_CHARSET`; this is how a stricter charset is applied."""
        checker = Checker(self, charset)
        self.rules(checker)
        checker.done()

    def __post_init__(self) -> None:
        if checks_skipped():
            return
        checker = Checker(self, PERMISSIVE_CHARSET)
        self.rules(checker)
        checker.done()

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


def _describe(value: Any, personal: bool) -> str:
    """A value as an error message may show it: masked when personal, never unbounded."""
    if not personal and not (isinstance(value, str) and _LOOKS_PERSONAL.search(value)):
        return shown(value)
    if isinstance(value, str) and not personal:  # a phone or a name in a number or code field
        value = value.strip()
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"a {type(value).__name__}"
    if isinstance(value, int) and not -(10**20) < value < 10**20:
        return "a number of more than 20 digits"
    if isinstance(value, str) and (len(value) > 40 or not value.isprintable()):
        return f"{len(value)} characters"  # no lone surrogate or control character in a message
    return mask(value)


class Checker:
    """Collects the problems of one message; raises them together at the end.

    ``charset`` is the wire charset the text fields are measured in (explicit, never ambient).
    """

    def __init__(self, message: Message, charset: str = PERMISSIVE_CHARSET) -> None:
        self.message = message
        self.charset = charset
        self.problems: list[Problem] = []
        self._wire = _wire_names(type(message))

    def _shown(self, attr: str, value: Any) -> str:
        return _describe(value, attr in self.message.personal)

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
        if value is None or (isinstance(value, str) and value == ""):
            if required:
                self.fail(attr, "is required")
            return None
        if not isinstance(value, str):
            self.fail(attr, f"must be text, got {type(value).__name__}")
            return None
        stripped = str.strip(value)
        if stripped != value or type(value) is not str:
            stripped = str(stripped)
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
                self.fail(attr, f"is {len(value)} bytes in {self.charset.upper()}, over the varchar2({limit}) limit")
                return None
            return value
        try:
            size = len(value.encode(self.charset))
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            where = f"U+{ord(bad):04X} (character {exc.start + 1})" if attr in self.message.personal else f"{bad!r} (U+{ord(bad):04X})"
            self.fail(attr, f"character {where} cannot be encoded in {self.charset.upper()}")
            return None
        if size > limit:
            self.fail(attr, f"is {size} bytes in {self.charset.upper()}, over the varchar2({limit}) limit")
            return None
        return value

    def number(self, attr: str, digits: int, *, required: bool = True, missing: str = "is required") -> int | None:
        """A ``number(digits)`` field: an integer of at most ``digits`` digits (digit strings accepted)."""
        value = getattr(self.message, attr)
        # Required numbers default to 0 so that every missing field is reported at once.
        if value is None or (isinstance(value, str) and value == "") or (required and type(value) is int and value == 0):
            if required:
                self.fail(attr, missing)
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            if len(value) > digits:  # before int(): a 5,000-digit string is refused, not parsed
                self.fail(attr, f"must be a number of at most {digits} digits (number({digits})), got {len(value)} digits")
                return None
            value = int(value)
            self._set(attr, value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(attr, f"must be a number of at most {digits} digits, got {self._shown(attr, value)}")
            return None
        if not 0 <= value < 10**digits:  # compared, not str()-ed: no limit on how big it may be
            self.fail(attr, f"must be a number of at most {digits} digits (number({digits})), got {self._shown(attr, value)}")
            return None
        if type(value) is not int:
            value = int(value)
            self._set(attr, value)
        return value

    def code(self, attr: str, table: type[Code], *, required: bool = True) -> str | None:
        """A coded field: its value must be in ``table``."""
        value = self.text(attr, 3, required=required)
        if value is not None and not table.has(value):
            self.fail(attr, f"{self._shown(attr, value)} is not a code of {table.__name__} ({table.describe()})")
            return None
        return value

    def id_number(self, attr: str, certificate_type: str | None) -> None:
        """GB 11643 shape and check digit, when the certificate is a resident ID card."""
        value = getattr(self.message, attr)
        if not isinstance(value, str) or certificate_type != "01" or self.failed(attr):
            return
        value = value.upper()
        self._set(attr, value)
        if _FIRST_GENERATION_ID.fullmatch(value):
            self.fail(attr, f"is a 15-digit first-generation ID number; send the 18-digit one, "
                            f"{mask(second_generation_id(value))} ('19' after the 6-digit region code, "
                            f"check digit appended: ybplug.fields.second_generation_id)")
        elif not _ID_SHAPE.fullmatch(value):
            self.fail(attr, "a resident ID number is 17 digits and a check digit (0-9 or X)")
        elif id_check_digit(value[:17]) != value[17]:
            self.fail(attr, "check digit is wrong")

    def phone(self, attr: str) -> None:
        """A mobile (11 digits from 13) or an 11-digit landline with its area code (0592 + 7 digits).
        number(11) drops a landline's leading 0 on the wire; a 10-digit number is read back so."""
        value = getattr(self.message, attr)
        if not isinstance(value, int) or self.failed(attr):
            return
        digits = str(value)
        if not (_MOBILE.fullmatch(digits) or (len(digits) == 10 and _LANDLINE.fullmatch("0" + digits))):
            self.fail(attr, "must be an 11-digit mobile number starting with 1, or an 11-digit landline "
                            f"with its area code (0592 and 7 digits), got {self._shown(attr, value)}")

    def moment(self, attr: str) -> None:
        """A ``datetime`` becomes the spec's ``YYYYMMDDHHMMSS`` number: naive is China time, aware is
        converted to China time.  Other values are left to :meth:`number` and :meth:`timestamp`."""
        value = getattr(self.message, attr)
        if isinstance(value, datetime):
            if value.tzinfo is not None and value.utcoffset() is not None:
                value = value.astimezone(CHINA_TIME)
            number = ((((value.year * 100 + value.month) * 100 + value.day) * 100 + value.hour) * 100
                      + value.minute) * 100 + value.second  # a year before 1000 fails the 14 digits
            self._set(attr, number)

    def timestamp(self, attr: str, *, now: datetime | None = None) -> None:
        """``YYYYMMDDHHMMSS``, a real date and time, not in the future (China time)."""
        value = getattr(self.message, attr)
        if not isinstance(value, int) or self.failed(attr):
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
            self.fail(attr, f"must be {what} starting with an administrative division code, got {shown(value)}")

    def done(self) -> None:
        if self.problems:
            raise InvalidMessage(type(self.message).__name__, self.problems)
