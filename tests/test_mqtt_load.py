"""A flood of MQTT messages does not starve the event loop the Modbus pollers share (issue 10, item
10, the part that is done): the driver parses a burst in chunks and yields between them.
"""

from __future__ import annotations

import asyncio
import json
import time

from monitord.core.clock import ManualClock
from monitord.core.metrics import Metrics
from monitord.core.model import SampleBatch
from monitord.drivers.mqtt import MqttDriver, TopicRoute
from monitord.ingest.bus import SampleBus
from tests.support import run

TOPIC = "site/lift/E1/status"
ROUTES = {TOPIC: TopicRoute("E1", ("speed", "floor"), (("speed",), ("floor",)))}
FLOOD = 60_000  # six seconds of the 10,000 messages/s, arriving at once


def test_a_burst_of_messages_leaves_the_loop_responsive() -> None:
    bus = SampleBus()
    out: list[SampleBatch] = []
    bus.subscribe(out.append)
    driver = MqttDriver("127.0.0.1", 1, ROUTES, bus, ManualClock(0.0), Metrics(), client_id="load")
    body = json.dumps({"speed": 1.0, "floor": 3}).encode()

    async def scenario() -> float:
        driver._loop = asyncio.get_running_loop()
        driver.client.connect_async = lambda *a, **k: None  # type: ignore[method-assign]  # no broker needed
        driver.client.loop_start = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(0)
        worst = 0.0
        for _ in range(FLOOD):
            driver._queue.append((0.0, TOPIC, body))
        driver._wake.set()
        last = time.perf_counter()
        while len(out) < FLOOD:  # a poller's view: how long is the loop away between two turns?
            await asyncio.sleep(0)
            now = time.perf_counter()
            worst, last = max(worst, now - last), now
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return worst

    worst = run(scenario(), timeout=120)
    assert len(out) == FLOOD
    assert worst < 0.25, f"the event loop was away {worst:.2f}s at once"
