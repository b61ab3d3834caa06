"""The console's actions on every stuck state of a birth's life, beyond a review's resolution
(:mod:`ybplug.console.app`): amend a refused birth and send it again, void a registration, send
a void in doubt again, retry failing uploads now, ask again about newborns past the real-name
horizon, replay all of a plugin's parked deliveries, and reveal a record's personal data.

Each needs the operator role and a CSRF token (the console's guard), goes through the host (so
the hooks fire) and is journaled with the operator's name and the time; a reveal is journaled
before the data is shown.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import msgspec
from aiohttp import web

from ybplug.console import forms, inputs, pages
from ybplug.console.births import deliveries_of
from ybplug.errors import Error
from ybplug.journal import BirthState
from ybplug.journal.console import audit, event_birth, voids_unsettled
from ybplug.journal.model import BirthStatus
from ybplug.messages import VoidRequest, load
from ybplug.privacy import scrub

if TYPE_CHECKING:
    from ybplug.console.sessions import Session
    from ybplug.host import Host

log = logging.getLogger("ybplug.console")


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.Response:
    """Post/redirect/get: after an action the browser shows the page again."""
    return web.Response(status=303, headers={"Location": location})


def failed(session: Session, what: str, exc: Error, back: str) -> web.Response:
    """An action the host refused: its reason (scrubbed of personal data) flashed on the page it came from."""
    session.flash.append(("error", f"{what}：{scrub(str(exc))}"))
    return see_other(back)


class Guarded(Protocol):
    """What the operations use of :class:`ybplug.console.app.Console` (the session checks)."""

    host: Host

    def _session(self, request: web.Request) -> Session: ...

    def _operator(self, request: web.Request) -> Session: ...

    async def birth_of(self, request: web.Request) -> BirthStatus: ...


class Operations:
    def __init__(self, console: Guarded) -> None:
        self.console = console
        self.host = console.host

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/attention", self.attention)
        app.router.add_post("/attention/retry", self.retry)
        app.router.add_post("/attention/stale", self.stale)
        app.router.add_post("/attention/void-again", self.void_again)
        app.router.add_post(r"/births/{birth_id:\d{1,12}}/reveal", self.reveal)
        app.router.add_post(r"/births/{birth_id:\d{1,12}}/amend", self.amend)
        app.router.add_post(r"/births/{birth_id:\d{1,12}}/void", self.void)

    async def _audit(self, operator: str, action: str, birth_id: int | None, detail: str) -> None:
        await self.host.run_journal(audit, self.host.journal, operator, action, birth_id, detail)

    async def attention(self, request: web.Request) -> web.Response:
        session = self.console._session(request)
        journal = self.host.journal
        refused = await self.host.run_journal(journal.births_in, BirthState.REFUSED, limit=200)
        failing = await self.host.run_journal(journal.births_in, BirthState.PENDING, failing=True, limit=200)
        stale = await self.host.run_journal(journal.births_in, BirthState.STALE, limit=200)
        voids = await self.host.run_journal(voids_unsettled, journal)
        status = await self.host.status()
        return html(forms.attention(
            refused, failing, stale, [(b, n) for b, n, _ in voids], status["births"].get("needs_review", 0),
            status["deliveries"].get("parked", 0), session,
        ))

    async def retry(self, request: web.Request) -> web.Response:
        session = self.console._operator(request)
        try:
            count = await self.host.run_journal(self.host.journal.retry_births)
            summary = await self.host.sync("upload")
        except Error as exc:
            return failed(session, "未能重试", exc, "/attention")
        await self._audit(session.name, "retry uploads", None, f"{count} births made due now")
        session.flash.append(("ok", f"已重试 {count} 条：登记 {summary.get('uploaded', 0)}，仍失败 {summary.get('upload_failed', 0)}。"))
        return see_other("/attention")

    async def stale(self, request: web.Request) -> web.Response:
        session = self.console._operator(request)
        try:
            summary = await self.host.sync("stale")
        except Error as exc:
            return failed(session, "未能查询", exc, "/attention")
        await self._audit(session.name, "poll stale", None, ", ".join(f"{k} {v}" for k, v in summary.items()))
        session.flash.append(("ok", f"已向中心查询超期未实名的新生儿：{', '.join(f'{k} {v}' for k, v in summary.items())}。"))
        return see_other("/attention")

    async def void_again(self, request: web.Request) -> web.Response:
        session = self.console._operator(request)
        wanted = (await inputs.form_of(request)).get("birth_id")
        voids = {str(b): (b, n, r) for b, n, r in await self.host.run_journal(voids_unsettled, self.host.journal)}
        if wanted not in voids:
            session.flash.append(("error", "这条作废已不在结果不明的列表中。"))
            return see_other("/attention")
        birth_id, number, reason = voids[wanted]
        await self._audit(session.name, "void again", birth_id, "a void whose reply was lost, sent again")
        try:
            await self.host.void(number, reason)
        except Error as exc:
            await self._audit(session.name, "void not confirmed", birth_id, scrub(str(exc)))
            return failed(session, "作废未成功", exc, "/attention")
        session.flash.append(("ok", f"登记 #{birth_id} 已确认作废。"))
        return see_other("/attention")

    async def reveal(self, request: web.Request) -> web.Response:
        """The birth's page with its personal data in the clear, for this response only (no
        cache), journaled first with the operator's name and the time."""
        session = self.console._operator(request)
        status = await self.console.birth_of(request)
        birth_id = status.birth_id
        await self._audit(session.name, "reveal personal data", birth_id, "the record's personal fields shown in the console")
        log.info("console: %s revealed the personal data of birth #%d", session.name, birth_id)
        deliveries = await self.host.run_journal(deliveries_of, self.host.journal, birth_id)
        page = pages.birth(status, session, forms.birth_actions(status, session), reveal=True, deliveries=deliveries)
        return html(page)

    async def amend(self, request: web.Request) -> web.Response:
        """A refused birth corrected: the fields typed replace the record's (an empty personal
        field keeps its value), then it is uploaded again."""
        session = self.console._operator(request)
        status = await self.console.birth_of(request)
        birth_id = status.birth_id
        back = f"/births/{birth_id}"
        form = await inputs.form_of(request)
        try:
            record = msgspec_record(status)
            for wire in forms.FIELDS:
                value = form.get(wire)
                if value is not None and (value.strip() or forms.FIELDS[wire] not in status.birth.personal):
                    record[wire] = value.strip() or None
            await self.host.amend_birth(birth_id, {k: v for k, v in record.items() if v is not None}, operator=session.name)
            await self.host.sync("upload", births=[birth_id])  # this birth alone, whatever the mode
            after = await self.host.birth(birth_id)
        except Error as exc:
            return failed(session, "未能改正", exc, back)
        session.flash.append(("ok", f"已改正并重新上传：登记 #{birth_id} 现为「{pages.state_label(after.state)}」。"))
        return see_other(back)

    async def void(self, request: web.Request) -> web.Response:
        """Void a birth's registration at the centre (yb04.13.01.22).  The request is checked
        as the centre's rules say (``bae016`` 作废原因 at most 100 bytes) before anything is
        journaled; the void is journaled with the operator before it is sent (a reply lost or
        a process killed still leaves who asked), and an answer other than done is journaled
        too, so the timeline never says a birth was voided when it was not."""
        session = self.console._operator(request)
        status = await self.console.birth_of(request)
        birth_id = status.birth_id
        back = f"/births/{birth_id}"
        reason = (await inputs.form_of(request)).get("reason", "").strip()
        if not reason:
            session.flash.append(("error", "请填写作废原因 bae016。"))
            return see_other(back)
        if status.registration_number is None:
            raise inputs.BadInput("birth_id", f"birth #{birth_id} has no baz726 新生儿登记流水号: only a registered birth is voided",
                                  409, "未登记，不能作废")
        try:
            load(VoidRequest, {"baz726": status.registration_number, "bae016": reason}, charset=self.host.config.charset)
        except Error as exc:
            return failed(session, "作废未成功", exc, back)
        await self._audit(session.name, "void", birth_id, f"reason: {reason}")
        try:
            await self.host.void(status.registration_number, reason)
        except Error as exc:
            await self._audit(session.name, "void not confirmed", birth_id, scrub(str(exc)))
            return failed(session, "作废未成功", exc, back)
        session.flash.append(("ok", f"登记 #{birth_id} 已作废。"))
        return see_other(back)

    async def replayed(self, operator: str, event_id: str | None, plugin: str | None, count: int) -> None:
        """Journal a replay of parked deliveries (one event's, or all of a plugin's)."""
        birth_id = None if event_id is None else await self.host.run_journal(event_birth, self.host.journal, event_id)
        what = f"event {event_id}" if event_id else f"plugin {plugin}"
        await self._audit(operator, "replay", birth_id, f"{what}: {count} parked deliveries re-queued")


def msgspec_record(status: BirthStatus) -> dict[str, object]:
    """The birth's record by wire name, as the HIS sent it."""
    record: dict[str, object] = msgspec.to_builtins(status.birth)
    return record
