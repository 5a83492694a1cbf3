"""A simulated device and a driver on loopback UDP, and what reached the bus: the BACnet and SNMP rig."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, SampleBatch
from monitord.ingest.bus import SampleBus


class Runs(Protocol):
    async def run(self) -> None: ...


class Rig:
    """A bus that keeps every batch and health change, and a way to run a server and a driver on it."""

    def __init__(self) -> None:
        self.bus, self.metrics = SampleBus(), Metrics()
        self.batches: list[SampleBatch] = []
        self.health: list[HealthChange] = []
        self.bus.subscribe(self.batches.append)
        self.bus.subscribe_health(self.health.append)

    @contextlib.asynccontextmanager
    async def serving(
        self, serve: Callable[[Callable[[], None]], Awaitable[None]], driver: Runs
    ) -> AsyncIterator[None]:
        """The server up (``serve`` calls its argument once listening), then the driver; both
        cancelled on the way out."""
        started = asyncio.Event()
        server = asyncio.create_task(serve(started.set))
        await started.wait()
        polling = asyncio.create_task(driver.run())
        try:
            yield
        finally:
            for t in (polling, server):
                t.cancel()
            await asyncio.gather(polling, server, return_exceptions=True)
