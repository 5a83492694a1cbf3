"""The embedded broker speaks MQTT to paho (the demo itself: tests/test_demo.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.drivers.mqtt import MqttDriver
from monitord.drivers.mqtt_client import stop_loop
from monitord.ingest.bus import SampleBus
from monitord.simulators.broker import MqttBroker, topic_matches
from tests.support import eventually, free_port, run, site_yaml


def test_topic_wildcards() -> None:
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("a/+/c", "a/b/d")
    assert topic_matches("a/#", "a/b/c/d") and topic_matches("#", "x") and not topic_matches("#", "$SYS/x")
    assert not topic_matches("a/b", "a/b/c")


def test_embedded_broker_routes_live_and_retained_messages() -> None:
    received: list[tuple[str, bytes, bool]] = []
    got_two = threading.Event()

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        received.append((msg.topic, msg.payload, bool(msg.retain)))
        if len(received) == 2:
            got_two.set()

    async def scenario() -> None:
        broker = MqttBroker()
        port = await broker.start()
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("site/a/status", b"online", qos=1, retain=True).wait_for_publish(5)
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="sub")
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("site/#")
        sub.loop_start()
        await asyncio.sleep(0.5)
        pub.publish("site/a/floor", b"7").wait_for_publish(5)
        assert await asyncio.to_thread(got_two.wait, 5)
        for c in (pub, sub):
            c.disconnect()
            stop_loop(c)
        await broker.stop()

    run(scenario(), timeout=30)
    assert received == [("site/a/status", b"online", True), ("site/a/floor", b"7", False)]


def test_a_missing_broker_is_reported_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """`monitord run` said "cannot connect" for Modbus but nothing for MQTT: the lifts just went offline."""
    port = free_port()
    metrics = Metrics()
    driver = MqttDriver("127.0.0.1", port, {}, SampleBus(), SystemClock(), metrics, client_id="t")
    failures = metrics.driver_errors.labels("mqtt", "connect")

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        await eventually(lambda: failures._value.get() >= 2, 20)  # paho retries after 1 s, then 2 s
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="monitord.drivers.mqtt"):
        run(scenario(), timeout=30)
    said = [r.getMessage() for r in caplog.records if r.name == "monitord.drivers.mqtt"]
    why = "[Errno 111] Connection refused"  # the reason paho had in hand, said with it
    once = [f"mqtt 127.0.0.1:{port}: cannot connect to the broker ({why}); retrying"]
    assert said == once, "once per outage"


def test_sim_without_a_broker_fails_and_says_why(tmp_path: Path) -> None:
    port = free_port()
    site = site_yaml(tmp_path, port, "http://127.0.0.1:1")
    out = subprocess.run(
        [sys.executable, "-m", "monitord", "sim", str(site), "--duration", "3s"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert f"mqtt 127.0.0.1:{port}: cannot connect to the broker; retrying" in out.stderr
    assert out.stderr.strip().endswith(
        f"monitord: no MQTT broker at 127.0.0.1:{port}: the 2 MQTT assets published nothing"
    )
    assert f"mqtt 127.0.0.1:{port}" in out.stdout  # the start-up line names where it publishes
