"""The console in a real browser: headless Chromium (Debian's ``chromium`` package) driven by
Playwright for Python, against a console over a real host, journal and sandbox on loopback.

Skipped with the reason when Chromium or Playwright is missing, except in CI (``CI=true``), where
``.ci/system-setup`` installs Chromium and the ``test`` extra installs Playwright: there a
missing browser fails instead of passing unseen.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ybplug.alerts.config import AlertsSection
from ybplug.alerts.watch import Watcher
from ybplug.codes import Funid
from ybplug.sandbox import Fault, Sandbox

from support import birth_record
from test_webconsole import PASSWORD, birth_in_review, served

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def need_a_browser() -> None:
    missing = []
    if sys.platform != "linux":
        pytest.skip("the browser test uses Debian's chromium package (Linux)")
    if not CHROMIUM.exists():
        missing.append("Debian's chromium is not installed (.ci/system-setup installs it)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))


@pytest.mark.anyio
async def test_a_clerk_logs_in_and_resolves_a_review_in_chromium(tmp_path: Path, sandbox: Sandbox) -> None:
    need_a_browser()
    from playwright.async_api import async_playwright

    async with served(tmp_path, sandbox) as console, async_playwright() as playwright:
        birth_id = await birth_in_review(console, 20)
        [held] = sandbox.registrations()
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(console.url + "/review")
            assert page.url == console.url + "/login"  # no session: the login page
            await page.get_by_label("用户名").fill("林护士")
            await page.get_by_label("密码").fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await page.wait_for_url(console.url + "/")
            assert await page.get_by_role("heading", level=1).inner_text() == "概览"
            assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the session
            [cookie] = [c for c in await page.context.cookies() if c["name"] == "ybplug_session"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            await page.get_by_role("link", name="待复核").first.click()
            await page.wait_for_url(console.url + "/review")
            row = page.get_by_role("row").filter(has_text="系统繁忙")
            await row.get_by_label("中心的登记流水号 baz726").fill(held["baz726"])
            await row.get_by_label("可预参保", exact=True).check()
            await row.get_by_role("button", name="已在中心登记").click()
            await page.wait_for_url(console.url + f"/births/{birth_id}")
            status = page.get_by_role("status")
            assert "现为「已登记」" in await status.inner_text()
            await page.screenshot(path=str(tmp_path / "resolved.png"), full_page=True)
        finally:
            await browser.close()
        resolved = await console.host.birth(birth_id)
    assert (resolved.state, resolved.registration_number, resolved.eligible) == ("registered", held["baz726"], True)
    assert resolved.actions[-1].operator == "林护士"
    assert (tmp_path / "resolved.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$YBPLUG_ARTIFACTS`` (CI keeps it), else the test's own folder."""
    folder = Path(os.environ["YBPLUG_ARTIFACTS"]) if os.environ.get("YBPLUG_ARTIFACTS") else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def log_in(page: Any, url: str, name: str) -> None:
    await page.goto(url + "/login")
    await page.get_by_label("用户名").fill(name)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url(url + "/")


@pytest.mark.anyio
async def test_every_page_fits_a_1366_screen_and_is_photographed(tmp_path: Path, sandbox: Sandbox) -> None:
    need_a_browser()
    from playwright.async_api import async_playwright

    from test_webconsole_reports import births_of_every_kind

    async with served(tmp_path, sandbox, alerts=AlertsSection()) as console, async_playwright() as playwright:
        await births_of_every_kind(console, str(tmp_path / "journal.db"))
        await Watcher(console.host, AlertsSection()).check()
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            folder = artifacts(tmp_path)
            await page.goto(console.url + "/login")
            await page.screenshot(path=str(folder / "login.png"))
            await log_in(page, console.url, "林护士")
            shots = {"overview": "/", "review": "/review", "parked": "/parked", "exchanges": "/exchanges",
                     "births": "/births?date=", "birth": "/births/6", "reconcile": "/reconcile",
                     "attention": "/attention", "alerts": "/alerts"}
            for name, path in shots.items():
                await page.goto(console.url + path)
                title = await page.get_by_role("heading", level=1).inner_text()
                assert title and "未登录" not in title, name
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 1366, f"{name} is {width}px wide"
                await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
            await page.goto(console.url + "/reconcile")  # what a 1366x768 screen shows: the README's picture
            await page.screenshot(path=str(folder / "reconcile-screen.png"))
        finally:
            await browser.close()
    for name in ["login", *shots]:
        assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.anyio
