"""MQTT driver: subscribes to device topics and turns payloads into batches.

Sits before the ``SampleBus``. paho runs its network loop in its own thread
(reading through a buffer: ``mqtt_client``); ``on_message`` only appends to a
queue of at most ``MAX_QUEUED`` messages (full: QoS 0 gives up the oldest,
counted; QoS 1 waits for room), and the asyncio side drains
the queue in bursts, so a flood of messages costs one wake-up of the event
loop, not one per message; a burst is taken ``DRAIN_CHUNK`` messages (or
``DRAIN_BUDGET`` seconds) at a time with a yield to the loop between chunks, so a flood never starves the
Modbus pollers or the evaluation sharing that loop. Which asset a topic feeds,
and the parse, are in ``mqtt_routes``: exact topics and ``+``/``#`` filters,
plain numbers, JSON field paths (array indexes too), and the ThingsBoard
gateway's many devices on one topic. A malformed message is counted per asset
(``monitord_mqtt_malformed_messages_total{asset}``) and logged once per topic,
never raised.

The session is persistent by default (clean_session false, a stable client
id, QoS 1 subscriptions): what is published while the daemon is away is kept
by the broker and handed over on reconnect. ``mqtts://`` checks the broker's
certificate against the configured CA, always; a failure is logged with its
reason and the devices go offline by silence, never on a value.

What a device says of itself (a status topic, a last will, Homie ``$state``,
the gateway's connect/disconnect) goes to the bus as a ``HealthChange`` with
``said=True``: offline at once (its points ``comm_error``), online while it
is silent; losing the broker hands the verdict back to silence.

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

With ``mqtt.worker`` (the default) the session and the parse run in a child process instead of
paho's thread (``mqtt_keeper``, the daemon's side, subclasses this driver; ``mqtt_worker`` is the
child); what the child hands over lands in the same queue and is judged by the same drain.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import random
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch, SampleBlock, batches_of
from monitord.ingest.bus import SampleBus

from .mqtt_client import BufferedClient, stop_loop
from .mqtt_routes import (
    ABSENT,
    Parsed,
    Router,
    StatusRoute,
    TopicRoute,
    gateway_device,
    gateway_entries,
    parse_payload,
    status_word,
)
from .mqtt_wire import Raw, Rows

__all__ = [
    "MqttDriver",
    "Parsed",
    "Router",
    "SequenceGaps",
    "StatusRoute",
    "Tls",
    "TopicRoute",
    "parse_payload",
]

log = logging.getLogger(__name__)
BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"  # Mosquitto's own count
DRAIN_CHUNK = 500  # messages parsed per turn of the event loop at most (~10 ms of single-device JSON)
DRAIN_BUDGET = 0.010  # and at most this long: a gateway message carries many devices (~0.15 ms each)
MAX_SHAPES = 10_000  # kept combinations of the fields a message carries, of all devices (_carried)
MAX_QUEUED = 50_000  # messages between paho's thread and the loop: ~5 s of 10k/s, ~30 MB of lift JSON
RECONNECT_MIN = 0.5  # seconds before the first reconnect attempt
RECONNECT_MAX = 4.0  # the backoff's cap: a broker back from an outage is used within this


@dataclass(frozen=True)
class Tls:
    """``mqtts://``: the CA that signs the broker's certificate, and our own certificate and key."""

    ca: str | None = None  # None: the system's trust store
    cert: str | None = None
    key: str | None = None


class TlsContext(ssl.SSLContext):
    """An SSL context that closes the socket of a failed handshake: paho leaves it open, one
    socket per retry against a broker whose certificate does not verify."""

    last: ssl.SSLSocket | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.last = super().wrap_socket(*args, **kwargs)
        return self.last

    def drop_failed(self) -> None:
        """Called when an attempt failed: the socket it wrapped is not paho's connection."""
        if self.last is not None:
            self.last.close()
            self.last = None


def tls_context(tls: Tls) -> TlsContext:
    """Certificates are always checked (CERT_REQUIRED, host name included): a broker we cannot
    verify is not connected to, and that is logged, never waived. Call ``drop_failed`` from paho's
    ``on_connect_fail``."""
    context = TlsContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca:
        context.load_verify_locations(tls.ca)
    else:
        context.load_default_certs()
    if tls.cert:
        context.load_cert_chain(tls.cert, tls.key)
    return context


