"""The MQTT driver's queue between paho's thread and the event loop is bounded (issue 13): at QoS 0 a
flood the loop does not take gives up the oldest messages, counted; at QoS 1 paho's thread waits
for room and nothing is lost. And paho reading through a buffer (``drivers/mqtt_client.py``) hands
over every byte as the socket would. Real Mosquitto; the loop's drain is called by the test, so the
queue fills exactly as it would behind a busy loop.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import paho.mqtt.client as paho

from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.mqtt import MqttDriver, TopicRoute
from monitord.drivers.mqtt_client import READ_SIZE, BufferedSocket, stop_loop
from monitord.ingest.bus import SampleBus

TOPIC = "site/lift/E1/status"
ROUTES = {TOPIC: TopicRoute("E1", ("floor",), (("floor",),))}
BOUND = 100


def _connected(port: int, qos: int, client_id: str) -> tuple[MqttDriver, list[SampleBatch], Metrics]:
    """A driver connected and subscribed, its paho thread running, its queue drained by the test."""
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = MqttDriver(
        "127.0.0.1", port, ROUTES, bus, SystemClock(), metrics, client_id=client_id, qos=qos, max_queued=BOUND
    )
    driver.client.connect_async("127.0.0.1", port)
    driver.client.loop_start()
    assert _until(driver._connected.is_set, 10)
    # The subscription is made once connected. A probe the broker acknowledged was routed by then;
    # once the driver holds the latest, every earlier one has arrived too (one connection, in order).
    probe = _publisher(port)
    try:
        for attempt in range(1, 50):
            body = json.dumps({"floor": -attempt}).encode()
            probe.publish(TOPIC, body, qos=1).wait_for_publish(5)
            if _until(lambda body=body: any(m[2] == body for m in list(driver._queue)), 0.5):
                break
        else:
            raise AssertionError("the driver never subscribed")
    finally:
        probe.disconnect()
        stop_loop(probe)
    driver.drain()
    got.clear()
    return driver, got, metrics


def _until(check: Callable[[], object], timeout: float) -> bool:
    """Whether ``check`` came true within ``timeout`` seconds (polled; paho's thread does the work)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _publisher(port: int) -> paho.Client:
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


def _floors(got: list[SampleBatch]) -> list[int]:
    assert all(b.quality[0] == Quality.GOOD for b in got)
    return [int(b.values[0]) for b in got]


def test_at_qos0_a_full_queue_gives_up_the_oldest_and_counts_them(mosquitto: int) -> None:
    driver, got, metrics = _connected(mosquitto, 0, "queue-qos0")
    try:
        pub = _publisher(mosquitto)
        for floor in range(500):
            pub.publish(TOPIC, json.dumps({"floor": floor}), qos=0)
        dropped = metrics.registry.get_sample_value
        assert _until(lambda: dropped("monitord_mqtt_queue_dropped_messages_total") == 500 - BOUND, 10)
        pub.disconnect()
        stop_loop(pub)
        assert len(driver._queue) == BOUND, "memory stays bounded"
        assert driver.drain() == BOUND
        assert _floors(got) == list(range(500 - BOUND, 500)), "the newest are kept, in order"
    finally:
        driver.close()


def test_at_qos1_paho_waits_for_room_and_nothing_is_lost(mosquitto: int) -> None:
    driver, got, metrics = _connected(mosquitto, 1, "queue-qos1")
    try:
        pub = _publisher(mosquitto)
        sent = [pub.publish(TOPIC, json.dumps({"floor": floor}), qos=1) for floor in range(300)]
        # paho's thread holds the 101st message while the queue is full: the broker keeps the rest
        assert _until(lambda: len(driver._queue) == BOUND and not driver._room.is_set(), 10)
        for info in sent:
            info.wait_for_publish(10)
        assert len(driver._queue) == BOUND
        deadline = time.monotonic() + 20
        while len(got) < 300 and time.monotonic() < deadline:  # the loop's turns, as run() takes them
            driver.drain(50)
            time.sleep(0.01)
        pub.disconnect()
        stop_loop(pub)
        assert _floors(got) == list(range(300)), "every message, once, in order"
        assert metrics.registry.get_sample_value("monitord_mqtt_queue_dropped_messages_total") == 0
    finally:
        driver.close()


def test_the_buffered_socket_hands_over_every_byte_in_any_split() -> None:
    """paho asks for 1 byte, 1 byte, n bytes; one recv of the socket serves many packets, a packet
    split across two reads is joined, and the peer's close is b"" as from the socket."""
    a, b = socket.socketpair()
    try:
        sock = BufferedSocket(a)
        stream = bytes(range(256)) * (3 * READ_SIZE // 256 + 7)
        b.sendall(stream[:1000])
        assert sock.recv(1) == stream[:1] and sock.buffered() == 999 and sock.pending() == 999
        assert sock.recv(5000) == stream[1:1000], "a short read, as a socket gives"
        sizes = [1, 1, 3, 700, READ_SIZE + 5, 1, 2]
        b.sendall(stream[1000:])
        b.close()
        out, at = [], 1000
        for size in sizes * 40:
            part = sock.recv(size)
            if not part:
                break
            assert len(part) <= size
            out.append(part)
            at += len(part)
        else:
            raise AssertionError("never reached the peer's close")
        assert b"".join(out) == stream[1000:] and at == len(stream)
        assert sock.recv(1) == b""
    finally:
        a.close()
