"""The console's pages as HTML, in Chinese for the ward's clerks.

Plain strings, no template engine: every value from the journal goes through :func:`e`
(``html.escape``, quotes included) and nothing else is interpolated, so a cause the centre sent
or a plugin's error cannot become markup.  Personal fields appear only masked
(:func:`ybplug.privacy.mask`); links carry birth ids, never a name or an ID number.  No
JavaScript: forms post and the page is redisplayed (post/redirect/get).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ybplug.clerk import china_time
from ybplug.codes import Funid
from ybplug.console.contact import Contact
from ybplug.console.births import BirthLine, DeliveryLine
from ybplug.console.exchanges import ExchangeRow
from ybplug.console.sessions import Session
from ybplug.journal.model import BirthStatus
from ybplug.lifecycle import BirthState
from ybplug.messages import Birth
from ybplug.privacy import mask

STATES = {
    "pending": "待上传", "uploading": "上传中", "registered": "已登记", "refused": "被拒绝",
    "needs_review": "待复核", "voided": "已作废", "real_named": "已实名", "stale": "超期未实名",
}
DELIVERY_STATES = {"pending": "待投递", "parked": "已搁置", "delivered": "已投递", "forgotten": "已放弃（插件已移除）"}
OUTCOMES = {
    "sent": "已发出未应答", "ok": "成功", "refused": "被拒绝", "not_delivered": "未送达",
    "unknown": "结果未知", "auth_failed": "认证失败", "failed": "失败",
}
JOBS = {"upload": "上传", "realname": "实名查询", "stale": "超期查询", "all": "全部"}

_STYLE = """
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;color:#222}
nav{background:#1f4e79;padding:.5em 1em}nav a,nav span{color:#fff;margin-right:1.5em;text-decoration:none}
nav form{display:inline}nav button{background:none;border:1px solid #fff;color:#fff;cursor:pointer}
main{padding:1em 2em}table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#eef3f8;white-space:nowrap}
.flash-ok{background:#e6f4ea;padding:.5em}.flash-error{background:#fdecea;padding:.5em}
form.act{display:inline-block;margin:.2em .5em .2em 0;padding:.3em;border:1px dashed #bbb}
"""


def e(value: object) -> str:
    """A value made safe to place in HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, session: Session | None = None) -> str:
    """The whole page: navigation (when logged in), the one-time message, the body."""
    nav = ""
    flashes = ""
    if session is not None:
        nav = (
            '<nav><a href="/">概览</a><a href="/review">待复核</a><a href="/parked">搁置的投递</a>'
            '<a href="/exchanges">交易记录</a><a href="/births">查找新生儿</a><a href="/reconcile">对账</a>'
            '<a href="/attention">需处理</a><a href="/alerts">告警</a>'
            f'<span>{e(session.name)}（{"操作员" if session.may_act else "查看员"}）</span>'
            f'<form method="post" action="/logout">{csrf_field(session)}<button>退出</button></form></nav>'
        )
        flashes = "".join(f'<p class="flash-{e(kind)}" role="status">{e(text)}</p>' for kind, text in session.flash)
        session.flash.clear()
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{e(title)} - ybplug 运维控制台</title><style>{_STYLE}</style></head>"
        f"<body>{nav}<main><h1>{e(title)}</h1>{flashes}{body}</main></body></html>"
    )


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{e(session.csrf)}">'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str = "无") -> str:
    """A table; cells are already HTML (escape them with :func:`e` when building rows)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f"<p>{e(empty)}</p>"
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{body}</table>"


def birth_link(birth_id: object) -> str:
    return f'<a href="/births/{e(birth_id)}">#{e(birth_id)}</a>'


def state_label(state: str) -> str:
    return f"{STATES.get(state, state)}"


def funid_label(funid: str) -> str:
    member = next((f for f in Funid if f == funid), None)
    return f"{funid} {member.label}" if member is not None else funid


# --- login -------------------------------------------------------------------------------------------


def login(token: str, message: str = "", users: bool = True) -> str:
    note = "" if users else '<p class="flash-error">尚未配置任何操作员账号：请用 <code>ybplug console add-user</code> 添加。</p>'
    error = f'<p class="flash-error" role="alert">{e(message)}</p>' if message else ""
    return page(
        "登录",
        f"{note}{error}<form method=\"post\" action=\"/login\">"
        f'<input type="hidden" name="csrf" value="{e(token)}">'
        '<p><label>用户名 <input name="name" autocomplete="username" required></label></p>'
        '<p><label>密码 <input name="password" type="password" autocomplete="current-password" required></label></p>'
        '<p><button type="submit">登录</button></p></form>',
    )


# --- overview --------------------------------------------------------------------------------------


def centre(contact: Contact) -> str:
    """The centre's reachability as the journal's last exchanges show it."""
    if contact.last is None:
        return '<p data-centre="none">尚未与中心交易。</p>'
    verdict = "中心有应答" if contact.reachable else "最近一次交易未得到中心应答"
    rows = [
        [e(what), e(china_time(x.started_at)), e(funid_label(x.funid)), e(OUTCOMES.get(x.outcome, x.outcome)), e(x.error)]
        for what, x in (("最近一次交易", contact.last), ("最近一次得到应答", contact.last_answered)) if x is not None
    ]
    kind = "ok" if contact.reachable else "error"
    return (
        f'<p class="flash-{kind}" data-centre="{"answered" if contact.reachable else "unanswered"}">{e(verdict)}</p>'
        + table(["", "时间（北京时间）", "交易", "结果", "错误"], rows)
    )


def overview(status: Mapping[str, Any], next_runs: Mapping[str, str], contact: Contact, session: Session, more: str = "") -> str:
    births = status["births"]
    by_state = table(
        ["状态", "数量"],
        ([e(state_label(s)), f'<span data-state="{e(s)}">{e(births.get(s, 0))}</span>'] for s in STATES if births.get(s)),
        "日志中还没有新生儿登记",
    )
    deliveries = table(
        ["投递状态", "数量"],
        ([e(DELIVERY_STATES.get(s, s)), e(n)] for s, n in sorted(status["deliveries"].items())),
    )
    subscribers = table(
        ["插件", "订阅的钩子", "待投递", "已搁置", "最近加载"],
        (
            [e(name), e("、".join(sub["hooks"])), e(sub.get("pending", 0)), e(sub.get("parked", 0)),
             e(china_time(sub["last_loaded_at"]))]
            for name, sub in sorted(status["subscribers"].items())
        ),
        "没有持久订阅者",
    )
    jobs = sorted(set(status["runs"]) | set(next_runs))
    runs = table(
        ["任务", "最近开始（北京时间）", "最近结束（北京时间）", "结果", "下次运行（按配置）"],
        (
            [e(JOBS.get(job, job)), e(china_time(run.get("started_at")) or "尚未运行"),
             e(china_time(run.get("finished_at")) or ("运行中或中断" if run else "")),
             e(", ".join(f"{k} {v}" for k, v in (run.get("summary") or {}).items())),
             f'<span data-next="{e(job)}">{e(next_runs.get(job, ""))}</span>']
            for job in jobs for run in [status["runs"].get(job) or {}]
        ),
    )
    review = len(status["needs_review"])
    parked = status["deliveries"].get("parked", 0)
    alerts = ""
    if review:
        alerts += f'<p class="flash-error"><a href="/review">{e(births.get("needs_review", review))} 条登记待复核</a></p>'
    if parked:
        alerts += f'<p class="flash-error"><a href="/parked">{e(parked)} 个投递已搁置</a></p>'
    return page(
        "概览",
        f"{alerts}<h2>与医保中心的连通</h2>{centre(contact)}<h2>新生儿登记（按状态）</h2>{by_state}<h2>钩子投递</h2>{deliveries}"
        f"<h2>插件（持久订阅者）</h2>{subscribers}<h2>定时任务最近运行</h2>{runs}{more}",
        session,
    )


# --- needs review ------------------------------------------------------------------------------------


def resolve_forms(birth_id: int, session: Session) -> str:
    """The three ways to resolve a review, as the clerk found the birth at the centre."""
    if not session.may_act:
        return "<p>（查看员不能处理；请操作员登录）</p>"
    action = f"/births/{e(birth_id)}/resolve"
    csrf = csrf_field(session)
    return (
        f'<form class="act" method="post" action="{action}">{csrf}<input type="hidden" name="how" value="registered">'
        '<label>中心的登记流水号 baz726 <input name="baz726" size="24" required></label> '
        '<label><input type="radio" name="eligible" value="yes" required>可预参保</label>'
        '<label><input type="radio" name="eligible" value="no">不可预参保</label> '
        "<button>已在中心登记</button></form>"
        f'<form class="act" method="post" action="{action}">{csrf}<input type="hidden" name="how" value="refused">'
        '<label>拒绝原因 <input name="cause" size="24" required></label> <button>中心已拒绝</button></form>'
        f'<form class="act" method="post" action="{action}">{csrf}<input type="hidden" name="how" value="send_again">'
        "<button>中心查无此登记：重新上传</button></form>"
    )


def needs_review(births: list[BirthStatus], session: Session) -> str:
    rows = (
        [birth_link(s.birth_id), e(s.his_serial), e(s.birth.multiple_birth_number), e(china_time(s.recorded_at)),
         e(s.reason), resolve_forms(s.birth_id, session)]
        for s in births
    )
    intro = (
        "<p>这些登记上传后结果不明（应答丢失后又被拒绝等）。请在定点机构管理系统中查询后，按查到的情况处理：</p>"
    )
    return page("待复核", intro + table(["登记", "HIS流水号", "多胞胎序号", "记录时间", "原因", "处理"], rows, "没有待复核的登记"), session)


# --- parked deliveries ---------------------------------------------------------------------------------


def parked(items: list[Mapping[str, Any]], session: Session) -> str:
    def replay_form(event_id: str) -> str:
        if not session.may_act:
            return ""
        return (
            f'<form class="act" method="post" action="/parked/replay">{csrf_field(session)}'
            f'<input type="hidden" name="event_id" value="{e(event_id)}"><button>重新投递</button></form>'
        )

    rows = (
        [e(i["plugin"]), e(i["hook"]), birth_link(i["birth_id"]) if i["birth_id"] is not None else "",
         e(i["attempts"]), e(i["error"]), f"<code>{e(i['event_id'])}</code>", replay_form(i["event_id"])]
        for i in items
    )
    every = "".join(
        f'<form class="act" method="post" action="/parked/replay">{csrf_field(session)}'
        f'<input type="hidden" name="plugin" value="{e(plugin)}"><button>重新投递插件 {e(plugin)} 的全部</button></form>'
        for plugin in sorted({str(i["plugin"]) for i in items})
    ) if session.may_act else ""
    return page(
        "搁置的投递",
        "<p>插件多次处理失败的事件会被搁置，修好插件后可重新投递（一个，或一个插件的全部）。</p>"
        + every + table(["插件", "钩子", "登记", "尝试次数", "最后错误", "事件", "操作"], rows, "没有搁置的投递"),
        session,
    )


# --- exchanges ------------------------------------------------------------------------------------------


def exchanges(rows: list[ExchangeRow], funids: list[str], funid: str | None, outcome: str | None, session: Session) -> str:
    def options(values: list[tuple[str, str]], chosen: str | None) -> str:
        return '<option value="">全部</option>' + "".join(
            f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(label)}</option>' for v, label in values
        )

    choose = (
        '<form method="get" action="/exchanges">'
        f'<label>交易 <select name="funid">{options([(f, funid_label(f)) for f in funids], funid)}</select></label> '
        f'<label>结果 <select name="outcome">{options(list(OUTCOMES.items()), outcome)}</select></label> '
        "<button>筛选</button></form>"
    )
    listed = table(
        ["时间（北京时间）", "交易", "结果", "耗时（秒）", "登记", "错误"],
        (
            [f'<a href="/exchanges/{e(x.id)}">{e(china_time(x.started_at))}</a>', e(funid_label(x.funid)),
             f'<span data-outcome="{e(x.outcome)}">'
             f"{e(OUTCOMES.get(x.outcome, x.outcome))}</span>", e("" if x.elapsed is None else f"{x.elapsed:.3f}"),
             birth_link(x.birth_id) if x.birth_id is not None else "", e(x.error)]
            for x in rows
        ),
        "没有符合条件的交易",
    )
    return page("交易记录", f"{choose}<p>最近 {len(rows)} 条（最多 200 条，新的在前）。</p>{listed}", session)


# --- births -------------------------------------------------------------------------------------------


def find_birth(
    session: Session, lines: list[BirthLine], day: str, state: str | None, message: str = ""
) -> str:
    """The births list (by day and state) and the lookup by number (posted: never in a URL)."""
    error = f'<p class="flash-error" role="alert">{e(message)}</p>' if message else ""
    find = (
        f'<form method="post" action="/births">{csrf_field(session)}'
        '<label>登记号（#）、HIS流水号 bke042 或 登记流水号 baz726 <input name="key" required></label> '
        "<button>查找</button></form>"
    )
    states = '<option value="">全部</option>' + "".join(
        f'<option value="{e(k)}"{" selected" if k == state else ""}>{e(v)}</option>' for k, v in STATES.items()
    )
    choose = (
        '<form method="get" action="/births">'
        f'<label>记录日期 <input type="date" name="date" value="{e(day)}"></label> '
        f'<label>状态 <select name="state">{states}</select></label> <button>列出</button></form>'
    )
    listed = table(
        ["登记", "HIS流水号", "多胞胎序号", "状态", "登记流水号 baz726", "记录时间（北京时间）"],
        (
            [birth_link(b.id), e(b.his_serial), e(b.multiple_birth_number),
             f'<span data-state="{e(b.state)}">{e(state_label(b.state))}</span>', e(b.registration_number),
             e(china_time(b.recorded_at))]
            for b in lines
        ),
        "没有符合条件的登记",
    )
    return page(
        "查找新生儿",
        f"{error}<h2>按号码查找</h2>{find}<h2>按日期和状态列出</h2>{choose}<p>最多 200 条，新的在前。</p>{listed}",
        session,
    )


_WIRE_NAMES = {f.name: f.encode_name for f in msgspec.structs.fields(Birth)}


def _birth_field(birth: Birth, name: str, reveal: bool = False) -> str:
    value = getattr(birth, name)
    if value is None or value == "":
        return ""
    return mask(value) if name in Birth.personal and not reveal else str(value)


KINDS = {"recorded": "记录", "exchange": "与中心交易", "delivery": "投递给插件", "action": "人工操作"}


def _timeline(status: BirthStatus, deliveries: Iterable[DeliveryLine] = ()) -> list[tuple[float, str, str, str, str]]:
    """The birth's life in time order: recorded, each exchange with the centre, each person's action."""
    entries = [(status.recorded_at, "recorded", "HIS 记录了这条登记", "", "")]
    entries += [
        (x.started_at, "exchange", funid_label(x.funid), OUTCOMES.get(x.outcome, x.outcome),
         " ".join(part for part in ("" if x.elapsed is None else f"{x.elapsed:.3f} 秒", x.error or "") if part))
        for x in status.exchanges
    ]
    entries += [
        (d.at, "delivery", f"{d.hook} → {d.plugin}", DELIVERY_STATES.get(d.state, d.state),
         " ".join(part for part in (f"尝试 {d.attempts} 次" if d.attempts > 1 else "", d.error or "") if part))
        for d in deliveries
    ]
    entries += [(a.at, "action", a.action, a.operator, a.detail or "") for a in status.actions]
    return sorted(entries, key=lambda entry: entry[0])


def birth(
    status: BirthStatus, session: Session, actions: str = "", *, reveal: bool = False, deliveries: Iterable[DeliveryLine] = ()
) -> str:
    """A birth's page; ``actions``: the operator's forms for its state; ``reveal``: personal
    fields in the clear (the caller journaled it)."""
    facts = [
        ("状态", state_label(status.state)), ("HIS流水号 bke042", status.his_serial),
        ("登记流水号 baz726", status.registration_number), ("是否可预参保",
         None if status.eligible is None else ("是" if status.eligible else "否")),
        ("原因", status.reason), ("上传次数", status.attempts), ("下次尝试", china_time(status.next_attempt_at)),
        ("最后错误", status.last_error), ("记录时间", china_time(status.recorded_at)),
        ("登记时间", china_time(status.registered_at)),
    ]
    summary = table(["项目", "内容"], ([e(k), e(v)] for k, v in facts if v is not None))
    if status.replaces is not None:
        summary += f"<p>更正自 {birth_link(status.replaces)}</p>"
    if status.replaced_by is not None:
        summary += f"<p>已被 {birth_link(status.replaced_by)} 更正替换</p>"
    record = table(
        ["字段", "名称", "值（已显示个人信息，已记录查看人）" if reveal else "值（个人信息已遮蔽）"],
        (
            [f"<code>{e(wire)}</code>", e(Birth.labels.get(wire, "")), e(_birth_field(status.birth, name, reveal))]
            for name, wire in _WIRE_NAMES.items() if _birth_field(status.birth, name)
        ),
    )
    timeline = table(
        ["时间（北京时间）", "类别", "内容", "结果或操作员", "说明"],
        (
            [e(china_time(at)), f'<span data-kind="{e(kind)}">{e(KINDS[kind])}</span>', e(what), e(who), e(note)]
            for at, kind, what, who, note in _timeline(status, deliveries)
        ),
    )
    resolve = ""
    if status.state == BirthState.NEEDS_REVIEW:
        resolve = "<h2>复核处理</h2>" + resolve_forms(status.birth_id, session)
    return page(
        f"新生儿登记 #{status.birth_id}",
        f"{summary}{resolve}<h2>时间线</h2>{timeline}<h2>上传的记录</h2>{record}{actions}",
        session,
    )


def message(title: str, text: str, session: Session | None = None) -> str:
    return page(title, f"<p>{e(text)}</p>", session)


def refusal(title: str, text: str, session: Session | None = None, back: str = "/") -> str:
    """A request the console refused (bad input, no such page): the reason as an error, and the
    way back (no script: the browser's back button would resend nothing either)."""
    return page(title, f'<p class="flash-error" role="alert">{e(text)}</p><p><a href="{e(back)}">返回</a></p>', session)