class SequenceGaps:
    """Per asset, how many sequence numbers were skipped since the previous message (pure logic)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def observe(self, asset: str, seq: int) -> int:
        """Messages missing before ``seq``: 0 for the first, a repeat, or a counter that started over.
        Once per message in process: no containers built for one pair."""
        last = self._last.get(asset)
        self._last[asset] = seq
        return seq - last - 1 if last is not None and seq > last + 1 else 0

    def observe_many(self, seen: Iterable[tuple[str, int | None]]) -> list[tuple[str, int, int]]:
        """``observe`` for (asset, seq) pairs in the order received (None: no number), for a worker's
        rows: only the gaps, each as (asset, missing, seq)."""
        observe = self.observe
        found = ((asset, observe(asset, seq), seq) for asset, seq in seen if seq is not None)
        return [gap for gap in found if gap[1]]


class MqttDriver:
    def __init__(
        self,
        host: str,
        port: int,
        routes: dict[str, TopicRoute] | Router,
        bus: SampleBus,
        clock: Clock,
        metrics: Metrics,
        *,
        client_id: str,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        max_clock_skew: float = 60.0,
        persistent: bool = True,
        tls: Tls | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.host, self.port = host, port
        self.router = routes if isinstance(routes, Router) else Router(routes)
        self.max_clock_skew = max_clock_skew
        self._sequences = SequenceGaps()
        self._warned: set[tuple[str, str]] = set()  # (kind, asset or topic) already logged
        self._shapes: dict[tuple[str, tuple[str, ...], bytes], tuple[str, ...]] = {}  # see _carried
        self.bus, self.clock, self.metrics, self.qos = bus, clock, metrics, qos
        # The session as configured, beside paho's client made of it: a worker process opens the same.
        self.session: dict[str, Any] = dict(
            client_id=client_id, qos=qos, username=username, password=password, persistent=persistent, tls=tls
        )
        self._queue: collections.deque[Raw | Rows] = collections.deque()
        self.max_queued = max_queued
        self._route_list = list(self.router.routes())  # the worker's row numbers index this
        self._room = threading.Event()  # set while the queue is below max_queued (QoS 1 waits on it)
        self._room.set()
        self._told_full = False
        self._batches: list[SampleBatch] = []  # parsed in this drain, not yet on the bus
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._wake_scheduled = False
        self._connected = threading.Event()
        self._closing = False
        self._attempts = 0  # failed connection attempts since the last good one
        self._jitter = random.Random()
        self._routes_of: dict[str, list[TopicRoute]] = {}  # asset → its routes (plain: one per point)
        for route in self.router.routes():
            self._routes_of.setdefault(route.asset, []).append(route)
        self._said: dict[str, bool] = {}  # what each device last said of itself (status topics)
        # A persistent session (clean_session false, a stable client id): with QoS 1 subscriptions the
        # broker keeps what arrives while we are away (a reconnect, our restart) and hands it over.
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        if username:
            self.client.username_pw_set(username, password)
        self._tls: TlsContext | None = None
        if tls is not None:
            self._tls = tls_context(tls)
            self.client.tls_set_context(self._tls)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._reachable = True  # False from the first failed connect until the next connect
        self._refusal = ""  # why the last connection attempt failed, said once per reason
        self.client.on_message = self._on_message
        self._next_delay()

    # -- paho thread ---------------------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refused(f"connection refused: {reason}")
            return
        # Subscribed on every connect, even when the broker kept our session: the config may have
        # changed since, and a status topic's retained word comes again with a new subscription.
        if self.router:
            filters = self.router.filters
            client.subscribe([(t, self.qos) for t in filters] + [(BROKER_DROPPED, 0)])
        log.info(
            "mqtt %s:%d: connected (%s), %d topics",
            self.host,
            self.port,
            "session resumed" if flags.session_present else "new session",
            len(self.router.filters),
        )
        self._reachable, self._refusal = True, ""
        self._attempts = 0
        self._next_delay()
        self._connected.set()

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
        # going offline three polls later. paho calls this inside its `except OSError`, so the
        # reason (a refused port, a certificate that does not verify) is at hand.
        self.metrics.driver_errors.labels("mqtt", "connect").inc()
        self._reachable = False
        exc = sys.exc_info()[1]
        if self._tls is not None:
            self._tls.drop_failed()
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"TLS: the broker's certificate does not verify ({exc.verify_message}): check mqtt.ca"
        elif isinstance(exc, ssl.SSLError):
            why = f"TLS handshake failed ({exc.reason or exc}): check mqtt.ca, mqtt.cert and mqtt.key"
        else:
            why = f"cannot connect to the broker ({exc or 'no reason given'})"
        self._refused(why)

    def _refused(self, why: str) -> None:
        """A failed attempt: logged when its reason is new (an outage is one line, not one per retry)."""
        if why != self._refusal:
            self._refusal = why
            say = log.error if "TLS" in why else log.warning  # a certificate will not fix itself
            say("mqtt %s:%d: %s; retrying", self.host, self.port, why)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic  # decoded by paho on each read
        if topic == BROKER_DROPPED:
            self._broker_dropped(bytes(msg.payload))
            return
        if len(self._queue) >= self.max_queued:
            self._full(msg.qos)
        self._queue.append((self.clock.now(), topic, bytes(msg.payload)))
        # One wake-up per burst: the asyncio side clears the flag before it drains, so a
        # message that arrives after the drain started always schedules the next one.
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self._wake.set)

    def _broker_dropped(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError):  # a broker of another make may say something else
            self.metrics.broker_dropped.set(int(payload))

    def _full(self, qos: int) -> None:
        """The queue is full (the loop is behind a flood): QoS 0 gives up its oldest message, counted,
        so memory stays bounded and the newest word of each device is kept; QoS 1 waits for room,
        and while paho's thread waits it reads nothing, so the broker holds (and counts) the rest."""
        if qos == 0:
            self._queue.popleft()
            self.metrics.mqtt_queue_dropped.inc()
            self._tell_full()
            return
        while len(self._queue) >= self.max_queued and not self._closing:
            self._room.clear()
            if len(self._queue) < self.max_queued:  # drained between the test and the clear
                break
            self._room.wait(1.0)  # bounded: paho's keep-alive and a close are looked at every second

    def _tell_full(self) -> None:
        if not self._told_full:  # once per driver: at a flood this runs per message
            self._told_full = True
            log.warning(
                "mqtt %s:%d: the loop is behind (%d messages queued): QoS 0 messages are given up, "
                "the oldest first, counted in monitord_mqtt_queue_dropped_messages_total",
                self.host,
                self.port,
                self.max_queued,
            )

    # -- asyncio side --------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        session = self._start_session()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._wake_scheduled = False
                while True:
                    began = time.thread_time()
                    self.drain(DRAIN_CHUNK, DRAIN_BUDGET)
                    if not self._queue:
                        break
                    # Pollers and the evaluation run between chunks, and for as long as the chunk
                    # took: under a flood MQTT has at most half the loop, never all of it. Taken is
                    # this thread's CPU, not the wall clock: the chunk's wall time includes its
                    # waits for the GIL while paho's thread reads, which was paid for twice.
                    await asyncio.sleep(time.thread_time() - began)
        finally:
            if session is not None:
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await session
            self.close()

    def _start_session(self) -> asyncio.Task[None] | None:
        """The broker session: here paho's network loop in its own thread, feeding ``_on_message``;
        a task to end with ``run`` where another keeps it (``mqtt_keeper``: a worker process)."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return None

    def drain(self, limit: int | None = None, budget: float | None = None) -> int:
        """Turn what is queued (at most ``limit`` messages, for about ``budget`` seconds at most) into
        batches; returns how many messages it took."""
        n = 0
        resolve = self.router.resolve
        stop = None if budget is None else time.perf_counter() + budget
        while self._queue and (limit is None or n < limit):
            if stop is not None and n % 16 == 15 and time.perf_counter() > stop:
                break
            item = self._queue.popleft()
            if isinstance(item, Rows):  # a worker's parse: messages of one point list, as a matrix
                self._rows(item)
                n += item.messages
                continue
            ts, topic, payload = item
            n += 1
            if n % 64 == 0 and not self._room.is_set() and len(self._queue) < self.max_queued:
                self._room.set()  # room again for a QoS 1 message waiting in paho's thread
            route = resolve(topic)
            if type(route) is TopicRoute:
                try:
                    parsed = parse_payload(route, payload)
                except Exception as exc:  # untrusted input (huge ints, deep nesting) never stops the driver
                    self._malformed(topic, route.asset, exc)
                    continue
                self._publish(ts, topic, route, parsed)
            elif isinstance(route, dict):
                self._gateway(ts, topic, route, payload)
            elif isinstance(route, StatusRoute):
                self._hand_over()  # what a device sent before its word on its state lands first
                self._status(ts, topic, route, payload)
            elif topic == BROKER_DROPPED:  # from a worker
                self._broker_dropped(payload)
        self._hand_over()
        if len(self._queue) < self.max_queued:
            self._room.set()
        return n

    def _rows(self, rows: Rows) -> None:
        """A worker's rows as batches: what ``_publish`` does per message (its own time within
        ``max_clock_skew``, sequence gaps), the common case for all rows at once."""
        routes = self._route_list
        received, sent = rows.received, rows.sent
        stamps = received.copy()
        said = ~np.isnan(sent)
        if said.any():
            near = said & (np.abs(sent - received) <= self.max_clock_skew)
            stamps[near] = sent[near]
            for i in np.flatnonzero(said & ~near).tolist():  # counted and logged, as in process
                self._bounded(routes[rows.routes[i]].asset, float(sent[i]), float(received[i]))
        numbers = rows.routes.tolist()
        assets = [routes[r].asset for r in numbers]
        if rows.seqs is not None:
            for asset, missing, seq in self._sequences.observe_many(zip(assets, rows.seqs, strict=True)):
                self._report_gap(asset, missing, seq)
        points = routes[numbers[0]].points  # the driver's own tuple: the sinks cache by it
        batches = batches_of(stamps.tolist(), assets, points, rows.values, rows.quality)
        if np.count_nonzero(rows.quality):  # some point not good: batch by batch
            self._batches.extend(batches)
            return
        self._hand_over()  # what came before, first
        self.bus.publish_many(SampleBlock(batches, points, rows.values))

    def _hand_over(self) -> None:
        """The batches of the messages drained so far, to the bus together (one update per sink)."""
        if self._batches:
            batches, self._batches = self._batches, []
            self.bus.publish_many(batches)

    def _publish(self, ts: float, topic: str, route: TopicRoute, parsed: Parsed) -> None:
        values, quality, sent_ts, seq, any_good, complete = parsed
        points = route.points
        if sent_ts is not None and not math.isfinite(sent_ts):
            # A NaN time would poison every frame it lands in: one bad sample costs one sample.
            self._malformed(topic, route.asset, ValueError(f"timestamp {sent_ts} is not a number"))
            values[:] = math.nan
            quality[:] = int(Quality.DECODE_ERROR)
            sent_ts, complete = None, True
        elif not any_good and route.fields:
            # Not one mapped field holds a number: most often a field path that does not fit. But a
            # device that reports changes may carry none at all: a keep-alive with its time or seq.
            keep_alive = route.changes and not (quality != ABSENT).any()
            if not keep_alive:
                self._malformed(topic, route.asset, ValueError("no field the profile maps holds a number"))
        if seq is not None:
            self._count_gaps(route.asset, seq)
        if not complete:  # the fields the message carries; the others are left as they were
            said = quality != ABSENT
            if not route.changes:
                self._missing(route, said)
                if not said.any():
                    return
            # A device that reports changes and carries no field (a keep-alive: its time, its seq)
            # makes a batch of no point: heard from, nothing changed (the state table's contact).
            points = self._carried(route, said)
            values, quality = values[said], quality[said]
        stamp = ts if sent_ts is None else self._bounded(route.asset, sent_ts, ts)
        self._batches.append(SampleBatch(stamp, route.asset, points, values, quality))

    def _missing(self, route: TopicRoute, said: npt.NDArray[np.bool_]) -> None:
        """Mapped fields a device that sends whole messages left out: counted, each logged once (the
        point is left as it was, so a field path that does not fit would otherwise only look quiet)."""
        left_out = np.flatnonzero(~said).tolist()
        self.metrics.mqtt_missing_fields.labels(route.asset).inc(len(left_out))
        for i in left_out:
            self._warn_once(
                "missing",
                f"{route.asset} {route.field_names[i]}",  # the path joined once per route, not per message
                "mqtt: %s: a message leaves out this field, which the profile maps to point %s (a "
                "field path that does not fit, or a device that reports only changes: publishes: "
                "changes); the point keeps its last value; further ones counted in "
                "monitord_mqtt_missing_fields_total",
                route.points[i],
            )

    def _carried(self, route: TopicRoute, said: npt.NDArray[np.bool_]) -> tuple[str, ...]:
        """The points of ``route`` a message carries, one tuple per combination (sinks cache their
        column lookups by it); a device has few, but no more than ``MAX_SHAPES`` are kept."""
        key = (route.asset, route.points, said.tobytes())
        points = self._shapes.get(key)
        if points is None:
            points = tuple(p for p, s in zip(route.points, said.tolist(), strict=True) if s)
            if len(self._shapes) < MAX_SHAPES:
                self._shapes[key] = points
        return points

    def _gateway(self, ts: float, topic: str, devices: dict[str, TopicRoute], payload: bytes) -> None:
        """One ThingsBoard gateway message: every entry of every device it names."""
        try:
            for key, route, parsed in gateway_entries(devices, payload):
                if isinstance(parsed, Exception):
                    self._malformed(topic, route.asset if route else "", parsed, device=key)
                elif route is not None:
                    self._publish(ts, topic, route, parsed)
        except Exception as exc:  # the envelope itself: not JSON, not an object
            self._malformed(topic, "", exc)

    def _status(self, ts: float, topic: str, route: StatusRoute, payload: bytes) -> None:
        """A device's word on its own state: a status topic, or the gateway's connect/disconnect."""
        try:
            if route.kind == "word":
                asset, online = route.asset, status_word(payload)
            else:
                name = gateway_device(payload)
                found = route.devices.get(name)
                if found is None:
                    raise ValueError(f"device {name!r} is mapped to no asset")
                asset, online = found, route.kind == "connect"
        except Exception as exc:
            self._malformed(topic, route.asset, exc)
            return
        self._declare(ts, asset, online, f"{topic}: {payload[:40].decode('utf-8', 'replace')}")

    def _declare(self, ts: float, asset: str, online: bool | None, reason: str) -> None:
        """Take a device's word (None: it says nothing of its reachability) through the health road."""
        before = self._said.get(asset)
        if online is None:
            self._said.pop(asset, None)
        else:
            self._said[asset] = online
        if not online:
            # Offline by its own word: its last values are no longer the device's, at once.
            for route in self._routes_of.get(asset, ()):
                self.bus.publish(SampleBatch.failed(ts, asset, route.points, Quality.COMM_ERROR))
        self.bus.publish_health(HealthChange(ts, asset, bool(online), reason, said=online is not None))
        if online != before:
            if before is False:
                self.metrics.devices_offline.labels("mqtt").dec()
            if online is False:
                self.metrics.devices_offline.labels("mqtt").inc()
                log.warning("mqtt: %s says it is offline (%s)", asset, reason)
            else:
                said = "it is online" if online else "nothing of its state"
                log.info("mqtt: %s says %s (%s)", asset, said, reason)

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
        if missing:
            self._report_gap(asset, missing, seq)

    def _report_gap(self, asset: str, missing: int, seq: int) -> None:
        self.metrics.sequence_gaps.labels(asset).inc(missing)
        self._warn_once(
            "gap",
            asset,
            "mqtt: %s skipped %d sequence number(s) before %d: messages were lost on the way; "
            "further gaps counted in monitord_mqtt_sequence_gaps_total",
            missing,
            seq,
        )

    def _warn_once(self, kind: str, key: str, message: str, *args: object) -> None:
        """One trouble of one kind is logged once per device or topic (its metric counts every one)."""
        if (kind, key) not in self._warned:
            self._warned.add((kind, key))
            log.warning(message, key, *args)
        else:
            log.debug(message, key, *args)

    def _mark_stale(self, ts: float, quality: Quality = Quality.STALE) -> None:
        """The broker (or the worker) is gone: every MQTT asset's last values are ``quality`` from now
        on (event loop), and what a device last said of itself no longer holds: silence judges until
        it speaks again."""
        self._hand_over()
        for route in self.router.routes():
            self.bus.publish(SampleBatch.failed(ts, route.asset, route.points, quality))
        for asset in list(self._said):
            self._declare(ts, asset, None, "broker connection lost")

    def _malformed(self, topic: str, asset: str, exc: Exception, device: str = "") -> None:
        """A message (or a gateway entry) that gave no value: counted per asset, logged once per topic."""
        self.metrics.driver_errors.labels("mqtt", "malformed").inc()
        self.metrics.mqtt_malformed.labels(asset).inc()
        self._warn_once(
            "malformed",
            f"{topic} {device}".strip(),
            "mqtt: malformed message on %s (%s); further ones counted in "
            "monitord_mqtt_malformed_messages_total",
            exc,
        )

    def close(self) -> None:
        self._closing = True
        self._room.set()
        self.client.disconnect()
        stop_loop(self.client)


def publish_once(host: str, port: int, topic: str, payload: str) -> None:
    """One message, QoS 1, on a connection of its own (notifications to duty-room panels)."""
    import paho.mqtt.publish as publish

    publish.single(topic, payload, qos=1, hostname=host, port=port, client_id="")
