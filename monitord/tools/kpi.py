"""KPIs the property-management texts name, from the store's ticket and alert events.

``monitord report`` prints them: MTTA and MTTR, SLA compliance per priority
and category, repeat failures per asset, the ISA-18.2 / EEMUA 191 alarm-rate
figures about monitord's own output (alarms per 10 minutes, flood periods,
chattering alerts, stale alarms), and the duty desk's service quality per
week (回访率, satisfaction, complaints, 有效投诉办结率: ``tickets.quality``).
"""

from __future__ import annotations

import math
import statistics
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import SiteConfig
from monitord.tickets.desk import Ticket
from monitord.tickets.quality import COMPLAINT_TARGET, Week
from monitord.tickets.sla import DEFAULT_SLA, Sla

WINDOW = 600.0  # ISA-18.2 counts alarms per 10 minutes
FLOOD = 10  # more than this in one window is a flood


@dataclass
class Clock:
    """One SLA clock (ack or resolve) over a group of tickets: met, missed, and still running."""

    met: int = 0
    missed: int = 0
    running: int = 0  # not done yet and still within the SLA: neither met nor missed

    def count(self, done_at: float | None, opened_at: float, limit: float, now: float) -> None:
        if done_at is not None:
            ok = done_at - opened_at <= limit
            self.met, self.missed = self.met + ok, self.missed + (not ok)
        elif now - opened_at > limit:
            self.missed += 1
        else:
            self.running += 1

    def __str__(self) -> str:
        decided = self.met + self.missed
        share = f"{self.met / decided:6.1%}" if decided else "     -"
        return share + (f" ({self.running} within SLA)" if self.running else "")


@dataclass
class Report:
    tickets: int = 0
    mtta: float | None = None  # median seconds from open to acknowledge
    mttr: float | None = None  # median seconds from open to resolve
    sla: dict[tuple[str, str], tuple[int, Clock, Clock]] = field(
        default_factory=dict
    )  # (prio, cat) → tickets, ack clock, resolve clock
    repeats: dict[str, int] = field(default_factory=dict)
    alarms_per_10min: float = 0.0
    max_per_10min: int = 0
    flood_share: float = 0.0
    chattering: int = 0
    stale: int = 0


def report(
    tickets: Sequence[Ticket], alerts: Sequence[AlertEvent], sla_of: Callable[[str], Sla], now: float
) -> Report:
    r = Report(tickets=len(tickets))
    acks = [t.acknowledged_at - t.opened_at for t in tickets if t.acknowledged_at is not None]
    fixes = [t.resolved_at - t.opened_at for t in tickets if t.resolved_at is not None]
    r.mtta = statistics.median(acks) if acks else None
    r.mttr = statistics.median(fixes) if fixes else None
    for t in tickets:
        s = sla_of(t.priority)
        n, ack, fix = r.sla.get((t.priority, t.category), (0, Clock(), Clock()))
        ack.count(t.acknowledged_at, t.opened_at, s.ack, now)
        fix.count(t.resolved_at, t.opened_at, s.resolve, now)
        r.sla[(t.priority, t.category)] = (n + 1, ack, fix)
        if t.repeats:
            r.repeats[t.asset] = r.repeats.get(t.asset, 0) + t.repeats
    fired = [a.ts for a in alerts if a.state == "firing"]
    if fired:
        start = min(fired)
        windows = max(1, math.ceil((now - start) / WINDOW))
        per = Counter(int((ts - start) // WINDOW) for ts in fired)
        r.alarms_per_10min = len(fired) / windows
        r.max_per_10min = max(per.values())
        r.flood_share = sum(1 for n in per.values() if n > FLOOD) / windows
    r.chattering = len({(a.rule, a.asset) for a in alerts if a.state == "flapping"})
    open_since: dict[tuple[str, str], float] = {}
    for a in sorted(alerts, key=lambda a: a.ts):
        if a.state == "firing":
            open_since[(a.rule, a.asset)] = a.ts
        elif a.state == "resolved":
            open_since.pop((a.rule, a.asset), None)
    r.stale = sum(1 for ts in open_since.values() if now - ts > 86400)
    return r


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
