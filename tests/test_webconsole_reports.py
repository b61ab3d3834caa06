"""The console's reconciliation (page, chart, CSV) and alerts pages, over HTTP against a real
host, journal and sandbox: the figures are checked against the journal's own rows."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ybplug.alerts.config import AlertsSection
from ybplug.alerts.watch import Watcher
from ybplug.codes import Funid
from ybplug.fields import CHINA_TIME, with_check_digit
from ybplug.privacy import mask
from ybplug.sandbox import Fault, Sandbox

from pg_support import journal_rows
from support import birth_record
from test_webconsole import Browser, Served, birth_in_review, served

COLUMNS = ["日期", "记录", "已上传", "已登记", "可预参保", "被拒绝", "待复核", "已作废", "已实名", "超期未实名"]


async def births_of_every_kind(console: Served, journal: str) -> None:
    """Registered, stale, real-named, voided, refused, in review, pending; recorded
    today, three days ago and forty days ago."""
    host, sandbox = console.host, console.sandbox
    await host.record_birth(birth_record(45))
    await host.sync("upload")
    await host.run_journal(host.journal.mark_stale, -1.0)  # #1: registered long ago, never real-named
    for n in (41, 42):
        await host.record_birth(birth_record(n))
    await host.record_birth(birth_record(47, mother="nonlocal"))
    await host.sync("upload")
    numbers = [r["baz726"] for r in sandbox.registrations()]
    sandbox.real_name(numbers[1], id_number=with_check_digit("35020320261125004"), name="陈小兰")
    await host.sync("realname")
    await host.void(numbers[2], "重复登记")
    await host.record_birth(birth_record(43))
    sandbox.inject(Fault(kind="refuse", funid=Funid.COLLECT, cause="母亲证件号码错误"))
    await host.sync("upload")
    await birth_in_review(console, 44)
    await host.record_birth(birth_record(46))  # waiting for the 02:00 upload
    # move some back in time, as if recorded earlier
    journal_rows(journal, "UPDATE births SET created_at = created_at - 3 * 86400 WHERE id IN (2, 3)")
    journal_rows(journal, "UPDATE births SET created_at = created_at - 40 * 86400 WHERE id = 5")


def expected(journal: str, by: str) -> dict[str, list[int]]:
    """The reconciliation worked out from the journal's rows, in Python."""
    rows = journal_rows(journal, "SELECT created_at, state, registration_number, eligibility FROM births")
    found: dict[str, Counter[str]] = {}
    for created, state, number, eligibility in rows:
        day = datetime.fromtimestamp(created, CHINA_TIME).date().isoformat()
        c = found.setdefault(day if by == "day" else day[:7], Counter())
        c["recorded"] += 1
        c["uploaded"] += state not in ("pending", "uploading")
        c["registered"] += number is not None
        c["eligible"] += number is not None and eligibility == "1"
        c["state " + state] += 1
    keys = ["recorded", "uploaded", "registered", "eligible",
            *(f"state {s}" for s in ("refused", "needs_review", "voided", "real_named", "stale"))]
    return {period: [c[k] for k in keys] for period, c in found.items()}


def parse_csv(body: bytes) -> tuple[list[str], dict[str, list[int]]]:
    assert body.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    return rows[0], {r[0]: [int(n) for n in r[1:]] for r in rows[1:]}


