"""The daemon's side of the MQTT worker process: start it, read its chunks, keep one running.

Under ``drivers/mqtt.py``, beside ``mqtt_worker`` (the child): with ``mqtt.worker`` (the default)
the daemon runs a ``WorkerDriver``, the MQTT driver whose broker session is a child process rather
than paho's thread. Started with one end of a socket pair and ``PR_SET_PDEATHSIG`` (it ends with
the daemon, a ``kill -9`` included); a reader thread here takes its chunks (``mqtt_wire``) into
the driver's bounded queue, waiting for room at QoS 1 and acknowledging a chunk only once it is
queued, and hands its session events and log records to the loop. Every message is judged by the
driver's own drain, as in process. A worker that ends (or sends a frame that does not decode) is
counted in ``monitord_driver_errors_total{kind="worker"}``, its devices go ``comm_error`` after
what it handed over, and another is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import sys
import threading
import time
from typing import Any

from monitord.core.model import Quality

from .mqtt import RECONNECT_MAX, RECONNECT_MIN, MqttDriver, log
from .mqtt_wire import Chunk, Event, LogLine, RouteTable, Rows, WireError, ack_frame, read_frame, setup_frame

__all__ = ["WorkerDriver"]

WORKER = [sys.executable, "-m", "monitord.drivers.mqtt_worker"]  # + the socket's fd (mqtt_worker.py)
WORKER_STOP = 5.0  # seconds a worker has to end after its socket is closed, before it is killed


class WorkerDriver(MqttDriver):
    """``MqttDriver`` with paho and the parse in a child process (``mqtt_worker``), one at a time.
    Its log lines are the driver's (``log`` of ``mqtt``): one driver, wherever its session runs."""

    # Messages queued by the reader thread, drained by the loop, given up by the reader (QoS 0,
    # full): each written by one thread only, ``held`` is their balance.
    _added = _taken = _given_up = 0
    _reading = False  # the reader thread may take chunks
    _process: asyncio.subprocess.Process | None = None
    _worker_told = False  # a worker's end was logged; not again until one connects
    _bad_frame: str | None = None  # why the reader refused the worker's last frame

    @functools.cached_property
    def _route_table(self) -> RouteTable:
        """What a chunk's rows are checked against: the driver's routes, as the worker numbers them."""
        return RouteTable.of(self._route_list)

    def _setup(self) -> dict[str, Any]:
        """What the worker opens: the driver's session, its routes, the daemon's log level."""
        tls = self.session["tls"]
        return self.session | {
            "host": self.host,
            "port": self.port,
            "router": self.router,
            "tls": None if tls is None else vars(tls).copy(),
            "log_level": logging.getLogger().getEffectiveLevel(),
        }

    def _start_session(self) -> asyncio.Task[None]:
        return asyncio.create_task(self._keep_worker(), name="mqtt-worker")

    def drain(self, limit: int | None = None, budget: float | None = None) -> int:
        n = super().drain(limit, budget)
        self._taken += n
        return n

    def close(self) -> None:
        super().close()
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # ended on its own by now
                process.terminate()  # run() ends it by closing its socket; this is the fallback

    async def _keep_worker(self) -> None:
        """One worker process at a time; one that ends is counted, its devices marked ``comm_error``
        (their last values are not theirs any more: no message can come), and another started."""
        while True:
            began = time.monotonic()
            try:
                why = f"exit {await self._worker_session()}"
            except (OSError, ValueError) as exc:  # could not start
                why = str(exc)
            if self._bad_frame is not None:  # the frame says more than the exit code
                why, self._bad_frame = f"a malformed frame from it: {self._bad_frame}", None
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
        setup = setup_frame(self._setup())

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

    def _read_worker(self, sock: socket.socket, setup: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """The reader thread: the setup out, then chunks into the queue and the rest to the loop. A
        frame that does not decode ends the session: the worker is counted as ended, and why said."""
        try:
            sock.sendall(setup)
            while (got := read_frame(sock, self._route_table)) is not None:
                if isinstance(got, Chunk):
                    self._take(got, sock, loop)
                elif isinstance(got, Event | LogLine):
                    loop.call_soon_threadsafe(self._worker_said, got)
                else:
                    raise WireError(f"a worker sends no {type(got).__name__}")
        except WireError as exc:  # our own child's bytes, but never taken on trust
            self._bad_frame = str(exc)
        except OSError as exc:  # the worker ended
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
            sock.sendall(ack_frame(chunk.ack))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            loop.call_soon_threadsafe(self._wake.set)

    def _worker_said(self, got: Event | LogLine) -> None:
        if isinstance(got, LogLine):  # the worker's record, logged as the daemon's own
            logging.getLogger(got.name).log(got.level, "%s", got.message)
        else:
            self._worker_event(got.kind)

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
