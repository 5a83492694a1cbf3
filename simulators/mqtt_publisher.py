"""Publish simulated MQTT devices' values as their profiles describe.

JSON profiles get one document per asset per interval, nested by the
profile's field paths (``values.floor`` → ``{"values": {"floor": ...}}``),
with the profile's ``ts_field`` and ``seq_field`` (a count per device from
1); plain profiles get one topic per point. A device with fault ``offline``
or ``silent`` publishes nothing (the daemon must notice the silence).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.ingest.profiles import DeviceProfile

from .models import Equipment

log = logging.getLogger(__name__)


def document(profile: DeviceProfile, values: dict[str, float], ts: float, seq: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if profile.mqtt and profile.mqtt.ts_field:
        _put(doc, profile.mqtt.ts_field, round(ts, 3))
    if profile.mqtt and profile.mqtt.seq_field:
        _put(doc, profile.mqtt.seq_field, seq)
    for point, path in profile.json_fields().items():
        _put(doc, path, values.get(point))
    return doc


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    node = doc
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


class MqttPublisher:
    def __init__(
        self,
        host: str,
        port: int,
        devices: list[tuple[str, DeviceProfile, Equipment]],
        interval: float,
        client_id: str = "monitord-sim",
    ) -> None:
        self.host, self.port, self.devices, self.interval = host, port, devices, interval
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect_fail = self._on_connect_fail
        self.published = 0
        self.sequence: dict[str, int] = {}  # topic → last sequence number sent
        self.connect_failures = 0  # `monitord sim` reports a broker it never reached

    def _on_connect_fail(self, _c: object, _u: object) -> None:
        self.connect_failures += 1
        if self.connect_failures == 1:
            log.warning("mqtt %s:%d: cannot connect to the broker; retrying", self.host, self.port)

    async def run(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        try:
            while True:
                if self.client.is_connected():
                    self.publish_once()
                await asyncio.sleep(self.interval)
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def publish_once(self) -> None:
        now = time.time()
        for topic, profile, model in self.devices:
            if model.faults & {"offline", "silent"}:
                continue
            assert profile.mqtt is not None
            if profile.mqtt.format == "json":
                seq = self.sequence[topic] = self.sequence.get(topic, 0) + 1
                self.client.publish(topic, json.dumps(document(profile, model.values, now, seq)))
            else:
                for point in profile.points:
                    self.client.publish(topic.format(point=point), f"{model.values.get(point, 0.0):.6g}")
            self.published += 1
