"""The operator's forms beyond a review's resolution, and the page of everything stuck.

A refused birth is amended here (and sent again), a registration voided, a void whose reply was
lost sent again, newborns past the real-name horizon asked about again, failing uploads retried
now, and a record's personal data revealed, each for the operator role only and journaled with
the operator's name.  Built like :mod:`ybplug.console.pages` (escaped values, no script).
"""

from __future__ import annotations

import msgspec

from ybplug.console.pages import birth_link, csrf_field, e, page, table
from ybplug.console.sessions import Session
from ybplug.journal.model import BirthStatus
from ybplug.lifecycle import BirthState
from ybplug.messages import Birth

#: Wire name -> attribute, in the record's order.
FIELDS = {f.encode_name: f.name for f in msgspec.structs.fields(Birth)}


def _form(action: str, session: Session, body: str, button: str) -> str:
    return f'<form class="act" method="post" action="{e(action)}">{csrf_field(session)}{body}<button>{e(button)}</button></form>'


def birth_actions(status: BirthStatus, session: Session) -> str:
    """What an operator may do on a birth's page, by its state (nothing for a viewer)."""
    if not session.may_act:
        return ""
    base = f"/births/{status.birth_id}"
    parts = [_form(f"{base}/reveal", session, "", "显示个人信息（将记录查看人和时间）")]
    if status.state == BirthState.REFUSED:
        parts.append("<h2>改正后重新上传</h2>" + amend_form(status, session))
    if status.state in (BirthState.REGISTERED, BirthState.STALE):
        parts.append("<h2>作废登记（yb04.13.01.22）</h2>" + _form(
            f"{base}/void", session, '<label>作废原因 <input name="reason" size="30" required></label> ', "作废此登记"))
    return "".join(parts)


def amend_form(status: BirthStatus, session: Session) -> str:
    """Every field of the record; a personal field is left empty (shown masked as a hint) and
    kept as it is unless the operator types a new value."""
    rows = []
    for wire, name in FIELDS.items():
        value = getattr(status.birth, name)
        shown = "" if value is None else str(value)
        label = f"{Birth.labels.get(wire, '')} {wire}"
        if name in Birth.personal:
            field = f'<input name="{e(wire)}" aria-label="{e(label)}" placeholder="留空则不改" size="24">'
        else:
            field = f'<input name="{e(wire)}" aria-label="{e(label)}" value="{e(shown)}" size="24">'
        rows.append([f"<code>{e(wire)}</code>", e(Birth.labels.get(wire, "")), field])
    return (
        f'<form method="post" action="/births/{status.birth_id}/amend">{csrf_field(session)}'
        f"<p>中心拒绝原因：{e(status.reason)}。改正有误的项目后提交，登记会立即重新上传。个人信息项留空则保持原值。</p>"
        + table(["字段", "名称", "值"], rows)
        + "<button>改正并重新上传</button></form>"
    )


def attention(
    refused: list[BirthStatus], failing: list[BirthStatus], stale: list[BirthStatus],
    voids: list[tuple[int, str]], review: int, parked: int, session: Session,
) -> str:
    """Every state of a birth's life that waits for a person, with what to do about it."""
    act = session.may_act

    def lines(births: list[BirthStatus], empty: str, extra: str = "") -> str:
        return table(
            ["登记", "HIS流水号", "原因或最后错误"],
            ([birth_link(b.birth_id), e(b.his_serial), e(b.reason or b.last_error)] for b in births),
            empty,
        ) + (extra if births and act else "")

    voided = table(
        ["登记", "登记流水号 baz726", "操作"],
        ([birth_link(birth_id), e(number), _form("/attention/void-again", session,
          f'<input type="hidden" name="birth_id" value="{e(birth_id)}">', "重新发送作废") if act else ""]
         for birth_id, number in voids),
        "没有结果不明的作废",
    )
    return page(
        "需处理",
        f'<p><a href="/review">{e(review)} 条登记待复核</a>；<a href="/parked">{e(parked)} 个投递已搁置</a>。</p>'
        "<h2>被中心拒绝</h2><p>打开登记，改正有误的项目后重新上传。</p>"
        + lines(refused, "没有被拒绝的登记")
        + "<h2>上传失败、等待重试</h2>"
        + lines(failing, "没有上传失败的登记", _form("/attention/retry", session, "", "立即重试上传"))
        + "<h2>作废结果不明</h2><p>作废请求的应答丢失，中心可能已作废也可能没有：重新发送，中心会答复已作废或作废成功。</p>"
        + voided
        + "<h2>超期未实名</h2><p>已登记但超过期限未实名的新生儿，日常查询已不再询问；家长办理后可立即查询。</p>"
        + lines(stale, "没有超期未实名的新生儿", _form("/attention/stale", session, "", "立即查询实名"))
        , session,
    )
