"""What the console shows, computed from the core: the status board, the queue's SLA clocks, on-call.

Pure reads of the desk, tracker, state table and mute stages, on the event loop; the templates only
lay these rows out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from monitord.alerting.mute import Matcher, MuteStages, in_window, matches
from monitord.alerting.tracker import fingerprint
from monitord.core.assets import Asset
from monitord.daemon.core import Core
from monitord.people.roster import Roster
from monitord.tickets.desk import Ticket
from monitord.tickets.sla import Sla

STATES = ("alert", "offline", "maintenance", "muted", "ok")  # worst first: a building sorts by these
WARN_BEFORE = 0.25  # an SLA clock turns red when a quarter of its time is left


@dataclass(frozen=True)
class Firing:
    rule: str
    asset: str
    severity: str
    priority: str
    since: float
    ticket: str | None


@dataclass
class AssetRow:
    id: str
    name: str
    type: str
    where: str
    state: str
    why: str = ""
    alerts: list[Firing] = field(default_factory=list)


@dataclass
class Building:
    site: str
    name: str
    assets: list[AssetRow]

    @property
    def counts(self) -> dict[str, int]:
        return {
            s: sum(a.state == s for a in self.assets)
            for s in STATES
            if any(a.state == s for a in self.assets)
        }


def firing(core: Core) -> list[Firing]:
    out = []
    for rule in core.engine.rules:
        for i in np.flatnonzero(core.tracker.firing(rule.key)):
            asset = rule.assets[int(i)]
            t = core.desk.open_ticket_for(fingerprint(rule.spec.id, asset))
            since = core.tracker.since_of(rule.key, int(i))
            out.append(
                Firing(
                    rule.spec.id,
                    asset,
                    rule.spec.severity,
                    t.priority if t else rule.spec.ticket.priority if rule.spec.ticket else "",
                    since if math.isfinite(since) else core.clock.now(),
                    t.id if t else None,
                )
            )
    return sorted(out, key=lambda f: (f.priority or "P9", f.since))


def _covers(m: Matcher, asset: Asset) -> bool:
    """Whether a matcher names this asset at all (whatever rules it limits itself to)."""
    return matches(m.model_copy(update={"rules": []}), "", asset)


def muted_why(mute: MuteStages | None, asset: Asset, now: float) -> tuple[str, str]:
    """("maintenance" | "muted" | "", why) for an asset now."""
    if mute is None:
        return "", ""
    for w in mute.windows:
        if _covers(w.match, asset) and in_window(w, now, mute.tz):
            return "maintenance", w.reason or w.id
    for s in mute.silences:
        if s.active(now) and _covers(s.matcher, asset):
            return "muted", f"{s.author}: {s.reason}"
    return "", ""


def status_board(core: Core) -> list[Building]:
    """Every asset with its state, grouped by site and building, worst buildings first."""
    now = core.clock.now()
    alerts: dict[str, list[Firing]] = {}
    for f in firing(core):
        alerts.setdefault(f.asset, []).append(f)
    site = core.config.site.name or core.config.site.id
    buildings: dict[str, list[AssetRow]] = {}
    for table in core.state.tables.values():
        offline = table.offline(now)
        for row, asset_id in enumerate(table.assets):
            a = core.assets[asset_id]
            mstate, why = muted_why(core.pipeline.mute, a, now)
            # Maintenance explains the rest (a pump taken apart is offline, its alerts muted); a silence
            # is narrower, so an asset that also went offline shows offline.
            if mstate == "maintenance":
                state = mstate
            else:
                state = "alert" if asset_id in alerts else "offline" if offline[row] else mstate or "ok"
            where = ", ".join(f"{k} {v}" for k, v in a.location.items() if k != "building")
            buildings.setdefault(str(a.location.get("building", "")), []).append(
                AssetRow(asset_id, a.label, a.type, where, state, why, alerts.get(asset_id, []))
            )
    out = [
        Building(site, name, sorted(rows, key=lambda r: (STATES.index(r.state), r.id)))
        for name, rows in buildings.items()
    ]
    return sorted(out, key=lambda b: (min(STATES.index(a.state) for a in b.assets), b.name))


@dataclass(frozen=True)
class Clock:
    name: str  # ack, start, resolve
    due: float
    left: float
    red: bool


def sla_clock(t: Ticket, sla: Sla, now: float) -> Clock | None:
    """The next SLA clock this ticket runs against, and whether it is near or past breach."""
    for name, limit, met in (
        ("ack", sla.ack, t.acknowledged_at),
        ("start", sla.start, t.started_at),
        ("resolve", sla.resolve, t.resolved_at),
    ):
        if met is None and t.active:
            due = t.opened_at + limit
            return Clock(name, due, due - now, due - now <= WARN_BEFORE * limit)
    return None


QUEUE_FILTERS = ("state", "priority", "category", "building", "assignee")


def queue(
    core: Core, filters: dict[str, str], sla_of: Callable[[str], Sla]
) -> list[tuple[Ticket, Clock | None]]:
    """Tickets matching the filters (trade is the ticket's category), active first, then newest."""
    now = core.clock.now()

    def keep(t: Ticket) -> bool:
        for k, v in filters.items():
            if not v:
                continue
            if k == "building":
                asset = core.assets.get(t.asset)
                if asset is None or str(asset.location.get("building", "")) != v:
                    return False
            elif k == "state" and v == "active":
                if not t.active:
                    return False
            elif str(getattr(t, k)) != v:
                return False
        return True

    rows = [(t, sla_clock(t, sla_of(t.priority), now)) for t in core.desk.tickets.values() if keep(t)]
    return sorted(rows, key=lambda r: (not r[0].active, r[0].priority, -r[0].opened_at))


@dataclass(frozen=True)
class Duty:
    team: str
    skills: list[str]
    now: str
    lead: str
    week: list[tuple[float, str]]  # (shift start, person) for the next seven days


def on_call(roster: Roster | None, now: float) -> list[Duty]:
    """Who is on duty now per team, and who takes each day's shift of the coming week."""
    if roster is None:
        return []
    out = []
    for name, team in roster.config.teams.items():
        skill = team.skills[0]
        person = roster.oncall(skill, now)
        week = [(now + d * 86400, p.name) for d in range(7) if (p := roster.oncall(skill, now + d * 86400))]
        out.append(
            Duty(name, team.skills, person.name if person else "", team.lead.name if team.lead else "", week)
        )
    return out