@pytest.mark.anyio
async def test_the_reconciliation_by_day_and_month_matches_the_journal(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await births_of_every_kind(console, journal_at)
        await browser.login("chen")
        today = datetime.now(CHINA_TIME).date()
        start = today - timedelta(days=60)
        page = (await browser.get(f"/reconcile?by=day&from={start}&to={today}"))[1]
        async with browser.http.get(f"{console.url}/reconcile.csv?by=day&from={start}&to={today}") as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
            assert f"ybplug-reconciliation-day-{start}-{today}.csv" in response.headers["Content-Disposition"]
            by_day = await response.read()
        async with browser.http.get(f"{console.url}/reconcile.csv?by=month&from={start}&to={today}") as response:
            by_month = await response.read()
    header, days = parse_csv(by_day)
    assert header == COLUMNS
    want = expected(journal_at, "day")
    assert {d: v for d, v in days.items() if d != "合计" and any(v)} == want
    assert len(days) == 61 + 1  # every day listed, zeros too, and the total
    assert days["合计"] == [sum(col) for col in zip(*want.values())]
    assert days["合计"] == [7, 6, 4, 4, 1, 1, 1, 1, 1]  # 7 births: 1 waits; 4 got a baz726 (1 since voided, 1 stale, 1 real-named)
    _, months = parse_csv(by_month)
    assert {m: v for m, v in months.items() if m != "合计" and any(v)} == expected(journal_at, "month")
    # the page: the same figures in its table, and bars of the chart drawn on the server
    assert "<svg" in page and "<script" not in page
    assert {d: int(v) for v, d in re.findall(r'data-series="recorded" data-value="(\d+)"><title>([\d-]+) ', page) if int(v)} \
        == {d: v[0] for d, v in want.items()}
    assert "陈静" not in page and "陈静".encode() not in by_day


@pytest.mark.anyio
async def test_the_alerts_page_lists_open_and_resolved_incidents(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection()
    async with served(tmp_path, sandbox, journal=journal_at, alerts=section) as console, Browser(console.url) as browser:
        birth_id = await birth_in_review(console, 48)
        await Watcher(console.host, section).check()
        await browser.login("chen")
        text = (await browser.get("/alerts"))[1]
        assert '<span data-incident="review">进行中</span>' in text and "新生儿登记待复核: 1" in text
        [held] = sandbox.registrations()
        await console.host.resolve_review(birth_id, operator="林护士", registration_number=held["baz726"], eligible=True)
        await Watcher(console.host, section).check()
        text = (await browser.get("/alerts"))[1]
        assert '<span data-incident="review">已恢复</span>' in text


@pytest.mark.anyio
async def test_the_latency_histogram_voucher_calls_and_open_incidents_match_the_journal_and_the_overview(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    section = AlertsSection(voucher_crashes=2)
    async with served(tmp_path, sandbox, journal=journal_at, alerts=section) as console, Browser(console.url) as browser:
        host = console.host
        sandbox.inject(Fault(kind="latency", funid=Funid.COLLECT, seconds=0.3))
        for n in (71, 72):
            await host.record_birth(birth_record(n))
        await host.sync("upload")
        await birth_in_review(console, 73)
        for outcome, error in (("ok", None), ("failed", "the voucher library crashed (signal 11)"),
                               ("failed", "the voucher library crashed (signal 6)")):
            await host.run_journal(host.journal.record_exchange, "EcTrans", b"{}", outcome, error, time.time(), 0.02)
        await Watcher(host, section).check()
        text = (await browser.get("/metrics"))[1]
        await browser.login("chen")
        overview = (await browser.get("/"))[1]
    # the overview tells the voucher library's health and the open alerts as well
    assert 'data-voucher="failed"' in overview and "<span data-crashes>2</span>" in overview
    assert "2 个告警未恢复" in overview and "医保电子凭证组件反复崩溃: 2" in overview
    scraped = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}
    elapsed = journal_rows(journal_at, "SELECT funid, elapsed FROM exchanges WHERE elapsed IS NOT NULL")
    voucher = dict(journal_rows(journal_at, "SELECT outcome, count(*) FROM exchanges WHERE funid = 'EcTrans' GROUP BY outcome"))
    collect = [e for f, e in elapsed if f == Funid.COLLECT]
    assert len(collect) == 4 and sum(e >= 0.3 for e in collect) >= 1  # the slow one is in the journal
    for bound in ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30"):
        assert scraped[f'ybplug_exchange_seconds_bucket{{funid="{Funid.COLLECT}",le="{bound}"}}'] == sum(e <= float(bound) for e in collect)
    assert scraped[f'ybplug_exchange_seconds_bucket{{funid="{Funid.COLLECT}",le="+Inf"}}'] == 4
    assert scraped[f'ybplug_exchange_seconds_count{{funid="{Funid.COLLECT}"}}'] == 4
    assert scraped[f'ybplug_exchange_seconds_sum{{funid="{Funid.COLLECT}"}}'] == pytest.approx(sum(collect))
    assert voucher == {"ok": 1, "failed": 2}
    assert scraped['ybplug_exchanges{funid="EcTrans",outcome="ok"}'] == 1 and scraped['ybplug_exchanges{funid="EcTrans",outcome="failed"}'] == 2
    assert scraped['ybplug_incidents_open{kind="review"}'] == 1 and scraped['ybplug_incidents_open{kind="voucher"}'] == 1


@pytest.mark.anyio
async def test_an_exchanges_request_and_reply_are_shown_with_personal_fields_masked(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    real_id = with_check_digit("35020320261125008")
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        host = console.host
        recorded = await host.record_birth(birth_record(74))
        await host.sync("upload")
        number = (await host.birth(recorded.birth_id)).registration_number
        assert number is not None
        sandbox.real_name(number, id_number=real_id, name="陈小军")
        await host.sync("realname")
        await browser.login("chen")
        listed = (await browser.get(f"/exchanges?funid={Funid.REALNAME}"))[1]
        [exchange_id] = re.findall(r'<a href="/exchanges/(\d+)">', listed)
        text = html.unescape((await browser.get(f"/exchanges/{exchange_id}"))[1])
        collect = re.findall(r'<a href="/exchanges/(\d+)">', (await browser.get(f"/exchanges?funid={Funid.COLLECT}"))[1])
        upload = html.unescape((await browser.get(f"/exchanges/{collect[0]}"))[1])
        missing = await browser.get("/exchanges/99999")
    assert f'"baz726": "{number}"' in text and '"aac002": "' + mask(real_id) + '"' in text
    assert real_id not in text and "陈小军" not in text and f'"aac003": "{mask("陈小军")}"' in text
    assert "请求即登记的记录" in upload and '"flag": 1' in upload
    assert missing[0] == 404 and "没有这笔交易" in missing[1]


@pytest.mark.anyio
async def test_by_month_the_page_lists_the_last_twelve_months(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        await console.host.record_birth(birth_record(75))
        await browser.login("chen")
        text = (await browser.get("/reconcile?by=month"))[1]
    today = datetime.now(CHINA_TIME).date()
    months = re.findall(r"<tr><td>(\d{4}-\d{2})</td>", text)
    assert len(months) == 12 and months[0] == f"{today:%Y-%m}"  # newest first, twelve of them
    assert re.search(rf"<tr><td>{today:%Y-%m}</td><td>1</td>", text)
