"""KPIs over tickets and alert events: MTTA, MTTR, SLA compliance, repeats, follow-up, alarm rates.

In the tickets stage so that both ``monitord report`` (monitord/tools/kpi.py renders it as text) and
the console's KPI page (monitord/daemon/web) compute the same figures from the same code: MTTA and
MTTR, SLA compliance per priority and category, repeat failures per asset, and the ISA-18.2 /
EEMUA 191 alarm-rate figures about monitord's own output (alarms per 10 minutes, flood periods,
chattering alerts, stale alarms). The duty desk's service quality (回访率, satisfaction,
complaints) is monitord/tickets/quality.py.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitord.alerting.tracker import AlertEvent
from monitord.tickets.desk import Ticket
from monitord.tickets.sla import Sla

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


def alarms_per_window(alerts: Sequence[AlertEvent], now: float, windows: int = 144) -> list[int]:
    """Alarms (firing events) in each 10-minute window of the last ``windows`` ones, oldest first."""
    start = now - windows * WINDOW
    counts = [0] * windows
    for a in alerts:
        if a.state == "firing" and start <= a.ts < now:
            counts[int((a.ts - start) // WINDOW)] += 1
    return counts
