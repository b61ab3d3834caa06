"""The console's report pages: the reconciliation (table, chart, CSV link) and the alerts'
incidents.  HTML built like :mod:`ybplug.console.pages` (every value escaped, no script)."""

from __future__ import annotations

from dataclasses import astuple

from ybplug.clerk import china_time
from ybplug.console.contact import VoucherHealth
from ybplug.console.exchanges import ExchangeDetail
from ybplug.console.pages import OUTCOMES, birth_link, e, funid_label, page, table
from ybplug.console.reconcile import COLUMNS, Row, chart, total
from ybplug.console.sessions import Session
from ybplug.journal.console import Incident

BY = {"day": "按日", "month": "按月"}


def reconciliation(rows: list[Row], by: str, start: str, end: str, session: Session) -> str:
    choose = (
        '<form method="get" action="/reconcile">'
        + "".join(f'<label><input type="radio" name="by" value="{k}"{" checked" if k == by else ""}>{v}</label> '
                  for k, v in BY.items())
        + f'<label>从 <input type="date" name="from" value="{e(start)}"></label> '
        f'<label>到 <input type="date" name="to" value="{e(end)}"></label> <button>统计</button></form>'
    )
    query = f"by={e(by)}&amp;from={e(start)}&amp;to={e(end)}"
    listed = table(
        list(COLUMNS.values()),
        ([e(v) for v in astuple(r)] for r in [*reversed(rows), total(rows)]),
    )
    return page(
        "对账",
        f"{choose}<p>按记录日期（北京时间）统计每批登记现在的状态，可与医保办的名单逐日核对。"
        "「已登记」含其后作废或已实名的；「可预参保」为中心答复可预参保的。</p>"
        f'<p><a href="/reconcile.csv?{query}" download>导出 CSV（医保办用）</a></p>'
        f"<figure>{chart(rows)}</figure>{listed}",
        session,
    )


STATUS = {True: "进行中", False: "已恢复"}


def alerts(incidents: list[Incident], session: Session) -> str:
    listed = table(
        ["告警", "状态", "开始（北京时间）", "最近通知", "提醒次数", "恢复（北京时间）"],
        (
            [e(i.summary), f'<span data-incident="{e(i.key)}">{e(STATUS[i.resolved_at is None])}</span>',
             e(china_time(i.opened_at)), e(china_time(i.notified_at) or "未送出"), e(i.reminders),
             e(china_time(i.resolved_at))]
            for i in incidents
        ),
        "没有告警",
    )
    return page(
        "告警",
        "<p>工作进程（<code>ybplug run</code>，配置了 <code>[alerts]</code>）发现需要人处理的情况时，每件事只通知一次，"
        "未处理时按间隔提醒，处理好后通知已恢复。</p>" + listed,
        session,
    )


def exchange(detail: ExchangeDetail, session: Session) -> str:
    x = detail.row
    facts = table(["项目", "内容"], [
        [e("交易"), e(funid_label(x.funid))], [e("结果"), f'<span data-outcome="{e(x.outcome)}">{e(OUTCOMES.get(x.outcome, x.outcome))}</span>'],
        [e("开始（北京时间）"), e(china_time(x.started_at))], [e("耗时（秒）"), e("" if x.elapsed is None else f"{x.elapsed:.3f}")],
        [e("登记"), birth_link(x.birth_id) if x.birth_id is not None else ""], [e("错误"), e(x.error)],
    ])
    request = (f"<pre>{e(detail.request)}</pre>" if detail.request is not None else
               "<p>（未单独保存：新生儿信息采集的请求即登记的记录，见登记页面）</p>")
    reply = f"<pre>{e(detail.reply)}</pre>" if detail.reply is not None else "<p>（没有应答）</p>"
    return page(f"交易 #{x.id}", f"{facts}<h2>请求（个人信息已遮蔽）</h2>{request}<h2>应答（个人信息已遮蔽）</h2>{reply}", session)


def health(voucher: VoucherHealth, incidents: list[Incident]) -> str:
    """The overview's last sections: the voucher library's health and the open alerts."""
    if voucher.last is None:
        shown = '<p data-voucher="none">尚未调用电子凭证组件（EcTrans）。</p>'
    else:
        x = voucher.last
        kind = "ok" if x.outcome == "ok" and not voucher.crashes_last_hour else "error"
        shown = (
            f'<p class="flash-{kind}" data-voucher="{e(x.outcome)}">最近一次调用：{e(china_time(x.started_at))}，'
            f"{e(OUTCOMES.get(x.outcome, x.outcome))}{('（' + e(x.error) + '）') if x.error else ''}；"
            f"近一小时崩溃 <span data-crashes>{e(voucher.crashes_last_hour)}</span> 次。</p>"
        )
    opened = [i for i in incidents if i.resolved_at is None]
    alerts = ('<p class="flash-error"><a href="/alerts">' + e(len(opened)) + " 个告警未恢复</a>：" + e("；".join(i.summary for i in opened)) + "</p>"
              if opened else "<p>没有未恢复的告警。</p>")
    return f"<h2>电子凭证组件（扫码）</h2>{shown}<h2>告警</h2>{alerts}"
