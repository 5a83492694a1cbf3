"""The one road every alert and ticket event leaves by.

Whoever makes an event — the evaluation tick (alerts, ticket decisions, SLA
clocks, escalation, roster assignment, follow-up closes), a person's action
through the API or console (with its audit event: who, when, from where,
what), or the decisions held while the store was away at start-up — hands it
to ``EventRoad``. The road writes it to the store, updates the
metrics (event counters, firing and open gauges, MTTA/MTTR, SLA breaches) and
tells every listener (console, notifier, API streams), in that order, so no
event reaches one of them and not the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from monitord.alerting.tracker import AlertEvent, AlertTracker
from monitord.core.errors import StoreError
from monitord.core.metrics import Metrics
from monitord.people.audit import AuditEvent
from monitord.rules.engine import RuleEngine
from monitord.store.base import Store
from monitord.tickets.desk import TicketDesk, TicketEvent

AlertListener = Callable[[AlertEvent], None]
TicketListener = Callable[[TicketEvent], None]
AuditListener = Callable[[AuditEvent], None]
PRIORITIES = ("P1", "P2", "P3", "P4")
log = logging.getLogger(__name__)


class EventRoad:
    def __init__(
        self, store: Store, metrics: Metrics, desk: TicketDesk, engine: RuleEngine, tracker: AlertTracker
    ) -> None:
        self.store, self.metrics, self.desk = store, metrics, desk
        self.engine, self.tracker = engine, tracker
        self.alert_listeners: list[AlertListener] = []
        self.ticket_listeners: list[TicketListener] = []
        self.audit_listeners: list[AuditListener] = []

    def emit(
        self,
        alerts: Sequence[AlertEvent] = (),
        tickets: Sequence[TicketEvent] = (),
        audits: Sequence[AuditEvent] = (),
    ) -> None:
        """Store, count and tell: alerts first, then the ticket events they caused, then who did it."""
        if audits:
            self._audit(audits)
        if not alerts and not tickets:
            return
        if alerts:
            self.store.write_alerts(alerts)
        if tickets:
            self.store.write_tickets(tickets)
        for ev in alerts:
            self.metrics.alert_events.labels(ev.state).inc()
        for tev in tickets:
            self._count(tev)
        self._gauges()
        for ev in alerts:
            for listen in self.alert_listeners:
                listen(ev)
        for tev in tickets:
            for tlisten in self.ticket_listeners:
                tlisten(tev)

    def _audit(self, audits: Sequence[AuditEvent]) -> None:
        # A backend without an audit trail of its own (a test double) still has it in the log.
        write = getattr(self.store, "write_audit", None)
        if write is not None:
            try:
                write(audits)
            except StoreError as exc:  # the change itself happened: it must still be told
                log.error("audit events not stored (%s): %s", exc, audits)
        else:
            for a in audits:
                log.info("audit: %s", a)
        for a in audits:
            for listen in self.audit_listeners:
                listen(a)

    def _count(self, ev: TicketEvent) -> None:
        if ev.event == "breached":
            self.metrics.sla_breaches.labels(ev.priority, ev.note).inc()
            return
        t = self.desk.tickets.get(ev.ticket)
        if t is None:
            return
        if ev.event == "acknowledged":
            self.metrics.time_to_ack.labels(t.priority).observe(ev.ts - t.opened_at)
        elif ev.event == "resolved":
            self.metrics.time_to_resolve.labels(t.priority).observe(ev.ts - t.opened_at)

    def _gauges(self) -> None:
        by_severity: dict[str, int] = {}
        for rule in self.engine.rules:
            n = int(self.tracker.firing(rule.key).sum())
            by_severity[rule.spec.severity] = by_severity.get(rule.spec.severity, 0) + n
        for severity, n in by_severity.items():
            self.metrics.alerts_firing.labels(severity).set(n)
        counts = self.desk.open_counts()
        for priority in PRIORITIES:
            self.metrics.tickets_open.labels(priority).set(counts.get(priority, 0))
