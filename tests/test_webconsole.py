"""The operations console (``ybplug console``) over HTTP on loopback, against a real host, its
journal on disk and the sandbox centre: what a clerk and an operator do in a browser, and what
they must not be able to do."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

import ybplug
from ybplug.codes import Funid
from ybplug.console.app import AccessLog, Console
from ybplug.console.config import ConsoleSection, ConsoleUser
from ybplug.config import ConfigError
from ybplug.console.passwords import hash_password, verify_password
from ybplug.hooks import hookimpl
from ybplug.fields import CHINA_TIME
from ybplug.host import Host
from ybplug.privacy import mask
from ybplug.sandbox import Fault, Sandbox

from pg_support import fresh_schema, journal_rows
from support import birth_record, host_config

PASSWORD = "correct horse 马"
USERS = [("林护士", "operator"), ("chen", "viewer")]


class Hospital:
    """A hospital plugin remembering its collection results; ``failing`` makes it raise."""

    ybplug_name = "st_mary"

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.failing = False

    @hookimpl
    async def collection_result(
        self, result: ybplug.CollectionResult, birth_id: int, event_id: str, resolved_by: str | None
    ) -> None:
        if self.failing:
            raise RuntimeError("the HIS database is down")
        self.results.append({"result": result, "birth_id": birth_id, "resolved_by": resolved_by})


@dataclass
class Served:
    host: Host
    url: str
    hospital: Hospital
    sandbox: Sandbox


def section(**overrides: Any) -> ConsoleSection:
    users = [ConsoleUser(name=n, role=r, password_hash=hash_password(PASSWORD)) for n, r in USERS]  # type: ignore[arg-type]
    return ConsoleSection(users=users, **overrides)


@asynccontextmanager
async def served(tmp_path: Path, sandbox: Sandbox, *, console: ConsoleSection | None = None, **config: Any) -> AsyncIterator[Served]:
    """A console on 127.0.0.1 (a free port) over a one-shot host, as ``ybplug console`` runs it."""
    settings = console or section()
    hospital = Hospital()
    async with Host(host_config(tmp_path, sandbox, console=settings, **config), plugins=[hospital],
                    entry_points=False, background=False) as host:
        runner = web.AppRunner(Console(host, settings).app(), access_log_class=AccessLog)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield Served(host, f"http://127.0.0.1:{runner.addresses[0][1]}", hospital, sandbox)
        finally:
            await runner.cleanup()


async def birth_in_review(served: Served, n: int) -> int:
    """A birth whose upload reached the centre with its reply lost, then was refused: in review."""
    host, sandbox = served.host, served.sandbox
    recorded = await host.record_birth(birth_record(n))
    sandbox.inject(Fault(kind="drop_after_commit", funid=Funid.COLLECT))
    assert (await host.sync("upload"))["upload_failed"] == 1
    sandbox.inject(Fault(kind="refuse", funid=Funid.COLLECT, cause="系统繁忙"))
    await host.replay()
    assert (await host.sync("upload"))["needs_review"] == 1
    return recorded.birth_id


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """What a browser does with the console: keeps its cookies, posts the forms it was given."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies from an IP address
        self.csrf = ""

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def get(self, path: str, *, follow: bool = True) -> tuple[int, str]:
        async with self.http.get(self.url + path, allow_redirects=follow) as response:
            text = await response.text()
            self._remember(text)
            return response.status, text

    async def post(self, path: str, data: dict[str, str], *, follow: bool = True) -> tuple[int, str]:
        async with self.http.post(self.url + path, data=data, allow_redirects=follow) as response:
            text = await response.text()
            self._remember(text)
            return response.status, text

    def _remember(self, text: str) -> None:
        found = _CSRF.search(text)
        if found:
            self.csrf = found.group(1)

    async def login(self, name: str, password: str = PASSWORD) -> tuple[int, str]:
        await self.get("/login")
        return await self.post("/login", {"csrf": self.csrf, "name": name, "password": password})

    async def act(self, path: str, **data: str) -> tuple[int, str]:
        """Post a form as the page gave it: with its CSRF token."""
        return await self.post(path, {"csrf": self.csrf, **data})


