"""The MQTT worker process: paho's network loop and the parse, off the daemon's interpreter.

Under ``drivers/mqtt.py``: with ``mqtt.worker`` (the default) the daemon's side (``mqtt_keeper``)
starts one of these per broker connection, ``python -m monitord.drivers.mqtt_worker FD``, with one
end of a socket pair.
The first frame on it is the setup (broker, session, TLS, the router); from then on the worker
runs the same paho session the driver runs in process (``MqttDriver``'s callbacks: subscriptions,
reconnect backoff, TLS checks; their log records travel to the daemon, which logs them as its own)
and, after each read of the socket (up to 64 KiB), hands the daemon one ``Chunk`` of what it read
(``mqtt_wire``).

QoS 1: paho's automatic acknowledgement is off; a chunk's messages are acknowledged to the broker
only when the daemon answers that the chunk is in its queue. While the daemon does not read
(its queue is full), sending blocks and nothing more is read: the broker holds the rest.
The worker ends when the daemon closes its end (or dies: the kernel sends SIGTERM then).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

import paho.mqtt.client as paho

from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.ingest.bus import SampleBus

from .mqtt import MqttDriver, Tls
from .mqtt_wire import Ack, Batcher, Chunk, chunk_frame, event_frame, log_frame, read_frame

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


class Worker:
    """One broker connection's paho session, handing what it reads to the daemon over ``sock``."""

    def __init__(self, sock: socket.socket, setup: dict[str, Any]) -> None:
        self.sock = sock
        self._sending = threading.Lock()  # paho's thread sends chunks, any thread may log
        # The driver's own session code, in process here: its bus and metrics are never read (the
        # daemon counts from the events this worker sends).
        self.driver = MqttDriver(
            setup["host"],
            setup["port"],
            setup["router"],
            SampleBus(),
            SystemClock(),
            Metrics(),
            client_id=setup["client_id"],
            qos=setup["qos"],
            username=setup["username"],
            password=setup["password"],
            persistent=setup["persistent"],
            tls=None if setup["tls"] is None else Tls(**setup["tls"]),
        )
        self.batcher = Batcher(self.driver.router)
        self._unacked: list[tuple[int, int]] = []  # (mid, qos) of the messages read since the last chunk
        self._waiting: dict[int, list[tuple[int, int]]] = {}  # chunk number → its messages to acknowledge
        self._chunks = 0
        self._gone = False  # the daemon's end is closed: nothing more is sent
        client = self.driver.client
        client.manual_ack_set(True)  # acknowledged when the daemon has the chunk (QoS 0: nothing to ack)
        client.on_message = self._on_message
        client.on_incoming = self._publish  # the common message read straight from the buffer
        client.after_read = self.flush
        driver = self.driver
        connect, disconnect, fail = driver._on_connect, driver._on_disconnect, driver._on_connect_fail

        def on_connect(*args: Any) -> None:
            connect(*args)
            if self.driver._connected.is_set():
                self._event("connected")

        def on_disconnect(*args: Any) -> None:
            was = self.driver._connected.is_set()
            disconnect(*args)
            if was and not self.driver._closing:
                self._event("disconnected")

        def on_connect_fail(*args: Any) -> None:
            fail(*args)
            self._event("connect_failed")

        client.on_connect, client.on_disconnect, client.on_connect_fail = (
            on_connect,
            on_disconnect,
            on_connect_fail,
        )

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self._publish(msg.topic, bytes(msg.payload), msg.qos, msg.mid)

    def _publish(self, topic: str, payload: bytes, qos: int, mid: int) -> None:
        self.batcher.add(self.driver.clock.now(), topic, payload)
        if qos:
            self._unacked.append((mid, qos))

    def flush(self) -> None:
        """Send what was read (paho's thread, after each read): one chunk, numbered if QoS 1 waits."""
        if not self.batcher.messages:
            return
        items = self.batcher.take()
        number = None
        if self._unacked:
            self._chunks += 1
            number = self._chunks
            self._waiting[number] = self._unacked
            self._unacked = []
        self._send(chunk_frame(Chunk(tuple(items), number)))

    def _event(self, kind: str) -> None:
        self.flush()  # what was read before it goes first
        self._send(event_frame(kind))

    def _send(self, frame: bytes) -> None:
        with self._sending:
            if self._gone:
                return
            try:
                self.sock.sendall(frame)  # blocks while the daemon's queue is full: back-pressure
            except OSError:
                self._gone = True  # the daemon is gone; the main thread sees the close and ends

    def run(self) -> None:
        client = self.driver.client
        client.connect_async(self.driver.host, self.driver.port, keepalive=30)
        client.loop_start()
        try:
            self.take_acks()
        finally:
            self._gone = True
            self.driver.close()

    def take_acks(self) -> None:
        """Acknowledge each chunk's QoS 1 messages to the broker as the daemon answers for it, until
        the daemon closes its end (the main thread; paho's thread reads and hands over)."""
        client = self.driver.client
        while (frame := read_frame(self.sock)) is not None:
            if isinstance(frame, Ack):
                client.ack_all(self._waiting.pop(frame.number, []))


class ToDaemon(logging.Handler):
    """Log records go to the daemon, which logs them with its own handlers and format."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        self.worker._send(log_frame(record.levelno, record.name, record.getMessage()))


def _die_with_parent() -> None:
    """The kernel sends SIGTERM when the daemon ends, however it ends: never an orphan."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: list[str]) -> int:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the daemon ended before the kernel was told
        return 0
    sock = socket.socket(fileno=int(argv[1]))
    setup = read_frame(sock)
    if not isinstance(setup, dict):  # the daemon closed first (a WireError ends this process)
        return 0
    worker = Worker(sock, setup)
    root = logging.getLogger()
    root.setLevel(setup["log_level"])
    root.addHandler(ToDaemon(worker))
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
