"""The embedded broker speaks MQTT to paho; the demo command runs and exits cleanly."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.simulators.broker import MqttBroker, topic_matches
from tests.support import run

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+"  # format_time: date, time and zone


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
            c.loop_stop()
        await broker.stop()

    run(scenario(), timeout=30)
    assert received == [("site/a/status", b"online", True), ("site/a/floor", b"7", False)]


def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitord", "demo", "--duration", "20s", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "metrics: http://127.0.0.1:" in out.stdout
    assert "SIMULATOR injects dry_run on A-P1" in out.stdout
    assert "ALERT  FIRING   critical pump.dry_run" in out.stdout  # fires ~5 s after the fault at 6 s
    assert "TICKET OPENED" in out.stdout
    assert "NOTIFY → Zhang (plumber): [P1]" in out.stdout  # the on-call plumber is told
    assert "Traceback" not in out.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "monitord", "tickets", "--store", str(tmp_path / "demo.db"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pump.dry_run" not in listing.stdout  # the list shows summaries, not rule ids
    assert "A-P1" in listing.stdout and "P1 plumbing" in listing.stdout
    ticket = next(line.split()[0] for line in listing.stdout.splitlines() if "A-P1" in line)
    assert re.search(rf"{ticket}  \w+ +P1 plumbing +A-P1 +{STAMP}  ", listing.stdout), listing.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "monitord", "tickets", "--store", str(tmp_path / "demo.db"), "show", ticket],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"  since: +{STAMP}\n", shown.stdout) and "pump.dry_run" in shown.stdout
