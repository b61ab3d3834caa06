"""The console's web application (aiohttp.web): login, the pages, the actions, health and metrics.

Every page but ``/login``, ``/healthz``, ``/readyz`` and ``/metrics`` needs a session; every
POST but the login carries the session's CSRF token; actions need the operator role and are
done through the :class:`~ybplug.host.Host` (so the hooks fire) in the logged-in operator's name.
The access log has the method, the path and the status: never a query string or a form field.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

import anyio
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ybplug.console import forms, inputs, pages, reports
from ybplug.console.births import births_on, deliveries_of
from ybplug.console.config import ConsoleSection
from ybplug.console.contact import last_contact, voucher_health
from ybplug.console.exchanges import exchange_detail, latest_exchanges
from ybplug.console.metrics import CONTENT_TYPE, exposition, read_figures
from ybplug.console.operate import Operations, failed, html, see_other
from ybplug.console.passwords import verify_password, waste_time
from ybplug.console.reconcile import reconcile, to_csv
from ybplug.console.schedule import next_runs
from ybplug.console.sessions import LoginLimiter, Session, Sessions
from ybplug.codes import Funid
from ybplug.errors import Error
from ybplug.fields import CHINA_TIME, REGISTRATION_NUMBER_RULE, is_registration_number
from ybplug.host import Host
from ybplug.journal import BirthNotFound, BirthState
from ybplug.journal.console import event_known, recent_incidents
from ybplug.journal.model import BirthStatus
from ybplug.privacy import scrub

log = logging.getLogger("ybplug.console")

SESSION_COOKIE = "ybplug_session"
LOGIN_COOKIE = "ybplug_login"
PUBLIC = frozenset({"/login", "/healthz", "/readyz", "/metrics"})
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The longest reconciliation, by day and by month (a year, leap day included; ten years).
MAX_DAYS, MAX_MONTHS = 366, 120
#: A refusal's cause as an operator types it (kept as the birth's reason, sent to the plugins).
MAX_CAUSE = 500


HTTP_ERRORS = {
    404: ("没有这个页面", "控制台没有这个地址。"),
    405: ("不能这样打开", "这个地址不接受 {method} 请求：请用页面上的链接和按钮。"),
}


def shown_path(request: web.BaseRequest) -> str:
    """The path as a log line may show it: one of the console's own routes (codes, and ids of
    births and exchanges), never a query string; a path no route matched may be anything
    typed into the address bar (a name, an ID number), so it is not shown."""
    match = getattr(request, "match_info", None)
    if match is None or match.route.resource is None:
        return "(no such page)"
    return scrub(request.path)


def back_to(request: web.BaseRequest) -> str:
    """Where an error page leads back to: the birth's page, else the section's first page."""
    match = getattr(request, "match_info", None)
    if match is None or match.route.resource is None:
        return "/"
    if "birth_id" in match:
        return f"/births/{match['birth_id']}"
    return {"/reconcile.csv": "/reconcile", "/parked/replay": "/parked"}.get(request.path, "/" + request.path.split("/")[1])


class AccessLog(AbstractAccessLogger):
    """One INFO line per request to ``ybplug.console`` (``aiohttp.access`` is silenced by the
    CLI): the address, method, path, status and time; never the query string (a search may
    hold a name) nor a form field."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.info("%s %s %s %d %.3fs", request.remote, request.method, shown_path(request), response.status, time)


def search_keys(key: str) -> list[int | str]:
    """What a typed search key may be, in the order tried: ``#5`` is birth 5 (as every page
    shows it), a registration number is found in lower case too (``xse...``), anything else is
    a birth id, HIS serial or baz726 as typed."""
    if key.startswith("#"):
        number = key[1:].strip()
        if not (number.isascii() and number.isdigit() and len(number) <= 12):
            raise inputs.BadInput("key", "after # comes a birth's id, up to 12 digits, as the pages show it (#5)")
        return [int(number)]
    if len(key) > 64:
        raise inputs.BadInput("key", f"is {len(key)} characters; an id, bke042 or baz726 is at most 64")
    upper = key.upper()
    return [key, upper] if upper != key and is_registration_number(upper) else [key]


