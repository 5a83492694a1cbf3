"""MQTT driver: subscribes to device topics and turns payloads into batches.

Sits before the ``SampleBus``. paho runs its network loop in its own thread;
``on_message`` only parses and appends to a queue, and the asyncio side drains
the queue in bursts, so a flood of messages costs one wake-up of the event
loop, not one per message; a burst is taken ``DRAIN_CHUNK`` messages at a
time with a yield to the loop between chunks, so a flood never starves the
Modbus pollers or the evaluation sharing that loop. Topics map to assets through the profile's pattern
(``{site}/{asset}/...``) or the asset's own topic. Plain numeric payloads map
one topic to one point; JSON payloads map field paths to points. A malformed
payload is counted and logged once per topic, never raised.

A payload's own timestamp (the profile's ``ts_field``) is used only when it is
within ``max_clock_skew`` of receive time; otherwise the sample is stamped with
receive time, counted (``monitord_clock_skew_total{asset}``) and logged once
per device. The state table judges offline by receive time in any case.

Where a profile names a ``seq_field``, each payload's sequence number is
followed per asset: numbers skipped between consecutive messages are counted
in ``monitord_mqtt_sequence_gaps_total{asset}`` (and logged once per asset),
so messages lost anywhere between device and daemon show even when the broker
says nothing. A lower number is the device's counter starting over, not a gap.

When the broker goes away the driver reconnects with a short capped backoff
(``RECONNECT_MIN`` doubling to ``RECONNECT_MAX`` seconds, each wait drawn from
its upper half so that many daemons do not knock at once), and every MQTT
asset's data is marked ``stale`` at once: rules act on no value that is not
coming any more, and the first message after the reconnect is good again.
Where the broker offers it (Mosquitto's ``$SYS``), the count of messages the
broker itself dropped is followed, so a broker that sheds load shows in
``monitord_mqtt_broker_dropped_messages``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.ingest.bus import SampleBus

log = logging.getLogger(__name__)
BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"  # Mosquitto's own count
DRAIN_CHUNK = 500  # messages parsed per turn of the event loop (~10 ms of work)
RECONNECT_MIN = 0.5  # seconds before the first reconnect attempt
RECONNECT_MAX = 4.0  # the backoff's cap: a broker back from an outage is used within this


@dataclass(frozen=True)
class TopicRoute:
    """What one topic carries: an asset's JSON document, or one plain point."""

    asset: str
    points: tuple[str, ...]
    fields: tuple[tuple[str, ...], ...]  # JSON path per point; empty for plain payloads
    ts_field: tuple[str, ...] = ()
    seq_field: tuple[str, ...] = ()


class Parsed(NamedTuple):
    values: np.ndarray
    quality: np.ndarray
    ts: float | None  # the payload's own time, if it says
    seq: int | None  # the payload's sequence number, if it carries a whole one


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def parse_payload(route: TopicRoute, payload: bytes) -> Parsed:
    """Values, qualities and (if the payload says) the sample time and sequence; raises ValueError."""
    n = len(route.points)
    values = np.full(n, math.nan)
    quality = np.full(n, int(Quality.DECODE_ERROR), dtype=np.int8)
    if not route.fields:
        text = payload.decode("utf-8").strip()
        values[0] = float(text)  # ValueError on garbage
        if math.isfinite(values[0]):
            quality[0] = int(Quality.GOOD)
        return Parsed(values, quality, None, None)
    doc = json.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("JSON payload is not an object")
    for i, path in enumerate(route.fields):
        v = _lookup(doc, path)
        if isinstance(v, bool | int | float) and math.isfinite(float(v)):
            values[i] = float(v)
            quality[i] = int(Quality.GOOD)
    ts = None
    if route.ts_field:
        raw = _lookup(doc, route.ts_field)
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            ts = float(raw) / 1000.0 if raw > 1e11 else float(raw)  # milliseconds or seconds
    seq = None
    if route.seq_field:
        raw = _lookup(doc, route.seq_field)
        if isinstance(raw, int) and not isinstance(raw, bool):
            seq = raw
        elif isinstance(raw, float) and raw.is_integer():
            seq = int(raw)
    return Parsed(values, quality, ts, seq)