async def test_a_clerk_replays_amends_and_downloads_the_csv_in_chromium(tmp_path: Path, sandbox: Sandbox) -> None:
    need_a_browser()
    from playwright.async_api import async_playwright

    from test_webconsole_reports import COLUMNS, expected, parse_csv

    async with served(tmp_path, sandbox, delivery_attempts=1) as console, async_playwright() as playwright:
        console.hospital.failing = True
        parked = await console.host.record_birth(birth_record(61))
        await console.host.sync("upload")
        console.hospital.failing = False
        refused = await console.host.record_birth(birth_record(62))
        sandbox.inject(Fault(kind="refuse", funid=Funid.COLLECT, cause="母亲姓名与证件不符"))
        await console.host.sync("upload")
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768}, accept_downloads=True)
            await log_in(page, console.url, "林护士")

            await page.get_by_role("link", name="搁置的投递").first.click()
            await page.get_by_role("row").filter(has_text="the HIS database is down").get_by_role("button", name="重新投递").click()
            await page.wait_for_url(console.url + "/parked")
            assert "本次投递成功 1 个" in await page.get_by_role("status").inner_text()

            await page.get_by_role("link", name="需处理").click()
            await page.get_by_role("link", name=f"#{refused.birth_id}").click()
            await page.get_by_label("母亲姓名 bkee37").fill("陈静怡")
            await page.get_by_role("button", name="改正并重新上传").click()
            await page.wait_for_url(console.url + f"/births/{refused.birth_id}")
            assert "现为「已登记」" in await page.get_by_role("status").inner_text()

            await page.get_by_role("link", name="对账").click()
            async with page.expect_download() as download_info:
                await page.get_by_role("link", name="导出 CSV（医保办用）").click()
            download = await download_info.value
            assert download.suggested_filename.startswith("ybplug-reconciliation-day-")
            body = Path(await download.path()).read_bytes()
        finally:
            await browser.close()
        delivered = [r["birth_id"] for r in console.hospital.results]
    assert parked.birth_id in delivered
    header, days = parse_csv(body)
    assert header == COLUMNS
    assert {d: v for d, v in days.items() if d != "合计" and any(v)} == expected(str(tmp_path / "journal.db"), "day")
    assert days["合计"][:3] == [2, 2, 2]  # both recorded, uploaded and registered


@pytest.mark.anyio
async def test_chromium_is_refused_an_action_without_the_token_or_the_role(tmp_path: Path, sandbox: Sandbox) -> None:
    need_a_browser()
    from playwright.async_api import async_playwright

    async with served(tmp_path, sandbox) as console, async_playwright() as playwright:
        birth_id = await birth_in_review(console, 63)
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = await browser.new_page()
            await log_in(page, console.url, "林护士")
            await page.goto(console.url + f"/births/{birth_id}")
            await page.locator('input[name="csrf"]').evaluate_all("inputs => inputs.forEach(i => i.remove())")
            await page.get_by_label("拒绝原因").fill("重复")
            await page.get_by_role("button", name="中心已拒绝").click()
            assert "表单已失效" in await page.locator("main").inner_text()

            other = await browser.new_context()  # its own cookies
            viewer = await other.new_page()
            await log_in(viewer, console.url, "chen")
            await viewer.goto(console.url + f"/births/{birth_id}")
            assert await viewer.get_by_role("button", name="中心已拒绝").count() == 0
            token = await viewer.locator('input[name="csrf"]').first.get_attribute("value")
            response = await viewer.request.post(console.url + f"/births/{birth_id}/resolve",
                                                 form={"csrf": token or "", "how": "refused", "cause": "重复"})
            assert response.status == 403 and "查看员只能查看" in await response.text()
        finally:
            await browser.close()
        assert (await console.host.birth(birth_id)).state == "needs_review"
