"""``monitord report``: the KPIs as text lines (computed in monitord/tickets/kpi.py, which the
console's KPI page shares, and monitord/tickets/quality.py).

``monitord report`` prints them: MTTA and MTTR, SLA compliance per priority
and category, repeat failures per asset, the ISA-18.2 / EEMUA 191 alarm-rate
figures about monitord's own output (alarms per 10 minutes, flood periods,
chattering alerts, stale alarms), and the duty desk's service quality per
week (回访率, satisfaction, complaints, 有效投诉办结率: ``tickets.quality``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from monitord.config.site import SiteConfig
from monitord.tickets.kpi import Clock, Report, report
from monitord.tickets.quality import COMPLAINT_TARGET, Week
from monitord.tickets.sla import DEFAULT_SLA, Sla

__all__ = ["Clock", "Report", "render", "report", "sla_lookup"]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def sla_lookup(config: SiteConfig | None) -> Callable[[str], Sla]:
    """The SLA per priority: the config's, or without a config the defaults."""
    if config is not None:
        return config.sla_of

    def default_sla(priority: str) -> Sla:
        return DEFAULT_SLA[priority]

    return default_sla


def render(r: Report) -> list[str]:
    lines = [
        f"tickets: {r.tickets}   MTTA (median): {_duration(r.mtta)}   MTTR (median): {_duration(r.mttr)}"
    ]
    lines.append("SLA compliance (acknowledged in time / resolved in time, of the clocks that ran out):")
    for (priority, category), (n, ack, fix) in sorted(r.sla.items()):
        lines.append(f"  {priority} {category:12} {n:4} tickets   ack {ack}   resolve {fix}")
    if r.repeats:
        lines.append("repeat failures: " + ", ".join(f"{a} ×{n}" for a, n in sorted(r.repeats.items())))
    lines.append(
        f"alarms per 10 min: {r.alarms_per_10min:.2f} average (target ~1, at most 2), "
        f"{r.max_per_10min} at most; flood time {r.flood_share:.1%} (target < 1 %); "
        f"chattering {r.chattering} (target 0); stale {r.stale}"
    )
    return lines


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _right(text: str, width: int) -> str:
    """``text`` right-aligned in ``width`` terminal columns (a CJK character takes two)."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return " " * max(0, width - columns) + text


#: The weekly table's columns: heading and width.
WEEK_COLUMNS = (
    ("week", 8),
    ("requests", 8),
    ("closed", 6),
    ("followed", 8),
    ("回访率", 7),
    ("satisf.", 7),
    ("low", 3),
    ("complaints", 10),
    ("valid", 5),
    ("closed", 6),
    ("办结率", 7),
)


def render_weeks(site: str, weeks: list[Week]) -> list[str]:
    """The desk's service quality, one row per ISO week and a total (definitions: docs/desk.md)."""
    lines = [
        f"service quality, site {site} (回访率 = follow-ups / tickets closed; 有效投诉办结率 target "
        f"{COMPLAINT_TARGET:.0%}):"
    ]
    for w in [None, *weeks]:
        if w is None:
            cells = [heading for heading, _ in WEEK_COLUMNS]
        else:
            mean = "-" if w.mean_satisfaction is None else f"{w.mean_satisfaction:.2f}"
            figures = [
                w.requests,
                w.closed,
                w.followed_up,
                _share(w.follow_up_rate),
                mean,
                w.low_satisfaction,
                w.complaints,
                w.valid_complaints,
                w.complaints_closed,
                _share(w.complaint_close_rate),
            ]
            cells = [w.week, *map(str, figures)]
        week, *rest = cells
        lines.append(
            f"  {week:8}"
            + "".join(" " + _right(c, n) for c, (_, n) in zip(rest, WEEK_COLUMNS[1:], strict=True))
        )
    return lines
