"""The dispatcher's work lists, from the ticket desk's state: follow-up calls due, complaints.

Part of the ticket stage, beside ``desk``: the API (``daemon.frontdesk``) answers from the
running daemon's desk and the CLI (``monitord tickets follow-ups``, ``complaints``) from a desk
restored from the store, with the same rows.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from monitord.tickets.desk import TicketDesk


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
