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

import pytest

from ybplug.sandbox import Sandbox

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
