"""The dispatcher's work lists, from the ticket desk's state: follow-up calls due, complaints, and
the active tickets a resident's request may already be.

Part of the ticket stage, beside ``desk``: the API (``daemon.frontdesk``) answers from the
running daemon's desk and the CLI (``monitord tickets follow-ups``, ``complaints``) from a desk
restored from the store, with the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from monitord.tickets.desk import Ticket, TicketDesk


def follow_ups_due(desk: TicketDesk, window: float) -> list[dict[str, Any]]:
    """Resolved tickets nobody has called back about yet, longest waiting first, with whom to call
    and when the desk closes them without a follow-up (``window`` after the fix)."""
    due = [t for t in desk.live.values() if t.state == "resolved"]
    return [
        {
            "ticket": t.id,
            "source": t.source,
            "priority": t.priority,
            "category": t.category,
            "asset": t.asset,
            "location": t.location,
            "summary": t.summary,
            "reporter": t.reporter,
            "phone": t.phone,
            "assignee": t.assignee,
            "resolved_at": t.resolved_at,
            "closes_at": (t.resolved_at or t.opened_at) + window,
        }
        for t in sorted(due, key=lambda t: t.resolved_at or 0.0)
    ]


def complaints(desk: TicketDesk, open_only: bool) -> list[dict[str, Any]]:
    """Every complaint (or only those not closed yet), newest first, each with its ticket."""
    rows = [
        {"ticket": t.id, **asdict(c)}
        for t in desk.tickets.values()
        for c in t.complaints
        if not (open_only and c.closed_at is not None)
    ]
    return sorted(rows, key=lambda c: -float(c["at"]))


def may_be_the_same(
    desk: TicketDesk, building: str, location: str, trade: str, building_of: Callable[[Ticket], str]
) -> list[Ticket]:
    """Active tickets of ``trade`` that a resident's request at ``location`` in ``building`` may be,
    oldest first: an alert's in that building (the lift, the pump room the monitoring found, which
    residents call about), or a request's at that very location (the same resident calling again;
    another flat's leak is another incident). Compared without case or surrounding space."""

    def same(a: str, b: str) -> bool:
        return a.strip().casefold() == b.strip().casefold()

    return sorted(
        (
            t
            for t in desk.live.values()
            if t.active
            and t.category == trade
            and (same(t.location, location) if t.source == "request" else same(building_of(t), building))
        ),
        key=lambda t: t.opened_at,
    )
