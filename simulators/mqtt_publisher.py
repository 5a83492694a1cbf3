"""Publish simulated MQTT devices' values as their profiles describe.

JSON profiles get one document per asset per interval, nested by the
profile's field paths (``values.floor`` → ``{"values": {"floor": ...}}``,
``data[0].t`` → ``{"data": [{"t": ...}]}``), with the profile's ``ts_field``
and ``seq_field`` (a count per device from 1); plain profiles get one topic
per point. Devices behind a ThingsBoard gateway share one message per topic
and interval, ``{"Lift-7": [{"ts": <ms>, "values": {...}}], ...}``, and the
gateway says ``connect``/``disconnect`` for each (``{"device": "Lift-7"}``).
A device whose profile or connection says ``publishes: changes`` sends, after a first whole
message, only the fields whose value changed (with its time and sequence).
A device with fault ``offline`` or ``silent`` publishes nothing (the daemon
must notice the silence); behind a gateway, ``offline`` is also said.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.ingest.profiles import DeviceProfile

from .models import Equipment

log = logging.getLogger(__name__)


def document(
    profile: DeviceProfile,
    values: dict[str, float],
    ts: float,
    seq: int = 0,
    points: Collection[str] | None = None,
) -> dict[str, Any]:
    """The device's message: every mapped field, or only ``points`` (a device reporting changes)."""
    doc: dict[str, Any] = {}
    if profile.mqtt and profile.mqtt.ts_field:
        _put(doc, profile.mqtt.ts_field, round(ts, 3))
    if profile.mqtt and profile.mqtt.seq_field:
        _put(doc, profile.mqtt.seq_field, seq)
    for point, path in profile.json_fields().items():
        if points is None or point in points:
            _put(doc, path, values.get(point))
    return doc


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a field path, making the objects and lists on the way (``a.b[1].c``)."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.replace("]", "").split("[")
        steps += [name, *map(int, indexes)]
    node: Any = doc
    for key, nxt in itertools.pairwise(steps):
        empty: Any = [] if isinstance(nxt, int) else {}
        if isinstance(key, int):
            node.extend(None for _ in range(key + 1 - len(node)))
            node[key] = node[key] if node[key] is not None else empty
            node = node[key]
        else:
            node = node.setdefault(key, empty)
    if isinstance(steps[-1], int):
        node.extend(None for _ in range(steps[-1] + 1 - len(node)))
    node[steps[-1]] = value


@dataclass
class SimulatedMqttDevice:
    """One simulated device: where it publishes and, behind a gateway, its name there."""

    topic: str  # plain profiles keep {point}
    profile: DeviceProfile
    model: Equipment
    gateway_device: str | None = None
    status_topic: str | None = None  # where it says online/offline (retained), if it does
    said_online: bool | None = None  # what it (or its gateway) last said of it
    changes: bool = False  # it reports what changed since its last message (the first: everything)
    sent: dict[str, float | None] = field(default_factory=dict)  # what it last reported, point by point

    def to_report(self) -> list[str] | None:
        """The points this message carries: None for all, or (reporting changes) those whose value is
        not what was last sent."""
        if not self.changes:
            return None
        values = self.model.values
        changed = [p for p in self.profile.points if p not in self.sent or values.get(p) != self.sent[p]]
        self.sent.update((p, values.get(p)) for p in changed)
        return changed


class MqttPublisher:
    def __init__(
        self,
        host: str,
        port: int,
        devices: list[SimulatedMqttDevice],
        interval: float,
        client_id: str = "monitord-sim",
        qos: int = 0,
    ) -> None:
        self.host, self.port, self.devices, self.interval = host, port, devices, interval
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect_fail = self._on_connect_fail
        self.published = 0
        self.sequence: dict[str, int] = {}  # device → last sequence number sent
        self.qos = qos
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
        gateways: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for dev in self.devices:
            if dev.gateway_device is not None or dev.status_topic is not None:
                self._say(dev)
            if dev.model.faults & {"offline", "silent"}:
                dev.sent.clear()  # back, it reports everything once, as a device does on reconnecting
                continue
            profile, topic = dev.profile, dev.topic
            assert profile.mqtt is not None
            report = dev.to_report()
            if profile.mqtt.format == "plain":
                for point in profile.points if report is None else report:
                    self.client.publish(topic.format(point=point), f"{dev.model.values.get(point, 0.0):.6g}")
                self.published += 1
                continue
            key = dev.gateway_device or topic
            seq = self.sequence[key] = self.sequence.get(key, 0) + 1
            doc = document(profile, dev.model.values, now, seq, report)
            if dev.gateway_device is None:
                self.client.publish(topic, json.dumps(doc), qos=self.qos)
                self.published += 1
                continue
            _put(doc, profile.mqtt.ts_field or "ts", int(now * 1000))  # the gateway's milliseconds
            gateways.setdefault(topic, {}).setdefault(dev.gateway_device, []).append(doc)
        for topic, by_device in gateways.items():
            self.client.publish(topic, json.dumps(by_device), qos=self.qos)
            self.published += len(by_device)

    def _say(self, dev: SimulatedMqttDevice) -> None:
        """A device says when it goes offline or comes back: its gateway's connect/disconnect (as
        ThingsBoard's does), or a retained word on its status topic (as a last will would)."""
        online = "offline" not in dev.model.faults
        if online == dev.said_online:
            return
        dev.said_online = online
        if dev.gateway_device is not None:
            root = dev.topic.rsplit("/", 1)[0]
            body = json.dumps({"device": dev.gateway_device})
            self.client.publish(f"{root}/{'connect' if online else 'disconnect'}", body, qos=1)
        elif dev.status_topic is not None:
            self.client.publish(dev.status_topic, "online" if online else "offline", qos=1, retain=True)
