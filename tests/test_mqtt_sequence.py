"""Messages lost between a device and the daemon are counted where payloads carry a sequence number
(issue 10, item 10): a profile's ``seq_field``; skipped numbers per asset in
``monitord_mqtt_sequence_gaps_total``; a counter that starts over is not a gap.
"""

from __future__ import annotations

import asyncio
import json
import logging

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from monitord.config.site import CONFIG_DIR
from monitord.core.clock import ManualClock, SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import SampleBatch
from monitord.drivers.mqtt import MqttDriver, SequenceGaps, TopicRoute
from monitord.drivers.mqtt_client import stop_loop
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile, MqttSettings
from monitord.simulators.mqtt_publisher import document
from tests.support import eventually, run

TOPIC = "site/lift/E1/status"
ROUTE = TopicRoute("E1", ("speed",), (("values", "speed"),), ("ts",), ("seq",))
# 1 2 3 [4 5 6] 7 8, then the box restarts: 1 2 [3 4] 5 → 5 missing
SEQUENCE = [1, 2, 3, 7, 8, 1, 2, 5]


def gaps(metrics: Metrics, asset: str = "E1") -> float:
    return metrics.registry.get_sample_value("monitord_mqtt_sequence_gaps_total", {"asset": asset}) or 0.0


def test_skipped_numbers_are_gaps_and_a_restart_or_repeat_is_not() -> None:
    seen = SequenceGaps()
    assert [seen.observe("E1", n) for n in SEQUENCE] == [0, 0, 0, 3, 0, 0, 0, 2]
    assert seen.observe("E1", 5) == 0  # a repeat
    assert seen.observe("E2", 40) == 0  # another asset's first message
    assert seen.observe("E2", 42) == 1


def test_the_driver_counts_gaps_per_asset_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    driver = MqttDriver("127.0.0.1", 1, {TOPIC: ROUTE}, SampleBus(), ManualClock(0.0), metrics, client_id="t")
    bodies = [{"seq": n, "values": {"speed": 1.0}} for n in SEQUENCE]
    bodies += [{"seq": 9.0, "values": {"speed": 1.0}}, {"seq": "x"}, {"seq": 7.5}, {"seq": True}]
    for body in bodies:
        driver._queue.append((0.0, TOPIC, json.dumps(body).encode()))
    with caplog.at_level(logging.WARNING, "monitord.drivers.mqtt"):
        assert driver.drain() == len(bodies)
    assert gaps(metrics) == 5 + 3  # 5 → 9.0 (a whole float) skips 6, 7, 8; the rest carry no number
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 1


def test_seq_field_is_for_json_payloads_and_the_simulator_sends_it() -> None:
    with pytest.raises(ValueError, match="seq_field needs format: json"):
        MqttSettings(topic="{site}/{asset}/{point}", format="plain", seq_field="seq")
    lift = DeviceProfile.model_validate(
        yaml.safe_load((CONFIG_DIR / "profiles/elevator-gbt24476.yaml").read_text())
    )
    assert lift.mqtt is not None and lift.mqtt.seq_field == "seq"
    assert document(lift, {"floor": 3.0}, 1.0, 7)["seq"] == 7


def test_a_publisher_that_skips_numbers_is_counted_over_real_mosquitto(mosquitto: int) -> None:
    metrics = Metrics()
    bus = SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)

    async def scenario() -> None:
        driver = MqttDriver(
            "127.0.0.1", mosquitto, {TOPIC: ROUTE}, bus, SystemClock(), metrics, client_id="seq"
        )
        task = asyncio.create_task(driver.run())
        box = paho.Client(CallbackAPIVersion.VERSION2, client_id="seq-box")
        try:
            await eventually(driver._connected.is_set, 10)
            box.connect("127.0.0.1", mosquitto)
            box.loop_start()
            for n in SEQUENCE:  # QoS 1 on one connection: delivered, and in order
                box.publish(TOPIC, json.dumps({"seq": n, "values": {"speed": 1.0}}), qos=1).wait_for_publish(
                    5
                )
            await eventually(lambda: len(got) == len(SEQUENCE), 10)
        finally:
            stop_loop(box)
            box.disconnect()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario(), timeout=30)
    assert gaps(metrics) == 5
