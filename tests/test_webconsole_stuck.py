"""Every stuck state of a birth's life resolved from the console alone, over HTTP against a real
host, journal and sandbox: a refused birth amended and sent again, an upload that keeps failing
retried, a registration voided and the void whose reply was lost sent again, newborns past the
real-name horizon asked about again, a plugin's parked deliveries replayed; and a record's
personal data revealed to an operator, journaled with the operator's name.  (Reviews: see
test_webconsole.py.)"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from ybplug.codes import Funid
from ybplug.fields import with_check_digit
from ybplug.privacy import mask
from ybplug.sandbox import Fault, Sandbox

from pg_support import journal_rows
from support import birth_record
from test_webconsole import Browser, served

_INPUT = re.compile(r'<input name="(\w+)" aria-label="[^"]*" (?:placeholder="留空则不改"|value="([^"]*)")')


def actions(journal: str) -> list[tuple[Any, ...]]:
    return journal_rows(journal, "SELECT operator, action, birth_id FROM actions ORDER BY id")


@pytest.mark.anyio
async def test_a_refused_birth_is_amended_and_sent_again_from_its_page(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        record = birth_record(51)
        recorded = await console.host.record_birth(record)
        sandbox.inject(Fault(kind="refuse", funid=Funid.COLLECT, cause="母亲姓名与证件不符"))
        await console.host.sync("upload")
        await browser.login("林护士")
        listed = (await browser.get("/attention"))[1]
        assert f'href="/births/{recorded.birth_id}"' in listed and "母亲姓名与证件不符" in listed
        text = (await browser.get(f"/births/{recorded.birth_id}"))[1]
        fields = {name: value for name, value in _INPUT.findall(text)}
        assert fields["bkee37"] == "" and fields["bkee35"] == "" and fields["bke042"] == record["bke042"]
        assert record["bkee35"] not in text  # the form does not show personal data either
        fields["bkee37"] = "陈静怡"  # the mother's name put right; the other personal fields left as they are
        status, text = await browser.act(f"/births/{recorded.birth_id}/amend", **fields)
        assert status == 200 and "已改正并重新上传" in text and "现为「已登记」" in text
    [registration] = sandbox.registrations()
    assert registration["bkee35"] == record["bkee35"]  # the ID number kept though not typed again
    assert ("林护士", "amend", recorded.birth_id) in actions(journal_at)


@pytest.mark.anyio
async def test_failing_uploads_are_retried_now_and_stale_newborns_asked_about_again(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        host = console.host
        registered = await host.record_birth(birth_record(52))
        await host.sync("upload")
        await host.run_journal(host.journal.mark_stale, -1.0)
        failing = await host.record_birth(birth_record(53))
        sandbox.inject(Fault(kind="http_error", funid=Funid.COLLECT, status=404))
        assert (await host.sync("upload"))["upload_failed"] == 1
        await browser.login("林护士")
        text = (await browser.get("/attention"))[1]
        assert f'href="/births/{failing.birth_id}"' in text and f'href="/births/{registered.birth_id}"' in text
        status, text = await browser.act("/attention/retry")
        assert status == 200 and "登记 1" in text
        assert (await host.birth(failing.birth_id)).state == "registered"

        number = (await host.birth(registered.birth_id)).registration_number
        assert number is not None
        sandbox.real_name(number, id_number=with_check_digit("35020320261125006"), name="陈小明")
        status, text = await browser.act("/attention/stale")
        assert status == 200 and "已向中心查询" in text
        assert (await host.birth(registered.birth_id)).state == "real_named"
        assert "没有超期未实名的新生儿" in (await browser.get("/attention"))[1]
    assert [(o, a) for o, a, _ in actions(journal_at)] == [("林护士", "retry uploads"), ("林护士", "poll stale")]


@pytest.mark.anyio
async def test_a_void_whose_reply_was_lost_is_sent_again_from_the_console(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(birth_record(54))
        await console.host.sync("upload")
        await browser.login("林护士")
        await browser.get(f"/births/{recorded.birth_id}")
        sandbox.inject(Fault(kind="drop_after_commit", funid=Funid.VOID))  # voided at the centre, the reply lost
        status, text = await browser.act(f"/births/{recorded.birth_id}/void", reason="重复登记")
        assert status == 200 and "作废未成功" in text
        assert (await console.host.birth(recorded.birth_id)).state == "registered"
        text = (await browser.get("/attention"))[1]
        assert "重新发送作废" in text and f'name="birth_id" value="{recorded.birth_id}"' in text
        status, text = await browser.act("/attention/void-again", birth_id=str(recorded.birth_id))
        assert status == 200 and f"登记 #{recorded.birth_id} 已确认作废" in text
        assert (await console.host.birth(recorded.birth_id)).state == "voided"
        assert "没有结果不明的作废" in text
        [registration] = sandbox.registrations()
        assert registration["voided"]
    assert [(o, a) for o, a, b in actions(journal_at) if b == recorded.birth_id] == [
        ("林护士", "void"), ("林护士", "void not confirmed"), ("林护士", "void again")]


@pytest.mark.anyio
async def test_a_birth_voided_twice_in_doubt_is_listed_once_and_sent_again_with_the_latest_reason(
    tmp_path: Path, sandbox: Sandbox, journal_at: str
) -> None:
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(birth_record(58))
        await console.host.sync("upload")
        await browser.login("林护士")
        for reason in ("重复登记", "登记信息有误"):  # both replies lost
            await browser.get(f"/births/{recorded.birth_id}")
            sandbox.inject(Fault(kind="drop_after_commit", funid=Funid.VOID))
            status, text = await browser.act(f"/births/{recorded.birth_id}/void", reason=reason)
            assert status == 200 and "作废未成功" in text
        text = (await browser.get("/attention"))[1]
        assert text.count(f'name="birth_id" value="{recorded.birth_id}"') == 1
        status, text = await browser.act("/attention/void-again", birth_id=str(recorded.birth_id))
        assert status == 200 and f"登记 #{recorded.birth_id} 已确认作废" in text
    voids = journal_rows(journal_at, "SELECT request FROM exchanges WHERE funid = ? ORDER BY id", (Funid.VOID.value,))
    assert [json.loads(bytes(r))["bae016"] for (r,) in voids] == ["重复登记", "登记信息有误", "登记信息有误"]


@pytest.mark.anyio
async def test_all_of_a_plugins_parked_deliveries_are_replayed_and_journaled(tmp_path: Path, sandbox: Sandbox, journal_at: str) -> None:
    async with served(tmp_path, sandbox, journal=journal_at, delivery_attempts=1) as console, Browser(console.url) as browser:
        console.hospital.failing = True
        for n in (55, 56):
            await console.host.record_birth(birth_record(n))
        await console.host.sync("upload")
        assert len((await console.host.status())["parked"]) == 2
        console.hospital.failing = False
        await browser.login("林护士")
        timeline = (await browser.get("/births/1"))[1]
        assert re.search(r'data-kind="delivery">投递给插件</span></td><td>collection_result → st_mary</td><td>已搁置', timeline)
        text = (await browser.get("/parked"))[1]
        assert "重新投递插件 st_mary 的全部" in text
        status, text = await browser.act("/parked/replay", plugin="st_mary")
        assert status == 200 and "已重新排队 2 个投递" in text and "没有搁置的投递" in text
        assert len(console.hospital.results) == 2
    assert actions(journal_at) == [("林护士", "replay", None)]


@pytest.mark.anyio
async def test_an_operator_reveals_a_record_and_the_reveal_is_journaled(
    tmp_path: Path, sandbox: Sandbox, journal_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ybplug.console")
    record = birth_record(57)
    async with served(tmp_path, sandbox, journal=journal_at) as console, Browser(console.url) as browser:
        recorded = await console.host.record_birth(record)
        await browser.login("chen")
        text = (await browser.get(f"/births/{recorded.birth_id}"))[1]
        assert "/reveal" not in text and mask(record["bkee35"]) in text
        status, text = await browser.act(f"/births/{recorded.birth_id}/reveal")
        assert status == 403 and record["bkee35"] not in text
        assert actions(journal_at) == []

        await browser.get("/logout")
        await browser.act("/logout")
        await browser.login("林护士")
        text = (await browser.get(f"/births/{recorded.birth_id}"))[1]
        assert record["bkee35"] not in text and "显示个人信息" in text
        status, text = await browser.act(f"/births/{recorded.birth_id}/reveal")
        assert status == 200 and record["bkee35"] in text and record["bkee37"] in text and "已记录查看人" in text
        async with browser.http.get(f"{console.url}/births/{recorded.birth_id}/reveal") as response:
            assert response.status == 405  # never by a link or a URL
        text = (await browser.get(f"/births/{recorded.birth_id}"))[1]
        assert record["bkee35"] not in text and "reveal personal data" in text  # masked again; the timeline shows it
    [(operator, action, birth_id)] = actions(journal_at)
    assert (operator, action, birth_id) == ("林护士", "reveal personal data", recorded.birth_id)
    access = [r.getMessage() for r in caplog.records if r.name == "ybplug.console"]
    assert any(f"/births/{recorded.birth_id}/reveal 200" in line for line in access)
    assert not any(record["bkee35"] in line for line in access)
