"""Alerts (``ybplug_alert``): one per incident, a reminder at the configured interval, a
"resolved" when it clears, never a flood; the incident kept in the journal on disk; and the
built-in webhook plugin posting to a real HTTP server on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

import ybplug
from ybplug.alerts.config import AlertsSection
from ybplug.alerts.model import Alert
from ybplug.alerts.watch import Watcher
from ybplug.journal.console import claim_notice, open_incidents
from ybplug.config import ConfigError, WireConfig
from ybplug.errors import Outcome
from ybplug.hooks import hookimpl
from ybplug.host import Host
from ybplug.sandbox import SANDBOX_USR, Sandbox
from ybplug.wire import AuthenticationFailed

from pg_support import journal_rows
from support import birth_record, host_config
from test_webconsole import Hospital, birth_in_review, Served

PERSONAL = ("陈静", "HIS0")


class Pager:
    """A hospital's own ``ybplug_alert``: remembers every alert; ``failing`` makes it raise."""

    ybplug_name = "pager"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.failing = False

    @hookimpl
    def ybplug_alert(self, alert: Alert) -> None:
        if self.failing:
            raise ConnectionError("the pager service is down")
        self.alerts.append(alert)

    def take(self) -> list[tuple[str, str, int]]:
        taken = [(a.status, a.key, a.count) for a in self.alerts]
        self.alerts.clear()
        return taken


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def incidents(journal: str) -> list[tuple[Any, ...]]:
    """The journal's incidents as its own rows say (read straight from SQLite or PostgreSQL)."""
    return journal_rows(journal, "SELECT key, summary, notified_at IS NOT NULL, reminders, resolved_at IS NOT NULL"
                                 " FROM incidents ORDER BY id")