# --- login, sessions, CSRF, roles ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_pages_need_a_login_and_health_and_metrics_do_not(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        for path in ("/", "/review", "/parked", "/births", "/births/1"):
            status, _ = await browser.get(path)
            assert status == 200 and browser.csrf  # the login page, with its form
            async with browser.http.get(console.url + path, allow_redirects=False) as response:
                assert (response.status, response.headers["Location"]) == (303, "/login")
        for path, data in (("/parked/replay", {"event_id": "x"}), ("/births/1/resolve", {"how": "send_again"}), ("/logout", {})):
            status, text = await browser.post(path, data)
            assert status == 403 and "请先登录" in text
        assert await browser.get("/healthz") == (200, "ok\n")
        assert await browser.get("/readyz") == (200, "ready\n")
        status, metrics = await browser.get("/metrics")
        assert status == 200 and 'ybplug_births{state="pending"} 0' in metrics


@pytest.mark.anyio
async def test_a_login_gives_an_httponly_samesite_session_that_logout_ends(tmp_path: Path, sandbox: Sandbox) -> None:
    async with served(tmp_path, sandbox) as console, Browser(console.url) as browser:
        await browser.get("/login")
        async with browser.http.post(
            console.url + "/login", data={"csrf": browser.csrf, "name": "林护士", "password": PASSWORD}, allow_redirects=False
        ) as response:
            assert (response.status, response.headers["Location"]) == (303, "/")
            cookie = response.cookies["ybplug_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
            assert len(cookie.value) >= 40 and "林" not in cookie.value and "operator" not in cookie.value
        status, text = await browser.get("/")
        assert status == 200 and "概览" in text and "林护士（操作员）" in text
        stolen = cookie.value
        assert (await browser.act("/logout"))[0] == 200
        async with aiohttp.ClientSession(cookies={"ybplug_session": stolen}) as other:
            async with other.get(console.url + "/", allow_redirects=False) as response:
                assert response.status == 303  # the token is worth nothing after logout


@pytest.mark.anyio
async def test_a_wrong_password_is_refused_and_an_address_that_keeps_guessing_must_wait(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    async with served(tmp_path, sandbox, console=section(login_attempts=3)) as console, Browser(console.url) as browser:
        for guess in ("password1", "123456789"):
            status, text = await browser.login("林护士", guess)
            assert status == 401 and "用户名或密码错误" in text
        status, text = await browser.login("nobody", "whatever1")
        assert status == 401 and "用户名或密码错误" in text  # an unknown name says the same
        status, text = await browser.login("林护士")  # the right password, too late
        assert status == 429 and "登录失败次数过多" in text
        assert "概览" not in (await browser.get("/"))[1]
    assert not any(secret in caplog.text for secret in ("password1", "123456789", PASSWORD))


@pytest.mark.anyio
async def test_a_login_form_not_from_the_console_is_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    async with served(tmp_path, sandbox) as console, Browser(console.url) as browser:
        status, text = await browser.post("/login", {"csrf": "forged", "name": "林护士", "password": PASSWORD})
        assert status == 403 and "概览" not in text


@pytest.mark.anyio
async def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 1)
        await browser.login("林护士")
        for data in ({"how": "refused", "cause": "重复"}, {"how": "refused", "cause": "重复", "csrf": "guessed"}):
            status, text = await browser.post(f"/births/{birth_id}/resolve", data)
            assert status == 403 and "表单已失效" in text
        assert (await console.host.birth(birth_id)).state == "needs_review"


@pytest.mark.anyio
async def test_a_viewer_sees_the_reviews_but_cannot_resolve_one(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 2)
        await browser.login("chen")
        status, text = await browser.get("/review")
        assert status == 200 and f'href="/births/{birth_id}"' in text and "系统繁忙" in text
        assert "/resolve" not in text  # no forms for a viewer
        status, text = await browser.act(f"/births/{birth_id}/resolve", how="refused", cause="重复")
        assert status == 403 and "查看员只能查看" in text
        assert (await console.host.birth(birth_id)).state == "needs_review"


# --- the actions -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_operator_enters_the_baz726_found_at_the_centre(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 3)
        [held] = sandbox.registrations()
        await browser.login("林护士")
        status, text = await browser.get("/review")
        assert f"/births/{birth_id}/resolve" in text
        status, text = await browser.act(f"/births/{birth_id}/resolve", how="registered", baz726=held["baz726"].lower(), eligible="yes")
        assert status == 200 and "现为「已登记」" in text and held["baz726"] in text
        # the timeline: recorded, the upload whose reply was lost, the refusal, the resolution, its delivery
        assert re.findall(r'data-kind="(\w+)"', text) == ["recorded", "exchange", "exchange", "action", "delivery"]
        assert "collection_result → st_mary" in text
        assert "结果未知" in text and "系统繁忙" in text and "registered as" in text
        status_after = await console.host.birth(birth_id)
        assert (status_after.state, status_after.registration_number, status_after.eligible) == ("registered", held["baz726"], True)
        assert [(a.operator, a.action) for a in status_after.actions] == [("林护士", "resolve review")]
        [delivered] = console.hospital.results
        assert (delivered["birth_id"], delivered["resolved_by"]) == (birth_id, "林护士")
        assert delivered["result"].registration_number == held["baz726"]
        assert "没有待复核的登记" in (await browser.get("/review"))[1]


@pytest.mark.anyio
async def test_a_wrong_baz726_is_refused_with_the_rule_and_the_review_stays(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 4)
        await browser.login("林护士")
        await browser.get(f"/births/{birth_id}")
        rule = "未能处理：baz726 新生儿登记流水号: a registration number is 16 characters: XSE and 13 digits"
        for typed in ("XSE123", "XSE" + "1" * 5000):
            status, text = await browser.act(f"/births/{birth_id}/resolve", how="registered", baz726=typed, eligible="no")
            assert status == 200 and rule in text and "1" * 100 not in text  # the rule, not the typed text again
        assert (await console.host.birth(birth_id)).state == "needs_review"
        assert journal_rows(journal_at, "SELECT count(*) FROM actions") == [(0,)]


@pytest.mark.anyio
async def test_an_operator_marks_a_review_refused_and_the_cause_is_shown_as_text(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 5)
        await browser.login("林护士")
        await browser.get(f"/births/{birth_id}")
        status, text = await browser.act(f"/births/{birth_id}/resolve", how="refused", cause="<b>母亲证件号码错误</b>")
        assert status == 200 and "现为「被拒绝」" in text
        assert "&lt;b&gt;母亲证件号码错误&lt;/b&gt;" in text and "<b>母亲" not in text
        assert (await console.host.birth(birth_id)).reason == "<b>母亲证件号码错误</b>"
        [delivered] = console.hospital.results
        assert not delivered["result"].ok and delivered["resolved_by"] == "林护士"


@pytest.mark.anyio
async def test_send_again_uploads_the_birth_once_more(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 6)
        before = len((await console.host.birth(birth_id)).exchanges)
        await browser.login("林护士")
        await browser.get(f"/births/{birth_id}")
        status, text = await browser.act(f"/births/{birth_id}/resolve", how="send_again")
        assert status == 200 and "已清除疑问并重新上传" in text
        after = await console.host.birth(birth_id)
        assert len(after.exchanges) == before + 1 and after.exchanges[-1].funid == Funid.COLLECT
        assert after.actions[-1].operator == "林护士" and "send again" in after.actions[-1].detail


@pytest.mark.anyio
async def test_an_operator_replays_a_parked_delivery_once_the_plugin_works(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at, delivery_attempts=1) as console, Browser(console.url) as browser:
        console.hospital.failing = True
        recorded = await console.host.record_birth(birth_record(7))
        await console.host.sync("upload")
        status_ = await console.host.status()
        [parked] = status_["parked"]
        assert (parked["plugin"], parked["birth_id"]) == ("st_mary", recorded.birth_id)

        await browser.login("林护士")
        status, text = await browser.get("/parked")
        assert parked["event_id"] in text and "the HIS database is down" in text
        console.hospital.failing = False
        status, text = await browser.act("/parked/replay", event_id=parked["event_id"])
        assert status == 200 and "已重新排队 1 个投递，本次投递成功 1 个" in text
        assert "没有搁置的投递" in text
        [delivered] = console.hospital.results
        assert delivered["birth_id"] == recorded.birth_id and delivered["result"].ok


# --- what is shown, what is kept out ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_birth_page_masks_personal_fields_and_no_url_or_log_line_holds_them(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    record = birth_record(8)
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(record)
        await console.host.sync("upload")
        await browser.login("林护士")
        await browser.get("/births")
        async with browser.http.post(
            console.url + "/births", data={"csrf": browser.csrf, "key": record["bke042"]}, allow_redirects=False
        ) as response:
            assert response.headers["Location"] == f"/births/{recorded.birth_id}"
        status, text = await browser.get(f"/births/{recorded.birth_id}")
        assert status == 200 and "已登记" in text and record["bke042"] in text
        assert mask(record["bkee35"]) in text and mask(record["bkee37"]) in text and mask(str(record["bkee33"])) in text
        status, missing = await browser.post("/births", {"csrf": browser.csrf, "key": "HIS-none"})
        assert status == 404 and "没有找到" in missing
    personal = [record["bkee35"], record["bkee37"], str(record["bkee33"]), "陈静之子"]
    assert not any(value in text for value in personal)
    access = [r.getMessage() for r in caplog.records if r.name == "ybplug.console"]
    assert any(f"/births/{recorded.birth_id} 200" in line for line in access)
    assert not any(value in line for line in access for value in [*personal, record["bke042"], "?"])


@pytest.mark.anyio
async def test_the_overview_shows_the_journals_counts(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await birth_in_review(console, 9)
        await console.host.record_birth(birth_record(10))
        await console.host.sync("upload")
        await console.host.record_birth(birth_record(11))
        await browser.login("chen")
        status, text = await browser.get("/")
        assert status == 200
        for state, count in (("registered", 1), ("needs_review", 1), ("pending", 1)):
            assert f'<span data-state="{state}">{count}</span>' in text
        assert "1 条登记待复核" in text and "st_mary" in text
        now = datetime.now(CHINA_TIME)  # uploads "daily at 02:00" (host_config): the next 02:00, China time
        two = now.replace(hour=2, minute=0, second=0, microsecond=0)
        expected = two if two > now else two + timedelta(days=1)
        assert f'<span data-next="upload">{expected:%Y-%m-%d %H:%M:%S}</span>' in text
        assert '<span data-next="realname">已到期：工作进程运行时立即查询</span>' in text

        await console.host.sync("realname")
        [(finished,)] = journal_rows(journal_at, "SELECT finished_at FROM runs WHERE job = 'realname'")
        text = (await browser.get("/"))[1]
        due = datetime.fromtimestamp(finished + 86400, CHINA_TIME)  # realname_interval's default: a day
        assert f'<span data-next="realname">{due:%Y-%m-%d %H:%M:%S}</span>' in text


@pytest.mark.anyio
async def test_the_overview_tells_whether_the_centre_answered_lately(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await browser.login("chen")
        assert 'data-centre="none"' in (await browser.get("/"))[1]
        await console.host.record_birth(birth_record(16))
        await console.host.sync("upload")
        text = (await browser.get("/"))[1]
        assert 'data-centre="answered"' in text and "中心有应答" in text
        await console.host.record_birth(birth_record(17))
        sandbox.inject(Fault(kind="http_error", funid=Funid.COLLECT, status=404))
        assert (await console.host.sync("upload"))["upload_failed"] == 1
        text = (await browser.get("/"))[1]
    assert 'data-centre="unanswered"' in text and "最近一次交易未得到中心应答" in text
    rows = dict(re.findall(r"<tr><td>(最近一次[^<]*)</td>(.*?)</tr>", text))
    assert "未送达" in rows["最近一次交易"] and "成功" not in rows["最近一次交易"]
    assert "成功" in rows["最近一次得到应答"] and Funid.COLLECT in rows["最近一次得到应答"]


@pytest.mark.anyio
async def test_the_exchanges_page_lists_the_journals_exchanges_and_filters_them(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await console.host.record_birth(birth_record(18))
        await console.host.sync("upload")
        lost = await console.host.record_birth(birth_record(19))
        sandbox.inject(Fault(kind="http_error", funid=Funid.COLLECT, status=404))
        await console.host.sync("upload")
        await browser.login("chen")
        everything = (await browser.get("/exchanges"))[1]
        only = (await browser.get(f"/exchanges?funid={Funid.COLLECT}&outcome=not_delivered"))[1]
    journaled = [r[0] for r in journal_rows(journal_at, "SELECT outcome FROM exchanges ORDER BY id DESC")]
    assert "not_delivered" in journaled and "ok" in journaled
    assert re.findall(r'data-outcome="([a-z_]+)"', everything) == journaled
    assert re.findall(r'data-outcome="([a-z_]+)"', only) == ["not_delivered"]
    assert f'href="/births/{lost.birth_id}"' in only


@pytest.mark.anyio
async def test_the_births_list_by_day_and_state_matches_the_journal(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        registered = await console.host.record_birth(birth_record(21))
        await console.host.sync("upload")
        waiting = [await console.host.record_birth(birth_record(n)) for n in (22, 23)]
        [(created,)] = journal_rows(journal_at, "SELECT created_at FROM births WHERE id = ?", (registered.birth_id,))
        day = datetime.fromtimestamp(created, CHINA_TIME).date()
        await browser.login("chen")
        listed = (await browser.get(f"/births?date={day}"))[1]
        only = (await browser.get(f"/births?date={day}&state=registered"))[1]
        other_day = (await browser.get(f"/births?date={day - timedelta(days=3)}"))[1]
        any_day = (await browser.get("/births?date=&state=pending"))[1]

    def ids(text: str) -> list[int]:
        return [int(i) for i in re.findall(r'<tr><td><a href="/births/(\d+)">', text)]

    newest_first = [w.birth_id for w in reversed(waiting)] + [registered.birth_id]
    assert ids(listed) == newest_first
    assert ids(only) == [registered.birth_id] and '<span data-state="registered">已登记</span>' in only
    assert ids(other_day) == [] and "没有符合条件的登记" in other_day
    assert ids(any_day) == [w.birth_id for w in reversed(waiting)]
    assert "陈静" not in listed  # the mother's name: the list shows no personal field


@pytest.mark.anyio
async def test_metrics_match_the_journal(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at, delivery_attempts=1) as console, Browser(console.url) as browser:
        await birth_in_review(console, 12)
        console.hospital.failing = True
        await console.host.record_birth(birth_record(13))
        await console.host.sync("upload")
        await console.host.record_birth(birth_record(14))
        status, text = await browser.get("/metrics")
    assert status == 200
    # Prometheus' own parser reads the scrape (a malformed line raises), every sample by name and labels.
    scraped = {
        sample.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sample.labels.items()) + "}" if sample.labels else ""): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }
    births = dict(journal_rows(journal_at, "SELECT state, count(*) FROM births GROUP BY state"))
    exchanges = journal_rows(journal_at, "SELECT funid, outcome, count(*) FROM exchanges GROUP BY funid, outcome")
    [(parked,)] = journal_rows(journal_at, "SELECT count(*) FROM deliveries WHERE state = 'parked' AND plugin = 'st_mary'")
    assert births == {"registered": 1, "needs_review": 1, "pending": 1}
    for state in ("pending", "registered", "needs_review", "refused", "voided", "real_named", "stale", "uploading"):
        assert scraped[f'ybplug_births{{state="{state}"}}'] == births.get(state, 0)
    assert parked == 1 and scraped['ybplug_deliveries{plugin="st_mary",state="parked"}'] == 1
    assert exchanges and all(scraped[f'ybplug_exchanges{{funid="{f}",outcome="{o}"}}'] == n for f, o, n in exchanges)
    assert scraped[f'ybplug_exchanges{{funid="{Funid.COLLECT}",outcome="ok"}}'] == 1
    assert "陈静" not in text and "HIS0" not in text


@pytest.mark.anyio
async def test_readyz_on_postgresql_follows_the_database(tmp_path: Path, sandbox: Sandbox) -> None:
    """A connection the server cut is made again (still ready); a journal whose tables are gone
    is not ready, and says so."""
    psycopg = pytest.importorskip("psycopg")
    with fresh_schema() as url:
        name = f"ybplug_readyz_{os.getpid()}"  # this console's connections only: the server is shared
        async with served(tmp_path, sandbox, journal=f"{url}&application_name={name}") as console, \
                Browser(console.url) as browser:
            await console.host.record_birth(birth_record(20))
            assert await browser.get("/readyz") == (200, "ready\n")
            with psycopg.connect(url, autocommit=True) as admin:
                [(cut,)] = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (name,)
                ).fetchall()
                assert cut >= 1
                assert await browser.get("/readyz") == (200, "ready\n")
                admin.execute(f"DROP SCHEMA {url.rsplit('%3D', 1)[1]} CASCADE")
            status, text = await browser.get("/readyz")
            assert status == 503 and text.startswith("journal ")
            assert await browser.get("/readyz") == (503, "journal lost\n")


# --- the command ---------------------------------------------------------------------------------------


YBPLUG = str(Path(sys.executable).parent / "ybplug")


def test_add_user_prints_a_line_the_config_accepts_and_the_password_verifies(tmp_path: Path) -> None:
    done = subprocess.run([YBPLUG, "console", "add-user", "林护士", "--role", "operator"], input="s3cret-pass\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "s3cret-pass" not in done.stdout + done.stderr
    line = done.stdout.strip()
    (tmp_path / "ybplug.toml").write_text(f"[console]\nusers = [\n  {line}\n]\n", encoding="utf-8")
    config = ybplug.Config.load(tmp_path / "ybplug.toml")
    assert config.console is not None
    [user] = config.console.users
    assert (user.name, user.role) == ("林护士", "operator")
    assert verify_password("s3cret-pass", user.password_hash) and not verify_password("s3cret-pasS", user.password_hash)
    assert "scrypt" not in repr(config)

    short = subprocess.run([YBPLUG, "console", "add-user", "x", "--role", "viewer"], input="short\n",
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and "at least 8 characters" in short.stderr  # a usage error and "Traceback" not in short.stderr


def test_add_user_with_a_config_writes_the_account_into_it_and_keeps_the_rest(tmp_path: Path) -> None:
    def add(name: str, role: str, config: Path, password: str = "s3cret-pass") -> subprocess.CompletedProcess[str]:
        return subprocess.run([YBPLUG, "console", "add-user", name, "--role", role, "-c", str(config)],
                              input=password + "\n", capture_output=True, text=True, timeout=60)

    written = tmp_path / "ybplug.toml"
    original = ('journal = "journal.db"  # the ward\'s journal\n\n[console]\nlisten = "127.0.0.1:9000"\n'
                'users = [\n  # the clerks\n]\n\n[alerts]\ncheck_seconds = 30\n')
    written.write_text(original, encoding="utf-8")
    assert add("林护士", "operator", written).returncode == 0
    assert add("chen", "viewer", written, "another-pass").returncode == 0
    text = written.read_text(encoding="utf-8")
    assert "# the ward's journal" in text and "# the clerks" in text and "s3cret-pass" not in text
    config = ybplug.Config.load(written)
    assert config.console is not None and config.alerts is not None and config.alerts.check_seconds == 30
    assert config.console.listen == "127.0.0.1:9000"
    assert [(u.name, u.role) for u in config.console.users] == [("林护士", "operator"), ("chen", "viewer")]
    assert verify_password("s3cret-pass", config.console.users[0].password_hash)
    assert verify_password("another-pass", config.console.users[1].password_hash)

    taken = add("chen", "operator", written)  # the name is taken: one line, the file as it was
    assert taken.returncode == 2 and "already" in taken.stderr and "Traceback" not in taken.stderr
    assert written.read_text(encoding="utf-8") == text

    bare = tmp_path / "bare.toml"  # no [console] yet: the account is appended as a table
    bare.write_text('journal = "journal.db"\n', encoding="utf-8")
    assert add("lin", "operator", bare).returncode == 0
    loaded = ybplug.Config.load(bare)
    assert loaded.console is not None and [u.name for u in loaded.console.users] == ["lin"]


def test_a_config_with_a_password_instead_of_a_hash_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text(
        '[console]\nusers = [{name = "lin", role = "operator", password_hash = "hunter22"}]\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="add-user") as caught:
        ybplug.Config.load(tmp_path / "ybplug.toml")
    assert "hunter22" not in str(caught.value)


class ConsoleProcess:
    """``ybplug [-v] console`` on the journal, with a viewer ``lin``: its url, and its log once stopped."""

    def __init__(self, url: str, log: bytearray) -> None:
        self.url, self._log = url, log

    @property
    def log(self) -> str:
        return self._log.decode()


@asynccontextmanager
async def console_process(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, *options: str
) -> AsyncIterator[ConsoleProcess]:
    line = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [YBPLUG, "console", "add-user", "lin", "--role", "viewer"], input=PASSWORD + "\n",
        capture_output=True, text=True, timeout=60).stdout.strip())
    (tmp_path / "ybplug.toml").write_text(
        f'journal = "{journal_at}"\n[wire]\nurl = "{sandbox.url}"\n[console]\nlisten = "127.0.0.1:0"\nusers = [{line}]\n',
        encoding="utf-8",
    )
    process = await anyio.open_process([YBPLUG, *options, "console", "-c", str(tmp_path / "ybplug.toml")], stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        seen = bytearray()
        with anyio.fail_after(30):
            while (found := re.search(rb"console at (http://127\.0\.0\.1:\d+/)", seen)) is None:
                seen += await process.stderr.receive()
        yield ConsoleProcess(found.group(1).decode().rstrip("/"), seen)
        process.terminate()
        with anyio.fail_after(15):
            assert await process.wait() == 0  # stopped cleanly
            async for chunk in process.stderr:
                seen += chunk
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.anyio
async def test_ybplug_console_serves_the_configured_journal_until_stopped(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        await host.record_birth(birth_record(15))
    async with console_process(tmp_path, sandbox, journal_at) as console, Browser(console.url) as browser:
        assert await browser.get("/readyz") == (200, "ready\n")
        status, text = await browser.login("lin")
        assert status == 200 and '<span data-state="pending">1</span>' in text


@pytest.mark.anyio
async def test_ybplug_console_writes_an_access_line_per_request_without_queries_or_search_terms(
    tmp_path: Path, sandbox: Sandbox, journal_at: str
) -> None:
    """The README's access log, as `ybplug -v console` writes it (the CLI silences aiohttp's own):
    method, path and status of each request; never a query string, a form field, or a path no
    route matched (it may be anything typed into the address bar)."""
    record = birth_record(24)
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), entry_points=False, background=False) as host:
        recorded = await host.record_birth(record)
    async with console_process(tmp_path, sandbox, journal_at, "-v") as console:
        async with Browser(console.url) as browser:
            await browser.login("lin")
            assert (await browser.get(f"/births/{recorded.birth_id}"))[0] == 200
            assert (await browser.get(f"/exchanges?funid={Funid.COLLECT}&outcome=ok&note={record['bkee35']}"))[0] == 200
            assert (await browser.act("/births", key=record["bke042"]))[0] == 200
            assert (await browser.get(f"/births/{record['bkee35']}"))[0] == 404
    log = console.log
    access = re.findall(r"INFO ybplug\.console: 127\.0\.0\.1 ((?:GET|POST) .+ \d{3}) \d+\.\d{3}s$", log, re.MULTILINE)
    assert access == [
        "GET /login 200", "POST /login 303", "GET / 200", f"GET /births/{recorded.birth_id} 200", "GET /exchanges 200",
        "POST /births 303", f"GET /births/{recorded.birth_id} 200", "GET (no such page) 404",
    ]
    assert "INFO ybplug.console: 127.0.0.1 GET /exchanges 200" in log
    assert "?" not in "".join(access) and record["bkee35"] not in log and record["bke042"] not in log
