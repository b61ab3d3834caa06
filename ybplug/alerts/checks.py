"""What needs a person, found in the journal: one look, a :class:`Finding` per incident key.

Each check reads counts and codes (never a record), so a finding can leave the hospital in a
chat message.  Run on the journal's thread: ``host.run_journal(findings, journal, config, now)``.
"""

from __future__ import annotations

from datetime import datetime

from ybplug.alerts.config import AlertsSection
from ybplug.alerts.model import Finding
from ybplug.config import Config, upload_time
from ybplug.console.contact import last_centre_outcome, voucher_crashes
from ybplug.fields import CHINA_TIME
from ybplug.journal import Journal
from ybplug.plugins.collection import last_slot


def findings(journal: Journal, config: Config, section: AlertsSection, now: float) -> dict[str, Finding]:
    """Everything that needs a person now, by incident key."""
    found: dict[str, Finding] = {}
    found.update(_parked(journal))
    found.update(_in_review(journal))
    found.update(_signin(journal))
    found.update(_upload(journal, config, section, now))
    found.update(_voucher(journal, section, now))
    found.update(_stale(journal))
    return found


def _parked(journal: Journal) -> dict[str, Finding]:
    rows = journal.db.execute(
        "SELECT plugin, count(*) FROM deliveries WHERE state = 'parked' GROUP BY plugin ORDER BY plugin"
    ).fetchall()
    return {
        f"parked:{plugin}": Finding(
            kind="parked", count=int(n), title=f"插件 {plugin} 的投递已搁置",
            text=f"插件 {plugin} 有 {n} 个事件多次处理失败，已搁置，医院系统可能缺少这些结果。"
            "请查看该插件的日志并修复，然后在运维控制台「搁置的投递」页重新投递。",
        )
        for plugin, n in rows
    }


def _in_review(journal: Journal) -> dict[str, Finding]:
    (n,) = journal.db.execute("SELECT count(*) FROM births WHERE state = 'needs_review'").fetchone()
    if not n:
        return {}
    return {"review": Finding(
        kind="review", count=int(n), title="新生儿登记待复核",
        text=f"有 {n} 条新生儿登记上传结果不明，需要人工复核。请在定点机构管理系统中查询后，"
        "在运维控制台「待复核」页按查到的情况处理（填写登记流水号、标记拒绝或重新上传）。",
    )}


def _signin(journal: Journal) -> dict[str, Finding]:
    """The centre refused the interface account at the latest exchange with it."""
    if last_centre_outcome(journal) != "auth_failed":
        return {}
    return {"signin": Finding(
        kind="signin", title="医保中心拒绝签到",
        text="医保中心拒绝了本机构的接口账号（认证失败），新生儿登记暂时无法上传。"
        "请核对 ybplug.toml 中 [wire] 的 usr、pwd 是否与中心分配的一致（密码是否已被更改），改正后重启 ybplug。",
    )}


def _upload(journal: Journal, config: Config, section: AlertsSection, now: float) -> dict[str, Finding]:
    """Births that should have been uploaded ``upload_grace_minutes`` ago and still wait: the
    daily run was missed (the worker was down) or its uploads keep failing."""
    grace = section.upload_grace_minutes * 60
    daily = upload_time(config.upload)
    if daily is None:
        cutoff = now - grace
        due = "记录后"
    else:
        slot = last_slot(*daily, datetime.fromtimestamp(now - grace, CHINA_TIME))
        cutoff = slot.timestamp()
        due = f"{slot:%m-%d %H:%M} 的每日上传"
    waiting, failed = journal.db.execute(
        "SELECT count(*), count(CASE WHEN attempts > 0 THEN 1 END) FROM births WHERE state IN ('pending', 'uploading') AND created_at < ?",
        (cutoff,),
    ).fetchone()
    if not waiting:
        return {}
    if failed:
        what = f"其中 {failed} 条上传失败、正在重试。请在运维控制台「交易记录」页查看失败原因（网络、中心、账号）。"
    else:
        what = "这些登记尚未尝试上传：ybplug 工作进程可能没有运行，请检查 ybplug 服务。"
    return {"upload": Finding(
        kind="upload", count=int(waiting), title="新生儿登记上传未完成",
        text=f"有 {waiting} 条应在{due}上传的新生儿登记超过 {section.upload_grace_minutes:g} 分钟仍未上传。{what}",
    )}


def _voucher(journal: Journal, section: AlertsSection, now: float) -> dict[str, Finding]:
    """The voucher library crashed again and again lately (each crash is an EcTrans exchange)."""
    window = section.voucher_window_minutes * 60
    n = voucher_crashes(journal, now - window)
    if n < section.voucher_crashes:
        return {}
    return {"voucher": Finding(
        kind="voucher", count=n, title="医保电子凭证组件反复崩溃",
        text=f"近 {section.voucher_window_minutes:g} 分钟内电子凭证组件（EcTrans）崩溃 {n} 次，扫码读取医保码可能不可用。"
        "请检查厂商组件的版本和日志，必要时联系厂商。",
    )}


def _stale(journal: Journal) -> dict[str, Finding]:
    (n,) = journal.db.execute("SELECT count(*) FROM births WHERE state = 'stale'").fetchone()
    if not n:
        return {}
    return {"stale": Finding(
        kind="stale", count=int(n), title="新生儿超期未实名",
        text=f"有 {n} 名已登记的新生儿超过期限仍未完成实名。请联系家长尽快为新生儿办理户籍和医保实名；"
        "可在运维控制台「查找新生儿」按状态「超期未实名」查看，实名后 ybplug 会自动更新。",
    )}
