"""The store protocol: where samples, alert events and ticket events go.

Backends: ``sqlite.SqliteStore`` (embedded default, one file, no server) and
``influx.InfluxStore``. Writes are queued and batched by the backend so that a
slow disk never blocks polling or alerting; ``flush`` waits for everything
queued. ``frames`` reads samples back the way replay takes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from monitord.alerting.tracker import AlertEvent
from monitord.core.model import Frame, SampleBatch
from monitord.tickets.desk import TicketEvent


class Store(Protocol):
    def write_samples(self, batches: Sequence[SampleBatch]) -> None: ...
    def write_alerts(self, events: Sequence[AlertEvent]) -> None: ...
    def write_tickets(self, events: Sequence[TicketEvent]) -> None: ...
    def alert_events(self) -> list[AlertEvent]: ...
    def ticket_events(self) -> list[TicketEvent]: ...
    def samples(
        self, asset: str | None = None, since: float | None = None, until: float | None = None
    ) -> Iterator[SampleBatch]: ...
    def frames(self, since: float | None = None, until: float | None = None) -> Iterator[Frame]: ...
    def flush(self, timeout: float = 10.0) -> None: ...
    def close(self) -> None: ...