@pytest.mark.anyio
async def test_an_incident_fires_once_repeats_as_a_reminder_and_resolves(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection(remind_minutes=30)
    hospital, pager, clock = Hospital(), Pager(), Clock()
    config = host_config(tmp_path, sandbox, journal=journal_at, delivery_attempts=1, alerts=section)
    async with Host(config, plugins=[hospital, pager], entry_points=False, background=False) as host:
        watcher = Watcher(host, section, clock=clock)
        assert await watcher.check() == [] and pager.take() == []  # nothing wrong: nothing said

        hospital.failing = True  # the HIS database is down: the plugin's deliveries park
        await host.record_birth(birth_record(1))
        await host.sync("upload")
        [alert] = await watcher.check()
        assert pager.alerts == [alert]
        assert (alert.status, alert.key, alert.kind, alert.count) == ("firing", "parked:st_mary", "parked", 1)
        assert "st_mary" in alert.text and "搁置的投递" in alert.text and "重新投递" in alert.text
        assert not any(p in alert.message() for p in PERSONAL)
        pager.take()

        clock.now += 60  # the same incident a minute later, and again with more parked: no new alert
        assert await watcher.check() == []
        await host.record_birth(birth_record(2))
        await host.sync("upload")
        clock.now += 60
        assert await watcher.check() == [] and pager.take() == []
        assert incidents(journal_at) == [("parked:st_mary", "插件 st_mary 的投递已搁置: 2", 1, 0, 0)]

        clock.now += 30 * 60  # still open after remind_minutes: one reminder, with today's count
        assert pager.take() == [] and [a.status for a in await watcher.check()] == ["reminder"]
        assert pager.take() == [("reminder", "parked:st_mary", 2)]
        assert await watcher.check() == []

    # A restart (a new host and watcher on the same journal) remembers the open incident.
    async with Host(config, plugins=[hospital, pager], entry_points=False, background=False) as host:
        watcher = Watcher(host, section, clock=clock)
        clock.now += 60
        assert await watcher.check() == [] and pager.take() == []

        hospital.failing = False  # fixed: the operator replays, the plugin takes them
        await host.replay(plugin="st_mary")
        await host.deliver_due()
        clock.now += 60
        [resolved] = await watcher.check()
        assert (resolved.status, resolved.key) == ("resolved", "parked:st_mary")
        assert "已恢复" in resolved.message() and resolved.opened_at == alert.opened_at
        assert pager.take() == [("resolved", "parked:st_mary", 0)]
        assert await watcher.check() == [] and pager.take() == []
        assert incidents(journal_at) == [("parked:st_mary", "插件 st_mary 的投递已搁置: 2", 1, 1, 1)]

        hospital.failing = True  # parked again later: a new incident, a new first alert
        await host.record_birth(birth_record(3))
        await host.sync("upload")
        assert [(a.status, a.key) for a in await watcher.check()] == [("firing", "parked:st_mary")]
        assert len(incidents(journal_at)) == 2


@pytest.mark.anyio
async def test_an_alert_no_implementation_took_is_sent_again_at_the_next_look(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection()
    pager, clock = Pager(), Clock()
    async with Host(host_config(tmp_path, sandbox, journal=journal_at, alerts=section), plugins=[Hospital(), pager], entry_points=False,
                    background=False) as host:
        await birth_in_review(Served(host, "", Hospital(), sandbox), 4)
        watcher = Watcher(host, section, clock=clock)
        pager.failing = True
        assert [a.key for a in await watcher.check()] == ["review"]
        assert pager.take() == [] and incidents(journal_at)[0][2] == 0  # not marked as told
        pager.failing = False
        clock.now += 60
        assert [(a.status, a.key) for a in await watcher.check()] == [("firing", "review")]
        assert pager.take() == [("firing", "review", 1)]
        assert await watcher.check() == []


@pytest.mark.anyio
async def test_sign_in_refused_by_the_centre_fires_and_resolves_when_it_answers_again(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection()
    pager, clock = Pager(), Clock()
    wrong = WireConfig(url=sandbox.url, usr=SANDBOX_USR, pwd="not-the-password")
    async with Host(host_config(tmp_path, sandbox, journal=journal_at, wire=wrong, alerts=section), plugins=[pager],
                    entry_points=False, background=False) as host:
        await host.record_birth(birth_record(5))
        with pytest.raises(AuthenticationFailed):
            await host.sync("upload")
        [alert] = await Watcher(host, section, clock=clock).check()
    assert (alert.status, alert.key) == ("firing", "signin") and "usr、pwd" in alert.text
    assert "not-the-password" not in alert.message()
    async with Host(host_config(tmp_path, sandbox, journal=journal_at, alerts=section), plugins=[pager], entry_points=False,
                    background=False) as host:  # the password put right, the service restarted
        await host.replay()  # retry now
        await host.sync("upload")
        clock.now += 60
        assert [(a.status, a.key) for a in await Watcher(host, section, clock=clock).check()] == [("resolved", "signin")]


@pytest.mark.anyio
async def test_a_missed_daily_upload_crashing_voucher_and_stale_newborns_each_fire(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection(voucher_crashes=3, voucher_window_minutes=60)
    pager, clock = Pager(), Clock()
    async with Host(host_config(tmp_path, sandbox, journal=journal_at, alerts=section), plugins=[pager], entry_points=False,
                    background=False) as host:  # uploads "daily at 02:00"
        watcher = Watcher(host, section, clock=clock)
        await host.record_birth(birth_record(6))
        assert await watcher.check() == []  # not due yet
        clock.now += 2 * 86400  # two days on, nobody ran the worker
        [missed] = await watcher.check()
        assert (missed.key, missed.count) == ("upload", 1) and "工作进程可能没有运行" in missed.text

        await host.sync("upload")  # uploaded at last
        for _ in range(3):  # the voucher library crashed three times within the hour
            await host.run_journal(host.journal.record_exchange, "EcTrans", b"{}", Outcome.FAILED,
                                   "the voucher library crashed the worker process (signal 11)", clock.now - 60, 0.1)
        await host.run_journal(host.journal.mark_stale, -1.0)  # registered, and past the horizon
        fired = {(a.status, a.key, a.count) for a in await watcher.check()}
        assert fired == {("resolved", "upload", 0), ("firing", "voucher", 3), ("firing", "stale", 1)}
        clock.now += 3600  # the crashes are over an hour old
        assert [(a.status, a.key) for a in await watcher.check()] == [("resolved", "voucher")]
    assert not any(p in a.message() for a in pager.alerts for p in PERSONAL)


@pytest.mark.anyio
async def test_the_worker_watches_only_with_alerts_configured(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    pager = Pager()
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), plugins=[pager], entry_points=False, background=False) as host:
        await birth_in_review(Served(host, "", Hospital(), sandbox), 7)
    async with Host(host_config(tmp_path, sandbox, journal=journal_at), plugins=[pager], entry_points=False):
        await anyio.sleep(0.3)  # a worker without [alerts]
    assert pager.alerts == []
    section = AlertsSection(check_seconds=0.05)
    async with Host(host_config(tmp_path, sandbox, journal=journal_at, alerts=section), plugins=[pager], entry_points=False):
        with anyio.fail_after(10):
            while not pager.alerts:
                await anyio.sleep(0.05)
    assert [(a.status, a.key) for a in pager.alerts] == [("firing", "review")]


# --- the webhook plugin against a real HTTP server ---------------------------------------------------


class Robot:
    """A group robot on loopback: keeps what was posted, answers as WeCom/DingTalk do."""

    def __init__(self) -> None:
        self.posts: list[Any] = []
        self.answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.path_qs, request.content_type, await request.json()))
        return web.json_response(self.answer, status=self.status)


@asynccontextmanager
async def robot() -> AsyncIterator[tuple[Robot, str]]:
    bot = Robot()
    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", bot.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield bot, f"http://127.0.0.1:{runner.addresses[0][1]}/cgi-bin/webhook/send?key=robot-key-123"
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_the_webhook_posts_each_alert_as_a_group_robot_text_message(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with robot() as (bot, url):
        section = AlertsSection(webhooks=[url, "http://127.0.0.1:9/nobody-listens"], webhook_timeout=2)
        clock = Clock()
        async with Host(host_config(tmp_path, sandbox, journal=journal_at, alerts=section), entry_points=False, background=False) as host:
            served = Served(host, "", Hospital(), sandbox)
            birth_id = await birth_in_review(served, 8)
            watcher = Watcher(host, section, clock=clock)
            await watcher.check()
            [(path, kind, body)] = bot.posts
            assert path.endswith("key=robot-key-123") and kind == "application/json"
            assert set(body) == {"msgtype", "text"} and body["msgtype"] == "text"
            content = body["text"]["content"]
            assert content.startswith("【ybplug 告警】新生儿登记待复核") and "定点机构管理系统" in content
            assert not any(p in content for p in PERSONAL)

            bot.answer = {"errcode": 93000, "errmsg": "invalid webhook url"}  # the robot refuses: told again later
            [held] = sandbox.registrations()
            await host.resolve_review(birth_id, operator="林护士", registration_number=held["baz726"], eligible=True)
            clock.now += 60
            assert [a.status for a in await watcher.check()] == ["resolved"]
            assert len(bot.posts) == 1 + 2  # tried twice
            assert "已恢复" in bot.posts[-1][2]["text"]["content"]

            bot.answer = {"errcode": 0, "errmsg": "ok"}
            await birth_in_review(served, 9)
            bot.answer, bot.status = {"errcode": 0}, 503
            await watcher.check()  # no URL took it: not marked told
            bot.status = 200
            clock.now += 60
            assert [a.status for a in await watcher.check()] == ["firing"]
            assert bot.posts[-1][2]["text"]["content"].startswith("【ybplug 告警】")
    assert "robot-key-123" not in caplog.text and "webhook 2" in caplog.text


def test_a_webhook_that_is_not_a_url_is_refused_when_the_config_loads(tmp_path: Path) -> None:
    (tmp_path / "ybplug.toml").write_text('[alerts]\nwebhooks = ["qyapi.weixin.qq.com/send?key=k"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="http") as caught:
        ybplug.Config.load(tmp_path / "ybplug.toml")
    assert "key=k" not in str(caught.value)


@pytest.mark.anyio
async def test_two_workers_on_one_journal_tell_an_incident_once(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection()
    pagers, clock = [Pager(), Pager()], Clock()
    config = host_config(tmp_path, sandbox, journal=journal_at, alerts=section)
    async with Host(config, plugins=[pagers[0]], entry_points=False, background=False) as one, \
            Host(config, plugins=[pagers[1]], entry_points=False, background=False) as other:
        await birth_in_review(Served(one, "", Hospital(), sandbox), 10)
        watchers = [Watcher(one, section, clock=clock), Watcher(other, section, clock=clock)]
        for _ in range(3):  # looking at the same moment, again and again
            async with anyio.create_task_group() as tg:
                for watcher in watchers:
                    tg.start_soon(watcher.check)
        assert sorted(p.take() for p in pagers) == [[], [("firing", "review", 1)]]
        # the journal's claim: of two processes that read the same last notice, one tells
        [incident] = (await one.run_journal(open_incidents, one.journal)).values()
        later = clock.now + 99999
        claims = [await h.run_journal(claim_notice, h.journal, "review", incident.notified_at, later, reminder=True)
                  for h in (one, other)]
        assert claims == [True, False]


@pytest.mark.anyio
async def test_readyz_says_so_while_the_centre_refuses_the_sign_in(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    from test_webconsole import Browser, served

    wrong = WireConfig(url=sandbox.url, usr=SANDBOX_USR, pwd="not-the-password")
    async with served(tmp_path, sandbox, journal=journal_at, wire=wrong) as console, Browser(console.url) as browser:
        assert await browser.get("/readyz") == (200, "ready\n")
        await console.host.record_birth(birth_record(11))
        with pytest.raises(AuthenticationFailed):
            await console.host.sync("upload")
        assert await browser.get("/readyz") == (503, "sign-in refused by the centre\n")
