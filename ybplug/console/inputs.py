"""What a person sends the console, read in one place and refused with the field and its rule.

Bad input is never a 500 or a traceback: a form that is not UTF-8 (or percent-escapes that are
not), a value holding NUL or another control character (PostgreSQL text cannot hold NUL), an id,
a date or a code that is not one: each raises :class:`BadInput`, which the console's guard answers
with a page (400, or the status given) naming the field as the project does (``from 从: ...``,
the wire or parameter name, the Chinese label, the rule in English).  A typed value is never
echoed in the rule (it may be personal); an id or a date from the URL may be.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from urllib.parse import unquote_plus

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ybplug.fields import Problem
from ybplug.messages import Birth

#: The console's own form fields and query parameters, with the Chinese names its pages use.
LABELS = {
    "csrf": "表单令牌", "name": "用户名", "password": "密码", "key": "查找号码", "how": "处理方式",
    "baz726": "新生儿登记流水号", "eligible": "是否可预参保", "cause": "拒绝原因", "reason": "作废原因",
    "event_id": "事件", "plugin": "插件", "birth_id": "登记号", "from": "从", "to": "到", "by": "统计方式",
    "date": "记录日期", "state": "状态", "funid": "交易", "outcome": "结果", "form": "表单", "exchange_id": "交易号",
    **Birth.labels,
}

#: Control characters a typed value never holds (tab, line feed and carriage return may).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BadInput(Exception):
    """Input the console refuses: ``status`` and the field with its rule, for a page."""

    def __init__(self, field: str, rule: str, status: int = 400, title: str = "输入有误") -> None:
        self.status = status
        self.title = title
        super().__init__(problem(field, rule))


def problem(field: str, rule: str) -> str:
    """A field's broken rule as the project words it: ``cause 拒绝原因: is required``."""
    return str(Problem(field, LABELS.get(field, ""), rule))


async def form_of(request: web.Request) -> MultiDictProxy[str]:
    """The posted form, decoded strictly (UTF-8, no control characters).

    aiohttp's own reader would turn bad bytes into a UnicodeDecodeError (a 500) or into U+FFFD
    stored as if typed; here either is a :class:`BadInput` naming the field.  Only what the
    console's pages send is read: ``application/x-www-form-urlencoded`` (or an empty body).  The
    guard reads it for the CSRF token, the handler again: aiohttp keeps the body, and parsing
    64 KiB at most twice is simpler than per-request storage (a string key warns on a new aiohttp,
    the typed keys are missing from an old one)."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadInput("form", f"is over the console's limit of {request.client_max_size} bytes", 413, "提交的内容过大") from None
    form: MultiDict[str] = MultiDict()
    if body:
        if request.content_type != "application/x-www-form-urlencoded":
            raise BadInput("form", "the console's forms are sent as application/x-www-form-urlencoded", 415)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("form", "is not UTF-8 text") from None
        for pair in text.split("&"):
            if not pair:
                continue
            raw_name, _, raw_value = pair.partition("=")
            try:
                name = unquote_plus(raw_name, errors="strict")
            except UnicodeDecodeError:
                raise BadInput("form", "a field name is not UTF-8 text") from None
            try:
                value = unquote_plus(raw_value, errors="strict")
            except UnicodeDecodeError:
                raise BadInput(_named(name), "is not UTF-8 text (percent-escapes of bytes that are not UTF-8)") from None
            if _CONTROL.search(name) or _CONTROL.search(value):
                raise BadInput(_named(name), "must not contain control characters (such as NUL)")
            form.add(name, value)
    return MultiDictProxy(form)


def _named(name: str) -> str:
    """A field's name fit for a message (a forged form may name its fields anything)."""
    return name if name in LABELS else "form"


def choice(query: Mapping[str, str], field: str, allowed: Mapping[str, object] | list[str], empty: str = "all") -> str | None:
    """A code from a query (None when absent or empty, which means ``empty``); anything else
    is refused with the list."""
    value = query.get(field) or None
    if value is not None and value not in allowed:
        raise BadInput(field, f"must be one of {', '.join(allowed)} (or empty for {empty})")
    return value


def day(query: Mapping[str, str], field: str) -> date | None:
    """A date in a query, ``YYYY-MM-DD`` (None when absent or empty), from 1970 (the journal's
    times start there) to 2999 (a period's arithmetic never leaves the calendar)."""
    value = query.get(field) or None
    if value is None:
        return None
    try:
        if not _ISO_DATE.fullmatch(value) or not "1970" <= value[:4] <= "2999":
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(field, "must be a date, YYYY-MM-DD, from 1970 to 2999 (e.g. 2026-12-01)") from None
