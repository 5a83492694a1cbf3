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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import pickle
import random
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch, SampleBlock
from monitord.ingest.bus import SampleBus

from .mqtt_client import BufferedClient
from .mqtt_routes import (
    Parsed,
    Router,
    StatusRoute,
    TopicRoute,
    gateway_device,
    gateway_entries,
    parse_payload,
    status_word,
)
from .mqtt_wire import Chunk, Raw, Rows, read_frame, send_frame

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
MAX_QUEUED = 50_000  # messages between paho's thread and the loop: ~5 s of 10k/s, ~30 MB of lift JSON
RECONNECT_MIN = 0.5  # seconds before the first reconnect attempt
RECONNECT_MAX = 4.0  # the backoff's cap: a broker back from an outage is used within this
WORKER = [sys.executable, "-m", "monitord.drivers.mqtt_worker"]  # + the socket's fd (mqtt_worker.py)
WORKER_STOP = 5.0  # seconds a worker has to end after its socket is closed, before it is killed


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
        worker: bool = False,
    ) -> None:
        """``worker``: paho and the parse in a child process (``mqtt_worker``), not paho's thread."""
        self.host, self.port = host, port
        self.router = routes if isinstance(routes, Router) else Router(routes)
        self.max_clock_skew = max_clock_skew
        self._sequences = SequenceGaps()
        self._warned: set[tuple[str, str]] = set()  # (kind, asset or topic) already logged
        self.bus, self.clock, self.metrics, self.qos = bus, clock, metrics, qos
        self._queue: collections.deque[Raw | Rows] = collections.deque()
        self.max_queued = max_queued
        self.worker = worker
        self._setup = dict(
            host=host, port=port, router=self.router, client_id=client_id, qos=qos, username=username,
            password=password, persistent=persistent, tls=tls,
        )  # fmt: skip
        # With a worker: messages queued by its reader thread, drained by the loop, given up by the
        # reader (QoS 0, full): each written by one thread only, ``held`` is their balance.
        self._added = self._taken = self._given_up = 0
        self._reading = False  # a worker's reader thread may take chunks
        self._process: asyncio.subprocess.Process | None = None
        self._worker_told = False  # a worker's end was logged; not again until one connects
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
        keeper = None
        if self.worker:
            keeper = asyncio.create_task(self._keep_worker(), name="mqtt-worker")
        else:
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()
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
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            self.close()

    # -- the worker process (``worker=True``) ---------------------------------
    async def _keep_worker(self) -> None:
        """One worker process at a time; one that ends is counted, its devices marked ``comm_error``
        (their last values are not theirs any more: no message can come), and another started."""
        while True:
            began = time.monotonic()
            try:
                why = f"exit {await self._worker_session()}"
            except (OSError, ValueError, pickle.UnpicklingError) as exc:  # could not start, or a bad frame
                why = str(exc)
            self.metrics.driver_errors.labels("mqtt", "worker").inc()
            # Said once until a worker connects again: one that cannot start is not a line per retry.
            say = log.debug if self._worker_told else log.error
            self._worker_told = True
            say(
                "mqtt %s:%d: the worker process ended (%s): its devices are comm_error until a new one "
                "is connected; further ends counted in monitord_driver_errors_total{kind=worker}",
                self.host,
                self.port,
                why,
            )
            self._connected.clear()
            self.drain()  # what it handed over lands before the mark, never after it
            self._mark_stale(self.clock.now(), Quality.COMM_ERROR)
            # At once after a long life, after a pause if it keeps dying (a crash at start-up).
            await asyncio.sleep(0 if time.monotonic() - began > RECONNECT_MAX else RECONNECT_MIN)

    async def _worker_session(self) -> int | None:
        """Start a worker and take its chunks until it ends; its exit code. A thread of ours reads
        them, as paho's thread does in process, so a QoS 1 acknowledgement waits for no turn of the
        event loop (the broker sends the next ones only then: 20 in flight, Mosquitto's default)."""
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *WORKER, str(theirs.fileno()), pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL
            )
        finally:
            theirs.close()
        process = self._process
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        setup = self._setup | {"log_level": logging.getLogger().getEffectiveLevel()}

        def read() -> None:
            try:
                self._read_worker(ours, setup, loop)
            finally:
                ours.close()
                with contextlib.suppress(RuntimeError):  # the loop closed already (the daemon ended)
                    loop.call_soon_threadsafe(ended.set_result, None)  # once: the thread ends once

        self._reading = True
        threading.Thread(target=read, name="mqtt-worker-reader", daemon=True).start()
        try:
            await asyncio.shield(ended)
        finally:
            self._reading = False
            self._room.set()  # a reader waiting for room looks again, and ends
            with contextlib.suppress(OSError):  # closed by the reader already
                ours.shutdown(socket.SHUT_RDWR)  # the worker's read ends: it disconnects and exits
            try:
                await asyncio.wait_for(process.wait(), WORKER_STOP)
            except TimeoutError:
                process.kill()
                await process.wait()
        return process.returncode

    def _read_worker(
        self, sock: socket.socket, setup: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        """The reader thread: the setup out, then chunks into the queue and the rest to the loop."""
        try:
            send_frame(sock, setup)
            while (got := read_frame(sock)) is not None:
                if isinstance(got, Chunk):
                    self._take(got, sock, loop)
                else:
                    loop.call_soon_threadsafe(self._worker_said, got)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:  # the worker ended, or a bad frame
            if self._reading:
                log.debug("mqtt %s:%d: worker connection: %s", self.host, self.port, exc)

    @property
    def held(self) -> int:
        """Messages in the queue, with a worker (a chunk of rows holds many)."""
        return self._added - self._taken - self._given_up

    def _take(self, chunk: Chunk, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """A chunk into the queue (reader thread), room made or waited for as paho's thread does in
        process, then its QoS 1 messages acknowledged: only what the daemon holds is the broker's to
        forget. While it waits the worker's sends block and the broker holds the rest."""
        if self.held >= self.max_queued:
            if chunk.ack is None:  # QoS 0: the oldest go
                while self.held >= self.max_queued:
                    try:
                        item = self._queue.popleft()
                    except IndexError:  # drained meanwhile
                        break
                    given = item.messages if isinstance(item, Rows) else 1
                    self._given_up += given
                    self.metrics.mqtt_queue_dropped.inc(given)
                    self._tell_full()
            else:
                while self.held >= self.max_queued and self._reading and not self._closing:
                    self._room.clear()
                    if self.held < self.max_queued:  # drained between the test and the clear
                        break
                    self._room.wait(1.0)
                if not self._reading or self._closing:
                    return  # not taken, not acknowledged: the broker gives it again
        self._queue.extend(chunk.items)
        self._added += sum(item.messages if isinstance(item, Rows) else 1 for item in chunk.items)
        if chunk.ack is not None:
            send_frame(sock, ("ack", chunk.ack))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            loop.call_soon_threadsafe(self._wake.set)

    def _worker_said(self, got: tuple[Any, ...]) -> None:
        if got[0] == "log":  # the worker's record, logged as the daemon's own
            logging.getLogger(got[2]).log(got[1], "%s", got[3])
        else:
            self._worker_event(got[0])

    def _worker_event(self, kind: str) -> None:
        """The worker's session changed (it logged why); counted and acted on here, as in process."""
        if kind == "connected":
            self._connected.set()
            self._worker_told = False
        elif kind == "disconnected":
            self._connected.clear()
            self.metrics.driver_errors.labels("mqtt", "disconnect").inc()
            self.drain()
            self._mark_stale(self.clock.now())
        elif kind == "connect_failed":
            self.metrics.driver_errors.labels("mqtt", "connect").inc()

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
        if self.worker:
            self._taken += n
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
        # map over the class: no Python frame per row besides the batch's own __init__
        batches = list(map(SampleBatch, stamps.tolist(), assets, repeat(points), rows.values, rows.quality))
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
        values, quality, sent_ts, seq, any_good = parsed
        if sent_ts is not None and not math.isfinite(sent_ts):
            # A NaN time would poison every frame it lands in: one bad sample costs one sample.
            self._malformed(topic, route.asset, ValueError(f"timestamp {sent_ts} is not a number"))
            values[:] = math.nan
            quality[:] = int(Quality.DECODE_ERROR)
            sent_ts = None
        elif not any_good and route.fields:
            # Not one mapped field holds a number: most often a field path that does not fit.
            self._malformed(topic, route.asset, ValueError("no field the profile maps holds a number"))
        if seq is not None:
            self._count_gaps(route.asset, seq)
        stamp = ts if sent_ts is None else self._bounded(route.asset, sent_ts, ts)
        self._batches.append(SampleBatch(stamp, route.asset, route.points, values, quality))

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
        self.client.loop_stop()
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # ended on its own by now
                process.terminate()  # run() ends it by closing its socket; this is the fallback


def publish_once(host: str, port: int, topic: str, payload: str) -> None:
    """One message, QoS 1, on a connection of its own (notifications to duty-room panels)."""
    import paho.mqtt.publish as publish

    publish.single(topic, payload, qos=1, hostname=host, port=port, client_id="")
