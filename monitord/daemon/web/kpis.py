"""The console's KPI page: ``monitord report``'s figures (tickets/kpi.py, tickets/quality.py's weekly
service quality — 回访率, satisfaction, 有效投诉办结率 — via FrontDesk.weeks), two charts.

Charts are inline SVG drawn here as rectangles (no script, no library): alarms per 10 minutes over
the last 24 hours against the ISA-18.2 flood line, and SLA compliance per priority.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from monitord.core.i18n import N_
from monitord.daemon.frontdesk import FrontDesk
from monitord.daemon.web.auth import Refused, caller, web_of
from monitord.daemon.web.pages import page
from monitord.tickets.kpi import FLOOD, Clock, alarms_per_window, report
from monitord.tickets.quality import COMPLAINT_TARGET

router = APIRouter(prefix="/console", include_in_schema=False)
WIDTH, HEIGHT = 360, 120  # the chart's own units; it scales to the screen


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    red: bool = False


def rate_bars(counts: list[int]) -> tuple[list[Bar], float]:
    """Bars for the alarm counts and the flood line's height, in chart units."""
    top = max([FLOOD + 2, *counts])
    w = WIDTH / len(counts)
    bars = [
        Bar(i * w, HEIGHT - n / top * HEIGHT, max(w - 0.5, 0.5), n / top * HEIGHT, str(n), n > FLOOD)
        for i, n in enumerate(counts)
        if n
    ]
    return bars, HEIGHT - FLOOD / top * HEIGHT


def share(c: Clock) -> float | None:
    decided = c.met + c.missed
    return c.met / decided if decided else None


@router.get("/kpi")
async def kpi_page(request: Request, lang: str = "") -> Response:
    if caller(request) is None:
        raise Refused(401, N_("log in to see the KPIs"))
    web = web_of(request)
    core = web.core
    alerts = await asyncio.to_thread(core.store.alert_events)  # a store read: off the loop
    now = core.clock.now()
    r = report(list(core.desk.tickets.values()), alerts, core.config.sla_of, now)
    by_priority: dict[str, tuple[Clock, Clock]] = {}
    for (priority, _category), (_n, ack, fix) in r.sla.items():
        a, f = by_priority.setdefault(priority, (Clock(), Clock()))
        a.met, a.missed, f.met, f.missed = (
            a.met + ack.met,
            a.missed + ack.missed,
            f.met + fix.met,
            f.missed + fix.missed,
        )
    sla_rows = [(p, share(a), share(f)) for p, (a, f) in sorted(by_priority.items())]
    # The desk's service quality per week: the same FrontDesk.weeks that GET /report/desk answers
    # and the same tickets.quality.weekly that `monitord report` prints (site zone included).
    frontdesk: FrontDesk = request.app.state.frontdesk
    weeks = frontdesk.weeks()
    bars, flood_y = rate_bars(alarms_per_window(alerts, now))
    context = {
        "who": caller(request),
        "r": r,
        "sla_rows": sla_rows,
        "weeks": weeks[:-1],
        "total": weeks[-1],
        "target": COMPLAINT_TARGET,
        "bars": bars,
        "flood_y": flood_y,
        "chart": (WIDTH, HEIGHT),
        "now": now,
    }
    return page(request, "kpi.html", context, lang)
