"""``/metrics``: the journal's figures in Prometheus's text format (0.0.4), written by hand.

No personal data: counts by state, plugin, transaction and outcome only.  The figures are read
from the journal at each scrape (the journal is the truth; a worker in another process changes
it), so they are gauges: a counter would need a process that saw every exchange.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ybplug.journal import Journal
from ybplug.lifecycle import BirthState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Figures:
    """What one scrape reports."""

    births: dict[str, int] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    exchanges: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Per transaction: the count at or under each bucket's bound (cumulative), the sum and count.
    latency: dict[str, tuple[list[int], float, int]] = field(default_factory=dict)
    #: Open alert incidents by kind.
    incidents: dict[str, int] = field(default_factory=dict)


#: The latency histogram's upper bounds, seconds (the wire's read timeout is 30 by default).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def read_figures(journal: Journal) -> Figures:
    """Count the journal's rows (run on the journal's thread: ``host.run_journal(read_figures, journal)``)."""
    db = journal.db
    figures = Figures()
    figures.births = {str(s): 0 for s in BirthState}
    figures.births.update({str(s): int(n) for s, n in db.execute("SELECT state, count(*) FROM births GROUP BY state")})
    figures.deliveries = {
        (str(p), str(s)): int(n)
        for p, s, n in db.execute(
            "SELECT plugin, state, count(*) FROM deliveries WHERE state IN ('pending', 'parked') GROUP BY plugin, state"
        )
    }
    # One pass over the exchanges for the counts and the histogram (the table is the journal's largest).
    bounds = ", ".join(f"count(CASE WHEN elapsed <= {b!r} THEN 1 END)" for b in BUCKETS)
    for funid, outcome, n, total, timed, *cumulative in db.execute(
        f"SELECT funid, outcome, count(*), coalesce(sum(elapsed), 0), count(elapsed), {bounds}"
        " FROM exchanges GROUP BY funid, outcome"
    ):
        figures.exchanges[(str(funid), str(outcome))] = int(n)
        if timed:
            buckets, seconds, count = figures.latency.get(str(funid), ([0] * len(BUCKETS), 0.0, 0))
            figures.latency[str(funid)] = (
                [a + int(b) for a, b in zip(buckets, cumulative)], seconds + float(total), count + int(timed)
            )
    figures.incidents = {
        str(k): int(n) for k, n in db.execute("SELECT kind, count(*) FROM incidents WHERE resolved_at IS NULL GROUP BY kind")
    }
    return figures


_ESCAPE = re.compile(r'[\\"\n]')


def _label(value: str) -> str:
    return _ESCAPE.sub(lambda m: {"\\": "\\\\", '"': '\\"', "\n": "\\n"}[m.group()], value)


def exposition(figures: Figures) -> str:
    """The text a Prometheus server scrapes."""
    lines = [
        "# HELP ybplug_births Newborn records in the journal, by state.",
        "# TYPE ybplug_births gauge",
        *(f'ybplug_births{{state="{_label(s)}"}} {n}' for s, n in sorted(figures.births.items())),
        "# HELP ybplug_deliveries Hook deliveries not yet done, by plugin and state (pending, parked).",
        "# TYPE ybplug_deliveries gauge",
        *(
            f'ybplug_deliveries{{plugin="{_label(p)}",state="{_label(s)}"}} {n}'
            for (p, s), n in sorted(figures.deliveries.items())
        ),
        "# HELP ybplug_exchanges Exchanges with the centre kept in the journal, by transaction and outcome.",
        "# TYPE ybplug_exchanges gauge",
        *(
            f'ybplug_exchanges{{funid="{_label(f)}",outcome="{_label(o)}"}} {n}'
            for (f, o), n in sorted(figures.exchanges.items())
        ),
        "# HELP ybplug_exchange_seconds Time on the wire of the journal's exchanges, by transaction (EcTrans: voucher calls).",
        "# TYPE ybplug_exchange_seconds histogram",
    ]
    for funid, (cumulative, total, count) in sorted(figures.latency.items()):
        f = _label(funid)
        lines += [f'ybplug_exchange_seconds_bucket{{funid="{f}",le="{b:g}"}} {n}' for b, n in zip(BUCKETS, cumulative)]
        lines += [f'ybplug_exchange_seconds_bucket{{funid="{f}",le="+Inf"}} {count}',
                  f'ybplug_exchange_seconds_sum{{funid="{f}"}} {total!r}', f'ybplug_exchange_seconds_count{{funid="{f}"}} {count}']
    lines += [
        "# HELP ybplug_incidents_open Alert incidents open now, by kind (see [alerts]).",
        "# TYPE ybplug_incidents_open gauge",
        *(f'ybplug_incidents_open{{kind="{_label(k)}"}} {n}' for k, n in sorted(figures.incidents.items())),
    ]
    return "\n".join(lines) + "\n"
