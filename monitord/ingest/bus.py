"""SampleBus: the one place drivers hand their samples to.

First stage after the drivers. Fan-out is synchronous and per batch (no
per-sample work): the state table, the store and the metrics each take the
batch; ``wake`` tells the evaluation loop that new data has arrived so that a
fault reaches the rules within one poll, not one evaluation period later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from monitord.core.model import HealthChange, SampleBatch

BatchSink = Callable[[SampleBatch], None]
HealthSink = Callable[[HealthChange], None]


class SampleBus:
    def __init__(self) -> None:
        self._batch_sinks: list[BatchSink] = []
        self._health_sinks: list[HealthSink] = []
        self.wake = asyncio.Event()

    def subscribe(self, sink: BatchSink) -> None:
        self._batch_sinks.append(sink)

    def subscribe_health(self, sink: HealthSink) -> None:
        self._health_sinks.append(sink)

    def publish(self, batch: SampleBatch) -> None:
        for sink in self._batch_sinks:
            sink(batch)
        self.wake.set()

    def publish_health(self, change: HealthChange) -> None:
        for sink in self._health_sinks:
            sink(change)
        self.wake.set()
