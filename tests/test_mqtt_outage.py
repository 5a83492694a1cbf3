"""A broker outage (issue 10, item 9): the MQTT driver marks its assets' data stale at once and
reconnects within a few seconds of the broker's return (capped, jittered backoff). Real Mosquitto,
stopped and started on the same port.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

import numpy as np
import paho.mqtt.publish as publish

from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.mqtt import RECONNECT_MAX, MqttDriver, TopicRoute
from monitord.ingest.bus import SampleBus
from tests.support import eventually, run
from tests.support.mosquitto import Mosquitto

TOPIC = "site/lift/E1/status"
ROUTES = {TOPIC: TopicRoute("E1", ("speed", "floor"), (("speed",), ("floor",)))}
OUTAGE = 16.0  # long enough that a doubling backoff without a low cap would wait ~15 s more


def test_a_broker_outage_marks_data_stale_and_reconnects_within_the_cap(own_broker: Mosquitto) -> None:
    bus = SampleBus()
    seen: list[tuple[float, SampleBatch]] = []
    bus.subscribe(lambda b: seen.append((time.monotonic(), b)))
    own_broker.start()

    def send(speed: float) -> None:
        body = json.dumps({"speed": speed, "floor": 3})
        publish.single(TOPIC, body, hostname="127.0.0.1", port=own_broker.port)

    async def scenario() -> float:
        driver = MqttDriver(
            "127.0.0.1", own_broker.port, ROUTES, bus, SystemClock(), Metrics(), client_id="outage-test"
        )
        task = asyncio.create_task(driver.run())
        try:
            await eventually(driver._connected.is_set, 10)
            send(1.0)
            await eventually(lambda: any((b.quality == Quality.GOOD).all() for _t, b in seen), 10)
            own_broker.stop()
            down = time.monotonic()
            stale = await eventually(
                lambda: next((t for t, b in seen if (b.quality == Quality.STALE).all()), None), 5
            )
            assert stale - down < 2, "the data is marked stale as soon as the broker is gone"
            await eventually(lambda: time.monotonic() > down + OUTAGE, OUTAGE + 5)
            own_broker.start()
            back = time.monotonic()
            await eventually(driver._connected.is_set, 30, interval=0.02)
            took = time.monotonic() - back
            send(2.4)  # an overspeed right after the outage is seen
            await eventually(lambda: any(np.isclose(b.values[0], 2.4) for _t, b in seen), 5)
            return took
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    took = run(scenario(), timeout=90)
    assert took <= RECONNECT_MAX + 0.5, f"reconnected {took:.1f}s after the broker was back"


def test_the_brokers_own_drop_count_is_visible(own_broker: Mosquitto) -> None:
    own_broker.conf.write_text(own_broker.conf.read_text() + "sys_interval 1\n")
    own_broker.start()
    metrics = Metrics()

    async def scenario() -> None:
        driver = MqttDriver(
            "127.0.0.1", own_broker.port, ROUTES, SampleBus(), SystemClock(), metrics, client_id="sys"
        )
        task = asyncio.create_task(driver.run())
        try:
            # Mosquitto publishes $SYS/broker/publish/messages/dropped every sys_interval; the gauge is
            # NaN (unknown) until that message arrives, then the broker's figure (0 here).
            assert math.isnan(
                metrics.registry.get_sample_value("monitord_mqtt_broker_dropped_messages") or 0.0
            )
            await eventually(
                lambda: metrics.registry.get_sample_value("monitord_mqtt_broker_dropped_messages") == 0, 10
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario(), timeout=30)
