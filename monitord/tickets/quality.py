"""Service-quality KPIs of the duty desk, per ISO week, folded from stored ticket events.

Part of the ticket stage, beside ``desk``: ``monitord report`` and the API's ``GET /report/desk``
both call ``weekly`` on the same events, so the terminal and any console agree. Definitions
(docs/desk.md#kpis):

- 回访率: follow-ups done ÷ tickets closed, both in the week (a close without a follow-up —
  ``close``, or the automatic one after ``tickets.follow_up`` — counts against it);
- average satisfaction over the week's follow-ups, and how many were low (≤ 2);
- complaints logged in the week; 有效投诉办结率: of those not dismissed as invalid, the share
  closed with a resolution by the time of the report (target ≥ 98 %).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from monitord.tickets.desk import TicketEvent
from monitord.tickets.forms import LOW_SATISFACTION

COMPLAINT_TARGET = 0.98  # 有效投诉办结率 the property-management standards ask for


@dataclass
class Week:
    """One ISO week's figures (``week``: ``2026-W48``)."""

    week: str
    closed: int = 0
    followed_up: int = 0
    satisfaction: list[int] = field(default_factory=list)
    requests: int = 0  # 报修 tickets opened
    complaints: int = 0  # logged
    dismissed: int = 0  # of those, found not valid
    complaints_closed: int = 0  # of the valid ones, closed with a resolution (so far)

    @property
    def follow_up_rate(self) -> float | None:
        return self.followed_up / self.closed if self.closed else None

    @property
    def mean_satisfaction(self) -> float | None:
        return sum(self.satisfaction) / len(self.satisfaction) if self.satisfaction else None

    @property
    def low_satisfaction(self) -> int:
        return sum(s <= LOW_SATISFACTION for s in self.satisfaction)

    @property
    def valid_complaints(self) -> int:
        return self.complaints - self.dismissed

    @property
    def complaint_close_rate(self) -> float | None:
        valid = self.valid_complaints
        return self.complaints_closed / valid if valid else None

    def as_json(self) -> dict[str, Any]:
        """The counts and the rates (None where there is nothing to divide), as the API answers."""
        return {
            "week": self.week,
            "closed": self.closed,
            "followed_up": self.followed_up,
            "follow_up_rate": self.follow_up_rate,
            "mean_satisfaction": self.mean_satisfaction,
            "low_satisfaction": self.low_satisfaction,
            "requests": self.requests,
            "complaints": self.complaints,
            "valid_complaints": self.valid_complaints,
            "complaints_closed": self.complaints_closed,
            "complaint_close_rate": self.complaint_close_rate,
        }


def week_of(ts: float, tz: tzinfo | None) -> str:
    """The ISO week ``ts`` falls in, in the site's zone (a week starts on Monday 00:00 there)."""
    year, week, _ = datetime.fromtimestamp(ts, UTC).astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


def weekly(events: Iterable[TicketEvent], tz: tzinfo | None) -> list[Week]:
    """The figures of every week with something to count, oldest first; the last item sums them all
    (``week``: ``all``)."""
    weeks: dict[str, Week] = {}
    logged: dict[tuple[str, str], str] = {}  # (ticket, complaint) → the week it was logged in
    seen: set[TicketEvent] = set()  # the same event stored twice counts once
    for ev in sorted(events, key=lambda e: e.ts):
        if ev in seen:
            continue
        seen.add(ev)
        w = weeks.setdefault(week_of(ev.ts, tz), Week(week_of(ev.ts, tz)))
        if ev.event in ("closed", "followed_up"):
            w.closed += 1
        if ev.event == "followed_up":
            w.followed_up += 1
            w.satisfaction.append(ev.satisfaction)
        elif ev.event == "opened" and ev.source == "request":
            w.requests += 1
        elif ev.event == "complained":
            w.complaints += 1
            logged[(ev.ticket, ev.ref)] = w.week
        elif ev.event in ("complaint_closed", "complaint_dismissed") and (ev.ticket, ev.ref) in logged:
            # counted in the week the complaint was logged: a late close still raises that week's rate
            of = weeks[logged[(ev.ticket, ev.ref)]]
            if ev.event == "complaint_closed":
                of.complaints_closed += 1
            else:
                of.dismissed += 1
    out = [w for _, w in sorted(weeks.items()) if w.closed or w.requests or w.complaints]
    total = Week("all")
    for w in out:
        total.closed += w.closed
        total.followed_up += w.followed_up
        total.satisfaction += w.satisfaction
        total.requests += w.requests
        total.complaints += w.complaints
        total.dismissed += w.dismissed
        total.complaints_closed += w.complaints_closed
    return [*out, total]
