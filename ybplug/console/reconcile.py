"""The reconciliation: per day or month (China time) of recording, what became of the births.

Each row is a cohort (the births recorded that day or month) counted by where each stands now,
so a row can be set beside the insurance office's own list of that day: recorded, uploaded
(answered by the centre), registered (given a ``baz726``, voided or real-named since included),
eligible for pre-enrolment, refused, in review, voided, real-named, stale.  Counts only: the CSV
leaves the ward for the insurance office and holds nothing personal.
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime, timedelta
from html import escape

from ybplug.fields import CHINA_TIME
from ybplug.journal import Journal

#: The columns, in order, with their Chinese headings (the CSV's and the page's).
COLUMNS = {
    "period": "日期", "recorded": "记录", "uploaded": "已上传", "registered": "已登记", "eligible": "可预参保",
    "refused": "被拒绝", "in_review": "待复核", "voided": "已作废", "real_named": "已实名", "stale": "超期未实名",
}
_CHINA = 8 * 3600  # China has no daylight saving: a fixed offset


@dataclass(frozen=True)
class Row:
    period: str
    recorded: int
    uploaded: int
    registered: int
    eligible: int
    refused: int
    in_review: int
    voided: int
    real_named: int
    stale: int


def reconcile(journal: Journal, by: str, start: date, end: date) -> list[Row]:
    """Rows for the births recorded from ``start`` to ``end`` inclusive (China dates), one per day
    (``by="day"``) or month (``"month"``), every period listed (zero rows included), oldest first.
    Run on the journal's thread (``host.run_journal``).

    The births are counted here, not by the database: SQLite and PostgreSQL share no way to turn
    a time into a China date, and a month of a large ward is a few thousand rows."""
    labels = periods(by, start, end)
    counts = {label: [0] * 9 for label in labels}
    first = datetime(start.year, start.month, start.day, tzinfo=CHINA_TIME).timestamp()
    after = first + ((end - start).days + 1) * 86400  # China has no daylight saving
    label_of_day: dict[int, str] = {}
    for created_at, state, registered, eligibility in journal.db.execute(
        "SELECT created_at, state, registration_number IS NOT NULL, eligibility FROM births"
        " WHERE created_at >= ? AND created_at < ?",
        (first, after),
    ):
        day = int((created_at + _CHINA) // 86400)
        label = label_of_day.get(day)
        if label is None:
            label = label_of_day[day] = _label(by, date(1970, 1, 1) + timedelta(days=day))
        row = counts[label]
        row[0] += 1
        row[1] += state not in ("pending", "uploading")
        row[2] += bool(registered)
        row[3] += bool(registered) and eligibility == "1"
        row[4] += state == "refused"
        row[5] += state == "needs_review"
        row[6] += state == "voided"
        row[7] += state == "real_named"
        row[8] += state == "stale"
    return [Row(label, *counts[label]) for label in labels]


def _label(by: str, day: date) -> str:
    return day.isoformat() if by == "day" else day.isoformat()[:7]


def periods(by: str, start: date, end: date) -> list[str]:
    found: list[str] = []
    day = start
    while day <= end:
        label = _label(by, day)
        if not found or found[-1] != label:
            found.append(label)
        day += timedelta(days=1)
    return found


def total(rows: list[Row]) -> Row:
    return Row("合计", *(sum(getattr(r, f.name) for r in rows) for f in fields(Row)[1:]))


def to_csv(rows: list[Row]) -> bytes:
    """UTF-8 with a byte-order mark (so Excel on a Chinese Windows reads it right), CRLF lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS.values())
    for row in [*rows, total(rows)]:
        writer.writerow(astuple(row))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


#: The chart's series: (field, label, colour).
SERIES = (("recorded", "记录", "#9aa5b1"), ("registered", "已登记", "#1f77b4"), ("real_named", "已实名", "#2ca02c"),
          ("refused", "被拒绝", "#d62728"), ("in_review", "待复核", "#ff7f0e"))


def chart(rows: list[Row], width: int = 1000, height: int = 260) -> str:
    """A grouped bar chart as inline SVG, drawn here (no script, no library)."""
    left, bottom, top = 40, 40, 30
    plot_h = height - bottom - top
    most = max([getattr(r, s[0]) for r in rows for s in SERIES] + [1])
    slot = (width - left - 10) / max(len(rows), 1)
    bar = max(1.0, slot * 0.8 / len(SERIES))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="对账图" width="{width}" height="{height}"'
             f' viewBox="0 0 {width} {height}" style="font-size:11px;background:#fff">']
    for tick in range(5):
        value = most * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{value:.0f}</text>')
    for i, row in enumerate(rows):
        x0 = left + i * slot + slot * 0.1
        for j, (name, label, colour) in enumerate(SERIES):
            value = getattr(row, name)
            h = plot_h * value / most
            parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                         f' fill="{colour}" data-series="{name}" data-value="{value}"><title>{escape(row.period)} {label} {value}</title></rect>')
        if len(rows) <= 16 or i % (len(rows) // 12 + 1) == 0:
            parts.append(f'<text x="{x0:.1f}" y="{height - bottom + 14}">{escape(row.period[5:] if len(row.period) == 10 else row.period)}</text>')
    for j, (_, label, colour) in enumerate(SERIES):
        parts.append(f'<rect x="{left + j * 90}" y="6" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{left + j * 90 + 16}" y="16">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
