"""Maintenance tickets, event-sourced: one ticket per incident.

Fifth stage. ``TicketDesk.on_alert`` turns alert events into ticket events:
a firing alert opens a ticket, or appends to the one already open for the
same alert; a resolved alert resolves its ticket when the rule's policy says
so. Every change is a ``TicketEvent`` written to the store; the current state
is the fold of those events (``TicketDesk.apply``), so a restart rebuilds it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .alerts import AlertEvent

EventKind = Literal["opened", "appended", "resolved", "flapping"]
TicketState = Literal["open", "resolved"]
_ID = re.compile(r"^WO-(\d{8})-(\d{4,})$")


@dataclass(frozen=True, slots=True)
class TicketEvent:
    ts: float
    ticket: str
    key: str  # idempotency key: alert fingerprint + incident start
    event: EventKind
    state: TicketState
    asset: str
    rule: str
    priority: str
    category: str
    summary: str
    location: str = ""
    since: float = 0.0
    actor: str = "monitord"


@dataclass
class Ticket:
    id: str
    key: str
    asset: str
    rule: str
    priority: str
    category: str
    summary: str
    location: str
    since: float
    opened_at: float
    state: TicketState = "open"
    updated_at: float = 0.0
    alert_count: int = 1
    events: list[TicketEvent] = field(default_factory=list)


@dataclass(frozen=True)
class TicketPolicyView:
    """The part of a rule's ticket policy the desk needs."""

    priority: str
    category: str
    auto_resolve: bool


class TicketDesk:
    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self._open_by_alert: dict[str, str] = {}  # alert fingerprint → ticket id
        self._last_number: dict[str, int] = {}  # YYYYMMDD → highest number used

    def restore(self, events: Iterable[TicketEvent]) -> None:
        for ev in sorted(events, key=lambda e: e.ts):
            self.apply(ev)

    def apply(self, ev: TicketEvent) -> None:
        """Fold one event into the current state (live and on restore alike)."""
        fp = ev.key.split("@", 1)[0]
        t = self.tickets.get(ev.ticket)
        if t is None:
            t = Ticket(
                id=ev.ticket,
                key=ev.key,
                asset=ev.asset,
                rule=ev.rule,
                priority=ev.priority,
                category=ev.category,
                summary=ev.summary,
                location=ev.location,
                since=ev.since,
                opened_at=ev.ts,
                alert_count=0,
            )
            self.tickets[ev.ticket] = t
            if m := _ID.match(ev.ticket):
                day, number = m.group(1), int(m.group(2))
                self._last_number[day] = max(self._last_number.get(day, 0), number)
        if any(e.ts == ev.ts and e.event == ev.event for e in t.events):
            return  # the same event twice (retry, second instance): lands once
        t.events.append(ev)
        t.state, t.updated_at = ev.state, ev.ts
        if ev.event in ("opened", "appended"):
            t.alert_count += 1
            t.summary = ev.summary
        if t.state == "open":
            self._open_by_alert[fp] = t.id
        elif self._open_by_alert.get(fp) == t.id:
            del self._open_by_alert[fp]

    def _new_id(self, ts: float) -> str:
        day = time.strftime("%Y%m%d", time.localtime(ts))
        number = self._last_number.get(day, 0) + 1
        self._last_number[day] = number
        return f"WO-{day}-{number:04d}"

    def open_ticket_for(self, alert_fingerprint: str) -> Ticket | None:
        tid = self._open_by_alert.get(alert_fingerprint)
        return self.tickets[tid] if tid else None

    def on_alert(self, alert: AlertEvent, policy: TicketPolicyView, location: str) -> list[TicketEvent]:
        """Ticket events caused by one alert event (already applied)."""
        current = self.open_ticket_for(alert.fingerprint)
        if alert.state == "flapping":
            if current is None:
                return []
            ev = self._event(alert, current.id, current.key, "flapping", "open", policy, location)
        elif alert.state == "firing":
            if current is not None:
                ev = self._event(alert, current.id, current.key, "appended", "open", policy, location)
            else:
                key = f"{alert.fingerprint}@{alert.since:.3f}"
                ev = self._event(alert, self._new_id(alert.ts), key, "opened", "open", policy, location)
        elif current is not None and policy.auto_resolve:
            ev = self._event(alert, current.id, current.key, "resolved", "resolved", policy, location)
        else:
            return []
        self.apply(ev)
        return [ev]

    @staticmethod
    def _event(
        alert: AlertEvent,
        ticket: str,
        key: str,
        kind: EventKind,
        state: TicketState,
        policy: TicketPolicyView,
        location: str,
    ) -> TicketEvent:
        return TicketEvent(
            ts=alert.ts,
            ticket=ticket,
            key=key,
            event=kind,
            state=state,
            asset=alert.asset,
            rule=alert.rule,
            priority=policy.priority,
            category=policy.category,
            summary=alert.summary,
            location=location,
            since=alert.since,
        )

    def open_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tickets.values():
            if t.state == "open":
                counts[t.priority] = counts.get(t.priority, 0) + 1
        return counts