class Console:
    """The console over one running host (its journal, its plugins)."""

    def __init__(self, host: Host, section: ConsoleSection, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.section = section
        self.sessions = Sessions(section.session_minutes * 60, clock)
        self.limiter = LoginLimiter(section.login_attempts, section.login_window, clock)
        self.operations = Operations(self)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/", self.overview)
        app.router.add_get("/review", self.review)
        app.router.add_get("/parked", self.parked)
        app.router.add_post("/parked/replay", self.replay)
        app.router.add_get("/exchanges", self.exchanges)
        app.router.add_get(r"/exchanges/{exchange_id:\d{1,12}}", self.exchange)
        app.router.add_get("/births", self.find_page)
        app.router.add_post("/births", self.find)
        app.router.add_get(r"/births/{birth_id:\d{1,12}}", self.birth)
        app.router.add_post(r"/births/{birth_id:\d{1,12}}/resolve", self.resolve)
        app.router.add_get("/reconcile", self.reconcile)
        app.router.add_get("/reconcile.csv", self.reconcile_csv)
        app.router.add_get("/alerts", self.alerts)
        self.operations.add_routes(app)
        return app

    # --- the guard: session, CSRF, headers ---------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        session = None
        try:
            if request.path not in PUBLIC:
                session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
                if session is None:
                    if request.method == "GET":
                        return self._secured(see_other("/login"))
                    return self._secured(html(pages.message("未登录", "请先登录。"), 403))
                if request.method == "POST":
                    token = (await inputs.form_of(request)).get("csrf")
                    if not session.csrf_ok(token):
                        log.warning("console: %s %s refused for %s: no valid CSRF token", request.method, shown_path(request), session.name)
                        return self._secured(html(pages.message("请求被拒绝", "表单已失效，请刷新页面后重试。", session), 403))
            response = await handler(request)
        except inputs.BadInput as exc:
            log.info("console: %s %s refused: %s", request.method, shown_path(request), exc)
            return self._secured(html(pages.refusal(exc.title, str(exc), session, back_to(request)), exc.status))
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "text/html":  # aiohttp's own: 404, 405, ...
                return self._secured(self._http_error(request, exc, session))
            self._secured(exc)
            raise
        return self._secured(response)

    @staticmethod
    def _http_error(request: web.Request, exc: web.HTTPException, session: Session | None) -> web.Response:
        """aiohttp's bare-text error (no such page, a GET where a form posts) as the console's page."""
        title, text = HTTP_ERRORS.get(exc.status, ("请求有误", f"HTTP {exc.status} {exc.reason}"))
        response = html(pages.refusal(title, text.format(method=request.method), session, back_to(request)), exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response

    @staticmethod
    def _secured(response: web.StreamResponse) -> web.StreamResponse:
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _session(self, request: web.Request) -> Session:
        """The session the guard let through (looked up again: no per-request storage, which
        aiohttp only types from 3.12 on)."""
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:  # ended between the guard and here (another tab's logout)
            raise web.HTTPForbidden(text=pages.message("未登录", "请先登录。"), content_type="text/html")
        return session

    def _operator(self, request: web.Request) -> Session:
        """The session, which must have the operator role (a viewer only looks)."""
        session = self._session(request)
        if not session.may_act:
            log.warning("console: %s %s refused for viewer %s", request.method, request.path, session.name)
            raise web.HTTPForbidden(
                text=pages.message("无权操作", "查看员只能查看；处理需要操作员账号。", session), content_type="text/html"
            )
        return session

    # --- health and metrics (no login; nothing personal) -------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.host.failure is not None:
            return web.Response(text="journal lost\n", status=503)
        try:
            contact = await self.host.run_journal(last_contact, self.host.journal)
        except Exception:
            return web.Response(text="journal not readable\n", status=503)
        if contact.last is not None and contact.last.outcome == "auth_failed":
            return web.Response(text="sign-in refused by the centre\n", status=503)
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        figures = await self.host.run_journal(read_figures, self.host.journal)
        return web.Response(body=exposition(figures).encode(), headers={"Content-Type": CONTENT_TYPE})

    # --- login and logout --------------------------------------------------------------------------

    def _login_form(self, message: str = "", status: int = 200) -> web.Response:
        token = secrets.token_urlsafe(32)
        response = html(pages.login(token, message, users=bool(self.section.users)), status)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/login", max_age=3600)
        return response

    async def login_page(self, request: web.Request) -> web.Response:
        if self.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            return see_other("/")
        return self._login_form()

    async def login(self, request: web.Request) -> web.Response:
        address = request.remote or "unknown"
        wait = self.limiter.wait(address)
        if wait > 0:
            log.warning("console: login from %s refused: too many failures", address)
            return self._login_form(f"登录失败次数过多，请 {int(wait) + 1} 秒后再试。", 429)
        try:
            form = await inputs.form_of(request)
        except inputs.BadInput as exc:
            return self._login_form(f"无法读取登录表单：{exc}", exc.status)
        token, cookie = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
        if token is None or not cookie or not secrets.compare_digest(token.encode(), cookie.encode()):
            return self._login_form("登录页面已失效，请重新输入。", 403)
        name, password = form.get("name"), form.get("password")
        if name is None or password is None:
            return self._login_form("请输入用户名和密码。", 400)
        user = self.section.user(name)
        if user is None:
            await anyio.to_thread.run_sync(waste_time, password)
            ok = False
        else:
            ok = await anyio.to_thread.run_sync(verify_password, password, user.password_hash)
        if not ok or user is None:
            self.limiter.failed(address)
            log.warning("console: failed login from %s", address)  # not the name typed: it may be a password
            return self._login_form("用户名或密码错误。", 401)
        self.limiter.succeeded(address)
        self.sessions.end(request.cookies.get(SESSION_COOKIE))
        session_token, _ = self.sessions.start(user.name, user.role)
        log.info("console: %s (%s) logged in from %s", user.name, user.role, address)
        response = see_other("/")
        response.set_cookie(SESSION_COOKIE, session_token, httponly=True, samesite="Strict", path="/")
        response.del_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = self._session(request)
        self.sessions.end(request.cookies.get(SESSION_COOKIE))
        log.info("console: %s logged out", session.name)
        response = see_other("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # --- pages ---------------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        status = await self.host.status()
        contact = await self.host.run_journal(last_contact, self.host.journal)
        voucher = await self.host.run_journal(voucher_health, self.host.journal, time.time())
        incidents = await self.host.run_journal(recent_incidents, self.host.journal)
        more = reports.health(voucher, incidents)
        return html(pages.overview(status, next_runs(self.host.config, status["runs"]), contact, self._session(request), more))

    async def review(self, request: web.Request) -> web.Response:
        births = await self.host.run_journal(self.host.journal.births_in, BirthState.NEEDS_REVIEW, limit=500)
        return html(pages.needs_review(births, self._session(request)))

    async def parked(self, request: web.Request) -> web.Response:
        status = await self.host.status()
        return html(pages.parked(status["parked"], self._session(request)))

    async def exchanges(self, request: web.Request) -> web.Response:
        """The latest exchanges, filtered by transaction and outcome (codes: nothing personal in the URL)."""
        funids = [str(f) for f in Funid] + ["EcTrans"]
        funid = inputs.choice(request.query, "funid", funids)
        outcome = inputs.choice(request.query, "outcome", pages.OUTCOMES)
        rows = await self.host.run_journal(latest_exchanges, self.host.journal, funid, outcome)
        return html(pages.exchanges(rows, funids, funid, outcome, self._session(request)))

    async def exchange(self, request: web.Request) -> web.Response:
        session = self._session(request)
        exchange_id = int(request.match_info["exchange_id"])
        detail = await self.host.run_journal(exchange_detail, self.host.journal, exchange_id)
        if detail is None:
            raise inputs.BadInput("exchange_id", f"no exchange #{exchange_id} in the journal", 404, "没有这笔交易")
        return html(reports.exchange(detail, session))

    async def _births_page(self, request: web.Request, message: str = "", status: int = 200) -> web.Response:
        """The births list: by recorded day (China time, default today) and state; codes and a
        date in the URL, nothing personal; an empty date: any day."""
        day = inputs.day(request.query, "date") if "date" in request.query else datetime.now(CHINA_TIME).date()
        state = inputs.choice(request.query, "state", pages.STATES)
        lines = await self.host.run_journal(births_on, self.host.journal, day, state)
        return html(pages.find_birth(self._session(request), lines, "" if day is None else day.isoformat(), state, message), status)

    async def find_page(self, request: web.Request) -> web.Response:
        return await self._births_page(request)

    async def find(self, request: web.Request) -> web.Response:
        """A birth by id (``5`` or ``#5``, as the pages show it), HIS serial or baz726 (in any
        case), posted (so the key is in no URL), then its page."""
        key = (await inputs.form_of(request)).get("key", "").strip()
        if not key:
            return await self._births_page(request, "请输入要查找的号码。", 400)
        try:
            keys = search_keys(key)
        except inputs.BadInput as exc:
            return await self._births_page(request, f"无法查找：{exc}", exc.status)
        for candidate in keys:
            try:
                status = await self.host.birth(candidate)
            except BirthNotFound:
                continue
            return see_other(f"/births/{status.birth_id}")
        return await self._births_page(request, "没有找到对应的登记（多胞胎请用登记号 # 查找）。", 404)

    async def birth_of(self, request: web.Request) -> BirthStatus:
        """The birth the path names: one the journal does not hold is a 404 page, before any
        form is read or anything is journaled."""
        birth_id = int(request.match_info["birth_id"])
        try:
            return await self.host.birth(birth_id)
        except BirthNotFound:
            raise inputs.BadInput("birth_id", f"no birth #{birth_id} in the journal", 404, "没有这条登记") from None

    async def birth(self, request: web.Request) -> web.Response:
        session = self._session(request)
        status = await self.birth_of(request)
        deliveries = await self.host.run_journal(deliveries_of, self.host.journal, status.birth_id)
        return html(pages.birth(status, session, forms.birth_actions(status, session), deliveries=deliveries))

    def _period(self, request: web.Request) -> tuple[str, date, date]:
        """The reconciliation's period from the query (dates and a code only): ``to`` today by
        default, ``from`` 31 days or 12 months before it.  A period the query does not say is
        refused (:class:`~ybplug.console.inputs.BadInput`), never swapped for another: a CSV of
        the wrong days set beside the insurance office's list would look like a discrepancy."""
        by = inputs.choice(request.query, "by", reports.BY, empty="day") or "day"
        to = inputs.day(request.query, "to")
        end = to or datetime.now(CHINA_TIME).date()
        start = inputs.day(request.query, "from")
        if start is None:
            months_back = end.year * 12 + end.month - 1 - 11
            start = end - timedelta(days=30) if by == "day" else date(months_back // 12, months_back % 12 + 1, 1)
        if end < start:
            raise inputs.BadInput("to", f"must not be before from 从 ({start})" + ("" if to else f"; without to, it is today ({end})"))
        if by == "day" and (end - start).days + 1 > MAX_DAYS:
            raise inputs.BadInput("from", f"by day, a period is at most {MAX_DAYS} days (by=month for longer)")
        if by == "month" and (end.year - start.year) * 12 + end.month - start.month + 1 > MAX_MONTHS:
            raise inputs.BadInput("from", f"by month, a period is at most {MAX_MONTHS} months")
        return by, start, end

    async def reconcile(self, request: web.Request) -> web.Response:
        by, start, end = self._period(request)
        rows = await self.host.run_journal(reconcile, self.host.journal, by, start, end)
        return html(reports.reconciliation(rows, by, start.isoformat(), end.isoformat(), self._session(request)))

    async def reconcile_csv(self, request: web.Request) -> web.Response:
        by, start, end = self._period(request)
        rows = await self.host.run_journal(reconcile, self.host.journal, by, start, end)
        name = f"ybplug-reconciliation-{by}-{start.isoformat()}-{end.isoformat()}.csv"
        return web.Response(body=to_csv(rows), headers={
            "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"',
        })

    async def alerts(self, request: web.Request) -> web.Response:
        incidents = await self.host.run_journal(recent_incidents, self.host.journal)
        return html(reports.alerts(incidents, self._session(request)))

    # --- actions -------------------------------------------------------------------------------------

    async def resolve(self, request: web.Request) -> web.Response:
        """Resolve a birth in review the way the operator found it at the centre."""
        session = self._operator(request)
        birth_id = (await self.birth_of(request)).birth_id
        form = await inputs.form_of(request)
        how = form.get("how")
        back = f"/births/{birth_id}"
        kwargs: dict[str, Any] = {}
        if how == "registered":
            number, eligible = form.get("baz726", "").strip(), form.get("eligible")
            if not number or eligible not in ("yes", "no"):
                session.flash.append(("error", "请填写中心的登记流水号 baz726，并选择是否可预参保。"))
                return see_other(back)
            if not is_registration_number(number.upper()):  # the rule, not the typed text again (it may be 60 KB)
                session.flash.append(("error", f"未能处理：{inputs.problem('baz726', REGISTRATION_NUMBER_RULE)}"))
                return see_other(back)
            kwargs = {"registration_number": number, "eligible": eligible == "yes"}
            done = "已按中心的登记结果处理"
        elif how == "refused":
            cause = form.get("cause", "").strip()
            if not cause:
                session.flash.append(("error", "请填写中心给出的拒绝原因。"))
                return see_other(back)
            if len(cause) > MAX_CAUSE:
                rule = f"is {len(cause)} characters, over the limit of {MAX_CAUSE}"
                session.flash.append(("error", f"未能处理：{inputs.problem('cause', rule)}"))
                return see_other(back)
            kwargs = {"refused": cause}
            done = "已标记为中心拒绝"
        elif how == "send_again":
            kwargs = {"send_again": True}
            done = "已清除疑问并重新上传"
        else:
            raise inputs.BadInput("how", "must be registered, refused or send_again")
        try:
            result = await self.host.resolve_review(birth_id, operator=session.name, **kwargs)
            log.info("console: %s resolved the review of birth #%d (%s)", session.name, birth_id, how)
            if how == "send_again":
                await self.host.sync("upload", births=[birth_id])  # this birth alone, whatever the mode
                result = await self.host.birth(birth_id)
            await self.host.deliver_due()
        except Error as exc:
            return failed(session, "未能处理", exc, back)
        session.flash.append(("ok", f"{done}：登记 #{birth_id} 现为「{pages.state_label(result.state)}」。"))
        return see_other(back)

    async def replay(self, request: web.Request) -> web.Response:
        """Re-queue one parked delivery (by event id), or all of a plugin's, and deliver them now
        to the plugins loaded here; journaled with the operator when something was re-queued
        (an unknown event is a 404, nothing parked a message: neither is journaled)."""
        session = self._operator(request)
        form = await inputs.form_of(request)
        event_id = form.get("event_id", "").strip() or None
        plugin = form.get("plugin", "").strip() or None
        if event_id is None and plugin is None:
            raise inputs.BadInput("event_id", "give event_id (one parked delivery) or plugin (all of a plugin's)")
        if event_id is not None and not await self.host.run_journal(event_known, self.host.journal, event_id):
            raise inputs.BadInput("event_id", "no such event in the journal", 404, "没有这个事件")
        try:
            count = await self.host.replay(event_id=event_id, plugin=plugin)
            if count == 0:
                what = "这个事件" if event_id else f"插件 {plugin} "
                session.flash.append(("error", f"没有重新投递：{what}没有搁置的投递（可能已被重新投递）。"))
                return see_other("/parked")
            await self.operations.replayed(session.name, event_id, plugin, count)
            delivered = await self.host.deliver_due()
        except Error as exc:
            return failed(session, "未能重新投递", exc, "/parked")
        log.info("console: %s replayed %d parked deliveries (%s)", session.name, count, event_id or plugin)
        session.flash.append(("ok", f"已重新排队 {count} 个投递，本次投递成功 {delivered} 个。"))
        return see_other("/parked")
