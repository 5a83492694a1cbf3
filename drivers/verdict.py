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
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import FloatArray, HealthChange, Quality, QualityArray, SampleBatch
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import PointSpec

log = logging.getLogger(__name__)


@dataclass
class Read:
    """One poll of one device under way: its time stamp, and what it got so far."""

    ts: float
    started: float  # perf_counter, for the poll-duration histogram
    values: FloatArray
    quality: QualityArray
    reason: str = "ok"
    answered: bool = True

    def failed(self, reason: str, *, answered: bool = False) -> None:
        """No values from this read; ``answered``: the device replied, with a refusal or an error."""
        self.reason, self.answered = reason, answered
        if answered:
            self.quality[:] = int(Quality.DECODE_ERROR)


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

    def start(self, clock: Clock) -> Read:
        """A read begins: nothing got yet (NaN, ``comm_error``), stamped now."""
        n = len(self.points)
        return Read(
            clock.now(),
            time.perf_counter(),
            np.full(n, math.nan),
            np.full(n, int(Quality.COMM_ERROR), dtype=np.int8),
        )

    def finish(self, bus: SampleBus, metrics: Metrics, read: Read) -> bool:
        """Publish what the read got and whether the device answered; True when that changed."""
        metrics.poll_latency.labels(self.driver).observe(time.perf_counter() - read.started)
        self.publish(bus, read.ts, read.values, read.quality)
        return self.answered(bus, metrics, read.ts, read.answered, read.reason)

    def publish(self, bus: SampleBus, ts: float, values: FloatArray, quality: QualityArray) -> None:
        """A whole read: every point, judged against the profile's limits."""
        mark_quality(values, quality, self.low, self.high)
        bus.publish(SampleBatch(ts, self.asset, self.points, values, quality))

    def publish_one(self, bus: SampleBus, ts: float, point: str, value: float) -> None:
        """A single point's new value (a change notification), judged like a whole read."""
        i = self.points.index(point)
        names = self.singles.setdefault(point, (point,))  # one tuple per point: the store's frame key
        values, quality = np.array([value]), np.zeros(1, dtype=np.int8)
        mark_quality(values, quality, self.low[i : i + 1], self.high[i : i + 1])
        bus.publish(SampleBatch(ts, self.asset, names, values, quality))

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


def mark_quality(values: FloatArray, quality: QualityArray, low: FloatArray, high: FloatArray) -> None:
    """Mark good but non-finite values ``decode_error``, and good values outside [low, high]
    ``out_of_range``, in place (the Modbus poller's marks)."""
    quality[~np.isfinite(values) & (quality == Quality.GOOD)] = int(Quality.DECODE_ERROR)
    outside = (quality == Quality.GOOD) & ((values < low) | (values > high))
    quality[outside] = int(Quality.OUT_OF_RANGE)


def fences(low: FloatArray, high: FloatArray) -> tuple[FloatArray, FloatArray]:
    """[low, high] with the open ends (-inf, +inf) closed at the largest finite floats: values all
    within these are all finite and within the limits, which ``unmarked`` checks in one pass."""
    big = np.finfo(np.float64).max
    return np.where(low == -math.inf, -big, low), np.where(high == math.inf, big, high)


def unmarked(values: FloatArray, floor: FloatArray, ceiling: FloatArray) -> bool:
    """True when ``mark_quality`` would mark nothing, whatever the qualities: every value finite and
    within its limits (``fences``; NaN compares false). The usual read, checked in three numpy calls
    instead of ``mark_quality``'s eight and two masked writes."""
    return bool(np.logical_and(values >= floor, values <= ceiling).all())


class Polled(Protocol):
    verdict: Verdict
    interval: float


D = TypeVar("D", bound=Polled)


async def poll_each(devices: Sequence[D], poll: Callable[[D], Awaitable[None]]) -> None:
    """Poll every device on its own interval until cancelled."""
    async with asyncio.TaskGroup() as tg:
        for d in devices:
            name = f"{d.verdict.driver}-{d.verdict.where}"
            tg.create_task(paced(d.interval, functools.partial(poll, d)), name=name)


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
