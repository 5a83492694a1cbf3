"""``monitord report``: the KPIs (computed in monitord/tickets/kpi.py) as text lines.

MTTA and MTTR, SLA compliance per priority and category, repeat failures per asset, follow-up
completion (回访率), and the ISA-18.2 / EEMUA 191 alarm-rate figures about monitord's own output.
"""

from __future__ import annotations

from collections.abc import Callable

from monitord.config.site import SiteConfig
from monitord.tickets.kpi import Clock, Report, report
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
    follow = "-" if r.follow_up is None else f"{r.follow_up:.0%}"
    lines.append(f"follow-up completion (回访率): {follow}")
    lines.append(
        f"alarms per 10 min: {r.alarms_per_10min:.2f} average (target ~1, at most 2), "
        f"{r.max_per_10min} at most; flood time {r.flood_share:.1%} (target < 1 %); "
        f"chattering {r.chattering} (target 0); stale {r.stale}"
    )
    return lines
