"""SLA terms per priority: how soon a ticket must be acknowledged, started and resolved."""

from __future__ import annotations

from monitord.core.schema import Strict
from monitord.core.units import Duration


class Sla(Strict):
    ack: Duration
    start: Duration
    resolve: Duration


DEFAULT_SLA = {
    "P1": Sla(ack=300, start=900, resolve=7200),
    "P2": Sla(ack=900, start=3600, resolve=28800),
    "P3": Sla(ack=14400, start=86400, resolve=259200),
    "P4": Sla(ack=86400, start=604800, resolve=2592000),
}