class SequenceGaps:
    """Per asset, how many sequence numbers were skipped since the previous message (pure logic)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def observe(self, asset: str, seq: int) -> int:
        """Messages missing before ``seq``: 0 for the first, a repeat, or a counter that started over."""
        last = self._last.get(asset)
        self._last[asset] = seq
        if last is None or seq <= last:
            return 0
        return seq - last - 1


class MqttDriver:
    def __init__(
        self,
        host: str,
        port: int,
        routes: dict[str, TopicRoute],
        bus: SampleBus,
        clock: Clock,
        metrics: Metrics,
        *,
        client_id: str,
        qos: int = 0,
        username: str | None = None,
        password: str | None = None,
        max_clock_skew: float = 60.0,
    ) -> None:
        self.host, self.port, self.routes = host, port, routes
        self.max_clock_skew = max_clock_skew
        self._sequences = SequenceGaps()
        self._warned: set[tuple[str, str]] = set()  # (kind, asset) already logged: clock skew, gaps
        self.bus, self.clock, self.metrics, self.qos = bus, clock, metrics, qos
        self._queue: collections.deque[tuple[float, str, bytes]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._wake_scheduled = False
        self._bad_topics: set[str] = set()
        self._connected = threading.Event()
        self._was_connected = False
        self._closing = False
        self._attempts = 0  # failed connection attempts since the last good one
        self._jitter = random.Random()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._reachable = True  # False from the first failed connect until the next connect
        self.client.on_message = self._on_message
        self._next_delay()

    # -- paho thread ---------------------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt %s:%d: connection refused: %s", self.host, self.port, reason)
            return
        # Subscriptions do not survive a clean session: subscribe on every connect.
        if self.routes:
            client.subscribe([(t, self.qos) for t in self.routes] + [(BROKER_DROPPED, 0)])
        log.info("mqtt %s:%d: connected, %d topics", self.host, self.port, len(self.routes))
        self._reachable = True
        self._attempts = 0
        self._next_delay()
        self._connected.set()
        self._was_connected = True

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._closing:
            return
        self._next_delay()
        if was_connected:
            log.warning("mqtt %s:%d: disconnected (%s); reconnecting", self.host, self.port, reason)
            self.metrics.driver_errors.labels("mqtt", "disconnect").inc()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._mark_stale, self.clock.now())

    def _next_delay(self) -> None:
        """Set paho's wait before its next attempt: capped doubling, drawn from the upper half."""
        cap = min(RECONNECT_MAX, RECONNECT_MIN * 2**self._attempts)
        self._attempts += 1
        delay = self._jitter.uniform(cap / 2, cap)
        # paho annotates the delays as int but waits in float seconds; a whole second would be too coarse
        self.client.reconnect_delay_set(min_delay=delay, max_delay=delay)  # type: ignore[arg-type]

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        self._next_delay()
        # Said once per outage, as Modbus does: without it a missing broker only showed as lifts
        # going offline three polls later.
        self.metrics.driver_errors.labels("mqtt", "connect").inc()
        if self._reachable:
            self._reachable = False
            log.warning("mqtt %s:%d: cannot connect to the broker; retrying", self.host, self.port)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic == BROKER_DROPPED:
            with contextlib.suppress(ValueError):  # a broker of another make may say something else
                self.metrics.broker_dropped.set(int(msg.payload))
            return
        self._queue.append((self.clock.now(), msg.topic, bytes(msg.payload)))
        # One wake-up per burst: the asyncio side clears the flag before it drains, so a
        # message that arrives after the drain started always schedules the next one.
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- asyncio side --------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._wake_scheduled = False
                while True:
                    began = time.perf_counter()
                    if self.drain(DRAIN_CHUNK) < DRAIN_CHUNK:
                        break
                    # Pollers and the evaluation run between chunks, and for as long as the chunk
                    # took: under a flood MQTT has at most half the loop, never all of it.
                    await asyncio.sleep(time.perf_counter() - began)
        finally:
            self.close()

    def drain(self, limit: int | None = None) -> int:
        """Turn what is queued (at most ``limit`` messages) into batches; returns how many."""
        n = 0
        while self._queue and (limit is None or n < limit):
            ts, topic, payload = self._queue.popleft()
            n += 1
            route = self.routes.get(topic)
            if route is None:
                continue
            try:
                values, quality, sent_ts, seq = parse_payload(route, payload)
            except Exception as exc:  # untrusted input (huge ints, deep nesting, ...) never stops the driver
                self._malformed(topic, exc)
                continue
            if sent_ts is not None and not math.isfinite(sent_ts):
                # A NaN time would poison every frame it lands in: one bad sample costs one sample.
                self._malformed(topic, ValueError(f"timestamp {sent_ts} is not a number"))
                values[:] = math.nan
                quality[:] = int(Quality.DECODE_ERROR)
                sent_ts = None
            if seq is not None:
                self._count_gaps(route.asset, seq)
            stamp = ts if sent_ts is None else self._bounded(route.asset, sent_ts, ts)
            self.bus.publish(SampleBatch(stamp, route.asset, route.points, values, quality))
        return n

    def _bounded(self, asset: str, sent: float, received: float) -> float:
        """The device's time if its clock is within ``max_clock_skew`` of ours, else receive time."""
        if abs(sent - received) <= self.max_clock_skew:
            return sent
        self.metrics.clock_skew.labels(asset).inc()
        self._warn_once(
            "skew",
            asset,
            "mqtt: %s sends time %+.0f s off receive time (max_clock_skew %.0f s): "
            "its samples are stamped on receipt; further ones counted in monitord_clock_skew_total",
            sent - received,
            self.max_clock_skew,
        )
        return received

    def _count_gaps(self, asset: str, seq: int) -> None:
        missing = self._sequences.observe(asset, seq)
        if not missing:
            return
        self.metrics.sequence_gaps.labels(asset).inc(missing)
        self._warn_once(
            "gap",
            asset,
            "mqtt: %s skipped %d sequence number(s) before %d: messages were lost on the way; "
            "further gaps counted in monitord_mqtt_sequence_gaps_total",
            missing,
            seq,
        )

    def _warn_once(self, kind: str, asset: str, message: str, *args: object) -> None:
        """A device's trouble of one kind is logged once (its metric counts every occurrence)."""
        if (kind, asset) not in self._warned:
            self._warned.add((kind, asset))
            log.warning(message, asset, *args)

    def _mark_stale(self, ts: float) -> None:
        """The broker is gone: every MQTT asset's last values are stale from now on (event loop)."""
        for route in self.routes.values():
            self.bus.publish(SampleBatch.failed(ts, route.asset, route.points, Quality.STALE))

    def _malformed(self, topic: str, exc: Exception) -> None:
        self.metrics.driver_errors.labels("mqtt", "malformed").inc()
        if topic not in self._bad_topics:
            self._bad_topics.add(topic)
            log.warning("mqtt: malformed payload on %s (%s); further ones on this topic at debug", topic, exc)
        else:
            log.debug("mqtt: malformed payload on %s (%s)", topic, exc)

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


def publish_once(host: str, port: int, topic: str, payload: str) -> None:
    """One message, QoS 1, on a connection of its own (notifications to duty-room panels)."""
    import paho.mqtt.publish as publish

    publish.single(topic, payload, qos=1, hostname=host, port=port, client_id="")
