"""``monitord report``: the KPIs as text lines (computed in monitord/tickets/kpi.py, which the
console's KPI page shares, and monitord/tickets/quality.py).

``monitord report`` prints them: MTTA and MTTR, SLA compliance per priority
and category, repeat failures per asset, the ISA-18.2 / EEMUA 191 alarm-rate
figures about monitord's own output (alarms per 10 minutes, flood periods,
chattering alerts, stale alarms), and the duty desk's service quality per
week (回访率, satisfaction, complaints, 有效投诉办结率: ``tickets.quality``).
"""

from __future__ import annotations

from collections.abc import Callable

from monitord.config.site import SiteConfig
from monitord.core.i18n import N_, translator
from monitord.tickets.kpi import Clock, Report, report
from monitord.tickets.labels import CATEGORIES, label
from monitord.tickets.quality import COMPLAINT_TARGET, Week
from monitord.tickets.sla import DEFAULT_SLA, Sla
from monitord.tools.columns import left, right, width

__all__ = ["Clock", "Report", "render", "render_weeks", "report", "sla_lookup"]


def _duration(seconds: float | None, _: Callable[[str], str]) -> str:
    if seconds is None:
        return "-"
    if seconds < 7200:
        return _("{n:.1f} min").format(n=seconds / 60)
    return _("{n:.1f} h").format(n=seconds / 3600)


def _clock(c: Clock, _: Callable[[str], str]) -> str:
    """One SLA clock's share met (``Clock.__str__`` in the reader's words)."""
    decided = c.met + c.missed
    share = f"{c.met / decided:6.1%}" if decided else "     -"
    return share + (_(" ({n} within SLA)").format(n=c.running) if c.running else "")


def sla_lookup(config: SiteConfig | None) -> Callable[[str], Sla]:
    """The SLA per priority: the config's, or without a config the defaults."""
    if config is not None:
        return config.sla_of

    def default_sla(priority: str) -> Sla:
        return DEFAULT_SLA[priority]

    return default_sla


def render(r: Report, locale: str = "en") -> list[str]:
    """The ticket and alarm KPIs as lines, in ``locale``."""
    _ = translator(locale)
    lines = [
        _("tickets: {n}   MTTA (median): {mtta}   MTTR (median): {mttr}").format(
            n=r.tickets, mtta=_duration(r.mtta, _), mttr=_duration(r.mttr, _)
        )
    ]
    lines.append(_("SLA compliance (acknowledged in time / resolved in time, of the clocks that ran out):"))
    for (priority, category), (n, ack, fix) in sorted(r.sla.items()):
        lines.append(
            _("  {priority} {category} {n:4} tickets   ack {ack}   resolve {fix}").format(
                priority=priority,
                category=left(label(CATEGORIES, category, locale), 12),
                n=n,
                ack=_clock(ack, _),
                fix=_clock(fix, _),
            )
        )
    if r.repeats:
        repeats = ", ".join(f"{a} ×{n}" for a, n in sorted(r.repeats.items()))
        lines.append(_("repeat failures: {repeats}").format(repeats=repeats))
    lines.append(
        _(
            "alarms per 10 min: {average:.2f} average (target ~1, at most 2), {most} at most; flood time"
            " {flood:.1%} (target < 1 %); chattering {chattering} (target 0); stale {stale}"
        ).format(
            average=r.alarms_per_10min,
            most=r.max_per_10min,
            flood=r.flood_share,
            chattering=r.chattering,
            stale=r.stale,
        )
    )
    return lines


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


#: The weekly table's columns: heading and width.
WEEK_COLUMNS = (
    (N_("week"), 8),
    (N_("requests"), 8),
    (N_("closed"), 6),
    (N_("followed"), 8),
    (N_("回访率"), 7),
    (N_("satisf."), 7),
    (N_("low"), 3),
    (N_("complaints"), 10),
    (N_("valid"), 5),
    (N_("closed"), 6),
    (N_("办结率"), 7),
)


def render_weeks(site: str, weeks: list[Week], locale: str = "en") -> list[str]:
    """The desk's service quality, one row per ISO week and a total (definitions: docs/desk.md)."""
    _ = translator(locale)
    lines = [
        _(
            "service quality, site {site} (回访率 = follow-ups / tickets closed; 有效投诉办结率 target"
            " {target:.0%}):"
        ).format(site=site, target=COMPLAINT_TARGET)
    ]
    headings = [_(heading) for heading, _n in WEEK_COLUMNS]
    # A heading wider in this language than the figures below it widens its column (低分 is 4 wide).
    widths = [max(n, width(h)) for h, (_h, n) in zip(headings, WEEK_COLUMNS, strict=True)]
    for w in [None, *weeks]:
        if w is None:
            cells = headings
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
            cells = [_("all") if w.week == "all" else w.week, *map(str, figures)]
        week, *rest = cells
        lines.append(
            "  "
            + left(week, widths[0])
            + "".join(" " + right(c, n) for c, n in zip(rest, widths[1:], strict=True))
        )
    return lines
