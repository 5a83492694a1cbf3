"""SampleBus: the one place drivers hand their samples to.

First stage after the drivers. Fan-out is synchronous and per batch (no
per-sample work): the state table, the store and the metrics each take the
batch; ``wake`` tells the evaluation loop that new data has arrived so that a
fault reaches the rules within one poll, not one evaluation period later.
A driver with many small batches at once (MQTT: a drained chunk of messages)
hands them over together (``publish_many``), and a sink that can take them as
one update (``subscribe_many``: the state table, the store, the metrics) pays
its fixed cost once per chunk instead of once per message. A ``SampleBlock`` is
such a chunk whose batches are rows of one matrix (the MQTT worker's parse):
a sink may take the matrix at once, any other reads it batch by batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from monitord.core.model import HealthChange, SampleBatch

BatchSink = Callable[[SampleBatch], None]
BatchesSink = Callable[[Sequence[SampleBatch]], None]
HealthSink = Callable[[HealthChange], None]


class SampleBus:
    def __init__(self) -> None:
        self._batch_sinks: list[BatchesSink] = []
        self._health_sinks: list[HealthSink] = []
        self.wake = asyncio.Event()

    def subscribe(self, sink: BatchSink) -> None:
        """``sink`` gets each batch, one call per batch."""

        def each(batches: Sequence[SampleBatch]) -> None:
            for batch in batches:
                sink(batch)

        self._batch_sinks.append(each)

    def subscribe_many(self, sink: BatchesSink) -> None:
        """``sink`` gets the batches a driver hands over together, in order, in one call."""
        self._batch_sinks.append(sink)

    def replace(self, old: BatchesSink, new: BatchesSink) -> None:
        """``new`` takes ``old``'s place (and turn) among the sinks (an HA standby's gated store)."""
        self._batch_sinks[self._batch_sinks.index(old)] = new

    def subscribe_health(self, sink: HealthSink) -> None:
        self._health_sinks.append(sink)

    def publish(self, batch: SampleBatch) -> None:
        self.publish_many((batch,))

    def publish_many(self, batches: Sequence[SampleBatch]) -> None:
        if not batches:
            return
        for sink in self._batch_sinks:
            sink(batches)
        self.wake.set()

    def publish_health(self, change: HealthChange) -> None:
        for sink in self._health_sinks:
            sink(change)
        self.wake.set()
