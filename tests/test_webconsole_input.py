"""Bad input to the console, over HTTP against a real host, journal and sandbox: what an
operator sees is a page of the console (never a 500, a traceback or aiohttp's bare text) with
the field and its rule; a refused act changes and journals nothing; a period, filter or id the
request does not really say is refused, never swapped for another; ids are found as the pages
show them."""

from __future__ import annotations

import html
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ybplug.codes import Funid
from ybplug.console.app import Console
from ybplug.fields import CHINA_TIME
from ybplug.sandbox import Fault, Sandbox

from pg_support import journal_rows
from support import birth_record
from test_webconsole import Browser, birth_in_review, section, served

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def actions(journal: str) -> list[tuple[Any, ...]]:
    return journal_rows(journal, "SELECT operator, action, birth_id FROM actions ORDER BY id")


async def raw(browser: Browser, path: str, body: bytes, headers: dict[str, str] = FORM) -> tuple[int, str, str]:
    """A POST of exactly these bytes (a forged or broken form): status, Content-Type, text."""
    async with browser.http.post(browser.url + path, data=body, headers=headers, allow_redirects=False) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def refusal(text: str) -> str:
    """The error a console page shows (its flash-error paragraph), as the operator reads it."""
    found = re.findall(r'<p class="flash-error" role="alert">(.*?)</p>', text)
    assert found, f"not a console refusal page: {text[-300:]!r}"
    return html.unescape(found[0])


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A 500 is logged by aiohttp at ERROR with its traceback; bad input never is."""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- 1. bad input is a page naming the field ----------------------------------------------------------


@pytest.mark.anyio
async def test_forms_with_nul_bad_encoding_or_too_much_are_a_page_naming_the_field(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 61)
        await browser.login("林护士")
        await browser.get(f"/births/{birth_id}")
        csrf = browser.csrf.encode()
        resolve = f"/births/{birth_id}/resolve"

        status, kind, text = await raw(browser, resolve, b"csrf=" + csrf + b"&how=refused&cause=%FF%FE")
        assert (status, kind) == (400, "text/html; charset=utf-8")
        assert refusal(text) == "cause 拒绝原因: is not UTF-8 text (percent-escapes of bytes that are not UTF-8)"
        assert f'href="/births/{birth_id}">返回' in text and "林护士（操作员）" in text  # the console's page, its nav

        status, _, text = await raw(browser, resolve, b"csrf=" + csrf + b"&how=refused&cause=%E5%8E%9F%00")
        assert status == 400 and refusal(text) == "cause 拒绝原因: must not contain control characters (such as NUL)"

        status, _, text = await raw(browser, resolve, b"\xff\xfe\x00garbage")
        assert status == 400 and refusal(text) == "form 表单: is not UTF-8 text"

        status, _, text = await raw(browser, resolve, b"x" * 70000)
        assert status == 413 and refusal(text) == "form 表单: is over the console's limit of 65536 bytes"
        assert "提交的内容过大" in text

        multipart = (b'--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n' + csrf
                     + b'\r\n--b\r\nContent-Disposition: form-data; name="how"; filename="a.txt"\r\n\r\nrefused\r\n--b--\r\n')
        status, _, text = await raw(browser, resolve, multipart, {"Content-Type": "multipart/form-data; boundary=b"})
        assert status == 415 and "application/x-www-form-urlencoded" in refusal(text)

        status, text = await browser.act(resolve, how="refused", cause="原" * 501)
        assert status == 200 and "未能处理：cause 拒绝原因: is 501 characters, over the limit of 500" in text

        status, text = await browser.act("/births", key="HIS-\x001017")
        assert status == 400 and refusal(text) == "key 查找号码: must not contain control characters (such as NUL)"

        assert (await console.host.birth(birth_id)).state == "needs_review"  # none of it did anything
        assert actions(journal_at) == []
    no_errors_logged(caplog)


@pytest.mark.anyio
async def test_a_birth_or_page_that_does_not_exist_is_a_404_page_and_nothing_is_journaled(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await browser.login("林护士")
        await browser.get("/births")
        for action, data in (("resolve", {"how": "send_again"}), ("reveal", {}), ("void", {"reason": "重复"}),
                             ("amend", {"bke042": "HIS-1"})):
            status, text = await browser.act(f"/births/999999999999/{action}", **data)
            assert status == 404 and "没有这条登记" in text, action
            assert refusal(text) == "birth_id 登记号: no birth #999999999999 in the journal"
        status, text = await browser.get("/births/999999999999")
        assert status == 404 and refusal(text) == "birth_id 登记号: no birth #999999999999 in the journal"
        status, text = await browser.act("/births/9999999999999/resolve", how="send_again")  # more digits than an id has
        assert status == 404 and "没有这个页面" in text and "林护士（操作员）" in text
        status, text = await browser.get("/births/1/resolve")  # a form's address opened as a page
        assert status == 405 and "不能这样打开" in text and "GET" in refusal(text)
        status, text = await browser.get("/no/such/page")
        assert status == 404 and "控制台没有这个地址" in text
        status, text = await browser.get("/exchanges/424242")
        assert status == 404 and refusal(text) == "exchange_id 交易号: no exchange #424242 in the journal"
    assert actions(journal_at) == []
    no_errors_logged(caplog)


# --- 4. every console error is a page, in the console's words ----------------------------------------


@pytest.mark.anyio
async def test_a_refused_action_is_a_console_page_not_bare_text(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        in_review = await birth_in_review(console, 62)
        waiting = await console.host.record_birth(birth_record(63))
        await browser.login("林护士")
        await browser.get("/review")

        status, text = await browser.act(f"/births/{in_review}/resolve", how="bogus")
        assert status == 400 and refusal(text) == "how 处理方式: must be registered, refused or send_again"
        status, text = await browser.act("/parked/replay")
        assert status == 400 and refusal(text) == "event_id 事件: give event_id (one parked delivery) or plugin (all of a plugin's)"
        status, text = await browser.act(f"/births/{waiting.birth_id}/void", reason="重复")
        assert status == 409 and "未登记，不能作废" in text
        assert refusal(text) == (f"birth_id 登记号: birth #{waiting.birth_id} has no baz726 新生儿登记流水号:"
                                 " only a registered birth is voided")
        assert text.startswith("<!DOCTYPE html>") and f'<a href="/births/{waiting.birth_id}">返回</a>' in text
    assert actions(journal_at) == []


# --- 3. only acts that happened are journaled -------------------------------------------------------


@pytest.mark.anyio
async def test_a_void_refused_before_it_is_sent_journals_nothing(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(birth_record(64))
        await console.host.sync("upload")
        await browser.login("林护士")
        await browser.get(f"/births/{recorded.birth_id}")
        status, text = await browser.act(f"/births/{recorded.birth_id}/void", reason="重" * 2000)
        assert status == 200 and "作废未成功" in text
        assert "bae016 作废原因: is 4000 bytes in GBK, over the varchar2(100) limit" in text
        assert (await console.host.birth(recorded.birth_id)).state == "registered"
        assert actions(journal_at) == []  # the timeline does not say it was voided
        assert journal_rows(journal_at, "SELECT count(*) FROM exchanges WHERE funid = ?", (Funid.VOID.value,)) == [(0,)]

        sandbox.inject(Fault(kind="refuse", funid=Funid.VOID, cause="该登记已结算，不能作废"))
        status, text = await browser.act(f"/births/{recorded.birth_id}/void", reason="重复登记")
        assert status == 200 and "作废未成功" in text and "该登记已结算" in text
        assert (await console.host.birth(recorded.birth_id)).state == "registered"
    assert actions(journal_at) == [("林护士", "void", recorded.birth_id), ("林护士", "void not confirmed", recorded.birth_id)]
    [(detail,)] = journal_rows(journal_at, "SELECT detail FROM actions WHERE action = 'void not confirmed'")
    assert "该登记已结算" in detail


@pytest.mark.anyio
async def test_a_replay_of_nothing_is_refused_and_not_journaled(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at, delivery_attempts=1) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(birth_record(65))
        await console.host.sync("upload")  # delivered: nothing parked
        [(event_id,)] = journal_rows(journal_at, "SELECT id FROM events WHERE birth_id = ? AND hook = 'collection_result'",
                                     (recorded.birth_id,))
        await browser.login("林护士")
        await browser.get("/parked")
        status, text = await browser.act("/parked/replay", event_id="no-such-event")
        assert status == 404 and "没有这个事件" in text and refusal(text) == "event_id 事件: no such event in the journal"
        status, text = await browser.act("/parked/replay", event_id=event_id)
        assert status == 200 and "没有重新投递：这个事件没有搁置的投递" in text and "已重新排队" not in text
        status, text = await browser.act("/parked/replay", plugin="st_mary")
        assert status == 200 and "没有重新投递：插件 st_mary 没有搁置的投递" in text
    assert actions(journal_at) == []


# --- 2. a period or filter the request does not say is refused -------------------------------------


@pytest.mark.anyio
async def test_a_bad_period_is_refused_naming_the_parameter_never_another_period(
    tmp_path: Path, sandbox: Sandbox, journal_at: str
) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await browser.login("chen")
        today = datetime.now(CHINA_TIME).date()
        date_rule = "must be a date, YYYY-MM-DD, from 1970 to 2999 (e.g. 2026-12-01)"
        for query, shown in (
            ("from=2026-13-45", f"from 从: {date_rule}"),
            ("from=2026-11-05&to=garbage", f"to 到: {date_rule}"),
            ("from=%00", f"from 从: {date_rule}"),
            ("from=20261105", f"from 从: {date_rule}"),
            ("from=0001-01-01", f"from 从: {date_rule}"),
            ("from=2026-11-01&to=2026-10-01", "to 到: must not be before from 从 (2026-11-01)"),
            ("from=2999-01-01", f"to 到: must not be before from 从 (2999-01-01); without to, it is today ({today})"),
            ("by=day&from=2020-01-01&to=2026-12-01", "from 从: by day, a period is at most 366 days (by=month for longer)"),
            ("by=month&from=2000-01-01&to=2026-12-01", "from 从: by month, a period is at most 120 months"),
            ("by=week", "by 统计方式: must be one of day, month (or empty for day)"),
            ("by=<script>", "by 统计方式: must be one of day, month (or empty for day)"),
        ):
            status, text = await browser.get(f"/reconcile?{query}")
            assert (status, refusal(text)) == (400, shown), query
            assert "对账" in text and "<script>" not in text and "<svg" not in text
            async with browser.http.get(f"{console.url}/reconcile.csv?{query}") as response:
                assert response.status == 400 and response.headers["Content-Type"].startswith("text/html"), query
                assert "Content-Disposition" not in response.headers and refusal(await response.text()) == shown

        # what the query does say is honoured: a year by day, and 31 days ending at `to` alone
        year = f"from={today - timedelta(days=365)}&to={today}"
        status, text = await browser.get(f"/reconcile?by=day&{year}")
        assert status == 200 and len(re.findall(r'data-series="recorded"', text)) == 366
        status, text = await browser.get("/reconcile?to=2026-11-30")
        assert status == 200 and 'name="from" value="2026-10-31"' in text and 'name="to" value="2026-11-30"' in text
        status, text = await browser.get("/reconcile")
        assert status == 200 and f'name="to" value="{today}"' in text
        assert len(re.findall(r'data-series="recorded"', text)) == 31


@pytest.mark.anyio
async def test_an_unknown_filter_on_the_exchanges_and_births_lists_is_refused(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await console.host.record_birth(birth_record(66))
        await console.host.sync("upload")
        await browser.login("chen")
        status, text = await browser.get("/exchanges?funid=yb04.99")
        assert status == 400 and refusal(text).startswith(f"funid 交易: must be one of {Funid.COLLECT.value}, ")
        status, text = await browser.get("/exchanges?outcome=%3Cscript%3E")
        assert status == 400 and refusal(text).startswith("outcome 结果: must be one of sent, ok, refused,")
        assert "<script>" not in text and "data-outcome" not in text
        status, text = await browser.get(f"/exchanges?funid={Funid.COLLECT.value}&outcome=ok")
        assert status == 200 and re.findall(r'data-outcome="(\w+)"', text) == ["ok"]
        status, text = await browser.get("/births?date=2026-02-30")
        assert status == 400 and refusal(text).startswith("date 记录日期: must be a date")
        status, text = await browser.get("/births?state=lost")
        assert status == 400 and refusal(text).startswith("state 状态: must be one of pending, uploading,")


# --- 5. ids as the pages show them -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_birth_is_found_by_its_id_as_shown_and_a_registration_number_in_lower_case(
    tmp_path: Path, sandbox: Sandbox, journal_at: str
) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(birth_record(67))
        await console.host.sync("upload")
        number = (await console.host.birth(recorded.birth_id)).registration_number
        assert number is not None and number.startswith("XSE")
        await browser.login("chen")
        await browser.get("/births")
        for key in (f"#{recorded.birth_id}", f" # {recorded.birth_id} ", str(recorded.birth_id), number.lower(), number):
            async with browser.http.post(console.url + "/births", data={"csrf": browser.csrf, "key": key},
                                         allow_redirects=False) as response:
                assert (response.status, response.headers.get("Location")) == (303, f"/births/{recorded.birth_id}"), key
        status, text = await browser.act("/births", key="#99999")
        assert status == 404 and "没有找到对应的登记" in text
        status, text = await browser.act("/births", key="#五")
        assert status == 400 and refusal(text) == "无法查找：key 查找号码: after # comes a birth's id, up to 12 digits, as the pages show it (#5)"


@pytest.mark.anyio
async def test_every_form_of_the_console_refuses_bad_bytes_with_a_page(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One reader for every form: each POST route of the app (the ones added later included)
    answers a field that is not UTF-8, or holds NUL, with the console's 400 page naming it."""
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 68)
        await browser.login("林护士")
        await browser.get("/review")
        csrf = browser.csrf.encode()
        app = Console(console.host, section()).app()  # the served one's routes, listed
        routes = [r.resource.canonical for r in app.router.routes() if r.method == "POST" and r.resource is not None]
        assert len(routes) >= 10
        for route in routes:
            path = route.replace("{birth_id}", str(birth_id))
            for field, value, rule in ((b"reason", b"%C0%AF", "is not UTF-8 text"), (b"how", b"x%00", "must not contain control characters")):
                body = (b"" if route == "/login" else b"csrf=" + csrf + b"&") + field + b"=" + value
                status, kind, text = await raw(browser, path, body)
                assert status == 400 and kind.startswith("text/html"), (route, status, text[-200:])
                assert f"{field.decode()} {'作废原因' if field == b'reason' else '处理方式'}: {rule}" in html.unescape(text), route
        assert (await console.host.birth(birth_id)).state == "needs_review"
    assert actions(journal_at) == []
    no_errors_logged(caplog)
