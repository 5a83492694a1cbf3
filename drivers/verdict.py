"""What the request/reply drivers (BACnet, SNMP) share: judging a read and a device's health.

Sits between a driver's read and the ``SampleBus``. A read gives values and
qualities; ``Verdict.publish`` marks non-finite values ``decode_error`` and
values outside the profile's min/max ``out_of_range`` (as the Modbus driver
does), publishes the batch, and once per change of a device's answering
publishes a ``HealthChange`` and moves the offline gauge: one lost reply is
a ``comm_error`` batch, being offline is the comms rules' call.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitord.core.metrics import Metrics
from monitord.core.model import FloatArray, HealthChange, Quality, QualityArray, SampleBatch
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import PointSpec

log = logging.getLogger(__name__)


@dataclass
class Verdict:
    """One device's points, limits and health, and how its reads reach the bus."""

    driver: str
    asset: str
    where: str  # host:port, for people reading the log
    points: tuple[str, ...]
    low: FloatArray
    high: FloatArray
    online: bool = True
    singles: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, driver: str, asset: str, where: str, specs: dict[str, PointSpec]) -> Verdict:
        low = np.array([-math.inf if s.min is None else s.min for s in specs.values()])
        high = np.array([math.inf if s.max is None else s.max for s in specs.values()])
        return cls(driver, asset, where, tuple(specs), low, high)

    def empty(self) -> tuple[FloatArray, QualityArray]:
        """Values and qualities of a read that got nothing yet: NaN and ``comm_error``."""
        n = len(self.points)
        return np.full(n, math.nan), np.full(n, int(Quality.COMM_ERROR), dtype=np.int8)

    def publish(
        self, bus: SampleBus, metrics: Metrics, ts: float, values: FloatArray, quality: QualityArray
    ) -> None:
        bad = ~np.isfinite(values) & (quality == Quality.GOOD)
        quality[bad] = int(Quality.DECODE_ERROR)
        outside = (quality == Quality.GOOD) & ((values < self.low) | (values > self.high))
        quality[outside] = int(Quality.OUT_OF_RANGE)
        bus.publish(SampleBatch(ts, self.asset, self.points, values, quality))

    def publish_one(self, bus: SampleBus, ts: float, point: str, value: float) -> None:
        """A single point's new value (a change notification), judged like a whole read."""
        i = self.points.index(point)
        names = self.singles.setdefault(point, (point,))  # one tuple per point: the store's frame key
        quality = np.zeros(1, dtype=np.int8)
        if not math.isfinite(value):
            quality[0] = int(Quality.DECODE_ERROR)
        elif not self.low[i] <= value <= self.high[i]:
            quality[0] = int(Quality.OUT_OF_RANGE)
        bus.publish(SampleBatch(ts, self.asset, names, np.array([value]), quality))

    def answered(self, bus: SampleBus, metrics: Metrics, ts: float, answered: bool, reason: str) -> bool:
        """Record whether the device answered this read; True when that changed."""
        if answered == self.online:
            return False
        self.online = answered
        if answered:
            log.info("%s %s (%s): back online", self.driver, self.where, self.asset)
        else:
            log.warning("%s %s (%s): offline: %s", self.driver, self.where, self.asset, reason)
        bus.publish_health(HealthChange(ts, self.asset, answered, reason if not answered else "ok"))
        metrics.devices_offline.labels(self.driver).inc(-1 if answered else 1)
        return True


async def paced(interval: float, poll: Callable[[], Awaitable[None]]) -> None:
    """Call ``poll`` every ``interval`` seconds (a slow poll delays the next, never stacks them)."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        await poll()
        due = max(due + interval, loop.time())
        await asyncio.sleep(due - loop.time())


def specs_of(points: dict[str, PointSpec], names: Sequence[str]) -> dict[str, PointSpec]:
    """The specs of ``names``, in that order."""
    return {n: points[n] for n in names}
