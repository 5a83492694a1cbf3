"""What every route of the web app shares: the core, who is who, the signer, the live stream, audit.

One ``Web`` per daemon, made by ``Monitord`` and handed to ``build_app``. Routes run on the daemon's
own event loop (uvicorn serves inside it), so they read and change the desk directly, between two
evaluations, never racing the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request

from monitord.alerting.tracker import AlertEvent
from monitord.daemon.core import Core
from monitord.daemon.fleet import FleetLink
from monitord.people.audit import AuditEvent
from monitord.people.identity import Identities, Identity, Signer
from monitord.people.roster import Roster
from monitord.tickets.desk import TicketEvent

log = logging.getLogger(__name__)


class Stream:
    """Fan-out of road events to the open server-sent-event streams (one queue per browser)."""

    def __init__(self, depth: int = 256) -> None:
        self._queues: set[asyncio.Queue[str | None]] = set()
        self.depth = depth

    def publish(self, kind: str, body: dict[str, object]) -> None:
        message = json.dumps({"kind": kind, **body}, ensure_ascii=False, default=str)
        for q in list(self._queues):
            if q.full():  # a browser that stopped reading loses its stream, not the daemon its memory
                self._queues.discard(q)
                q.get_nowait()  # room for the end mark: the stream closes, the browser reconnects
                q.put_nowait(None)
                continue
            q.put_nowait(message)

    @property
    def open(self) -> int:
        """How many streams are open now."""
        return len(self._queues)

    def on_alert(self, ev: AlertEvent) -> None:
        self.publish("alert", {"asset": ev.asset, "rule": ev.rule, "state": ev.state, "ts": ev.ts})

    def on_ticket(self, ev: TicketEvent) -> None:
        self.publish(
            "ticket",
            {"ticket": ev.ticket, "event": ev.event, "state": ev.state, "actor": ev.actor, "ts": ev.ts},
        )

    def on_audit(self, ev: AuditEvent) -> None:
        # What changed, for the pages to refresh; not the address or the note: a link holder's phone
        # follows this stream too, and the trail itself is for the store.
        self.publish("audit", {"actor": ev.actor, "action": ev.action, "target": ev.target, "ts": ev.ts})

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[str | None]]:
        q: asyncio.Queue[str | None] = asyncio.Queue(self.depth)
        self._queues.add(q)
        try:
            yield q
        finally:
            self._queues.discard(q)

    def close(self) -> None:
        """End every open stream (shutdown): each gets its end mark."""
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self._queues.clear()


@dataclass
class Web:
    core: Core
    identities: Identities
    signer: Signer
    roster: Roster | None = None
    link_ttl: float = 86400.0
    locale: str = "en"
    stream: Stream = field(default_factory=Stream)
    #: this instance's fleet link (role for /healthz, the instances for the console); None: no broker
    fleet: FleetLink | None = None

    def attach(self) -> None:
        """Listen on the event road: every alert, ticket and audit event reaches the open streams."""
        road = self.core.road
        road.alert_listeners.append(self.stream.on_alert)
        road.ticket_listeners.append(self.stream.on_ticket)
        road.audit_listeners.append(self.stream.on_audit)

    def audit(
        self, request: Request, who: Identity, action: str, target: str, outcome: int, detail: str = ""
    ) -> None:
        """One audit event for a state-changing call, through the event road."""
        address = request.client.host if request.client else ""
        ev = AuditEvent(
            self.core.clock.now(), who.name, who.role, who.via, address, action, target, outcome, detail
        )
        self.core.road.emit(audits=[ev])
