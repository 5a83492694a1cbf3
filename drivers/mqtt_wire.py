"""What the MQTT worker process hands the daemon: parsed rows as matrices, the rest as received.

Pure logic between ``mqtt_worker`` (the child: paho and the parse) and ``mqtt`` (the driver in the
daemon). A chunk is what paho read in one go, in order: runs of well-formed messages become
``Rows`` (one float64 matrix per point list, with each row's qualities, route, receive time, the
payload's own time and sequence number), and anything else (a status word, a payload the parse
refuses or finds no number in, a gateway message with any entry not plainly good, a plain number,
the broker's ``$SYS`` count) travels as the raw ``(ts, topic, payload)`` so that the daemon judges
it with the same code as in process: what is malformed, a device's word, skewed or a gap is
decided in one place (the daemon; times and sequence numbers of rows too). Frames on the socket
are a 4-byte length and a pickle (our own child, never the broker's bytes unpickled: payloads are
``bytes`` inside).
"""

from __future__ import annotations

import math
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .mqtt_routes import Router, TopicRoute, gateway_block, loads, parse_payload

__all__ = ["Batcher", "Chunk", "Raw", "Rows", "frame", "read_frame", "send_frame"]

HEADER = struct.Struct("!I")
Raw = tuple[float, str, bytes]  # receive time, topic, payload: as paho handed it over


@dataclass(frozen=True)
class Rows:
    """Well-formed messages of one point list: row i is route ``routes[i]`` of the router's list."""

    routes: npt.NDArray[np.int32]
    values: npt.NDArray[np.float64]  # rows × points
    quality: npt.NDArray[np.int8]
    received: npt.NDArray[np.float64]
    sent: npt.NDArray[np.float64]  # the payload's own time; NaN where it says none
    seqs: tuple[int | None, ...] | None  # None: no route of these rows maps a sequence number
    messages: int  # MQTT messages these rows came from (a gateway message gives several rows)


@dataclass(frozen=True)
class Chunk:
    """One hand-over: ``items`` in the order received; ``ack`` numbers it when QoS 1 waits on it."""

    items: tuple[Rows | Raw, ...]
    ack: int | None = None


def frame(obj: object) -> bytes:
    """A length and a pickle."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def send_frame(sock: socket.socket, obj: object) -> None:
    sock.sendall(frame(obj))


def read_frame(sock: socket.socket) -> Any:
    """The next frame's object, or None when the other side closed."""
    head = _read_exactly(sock, HEADER.size)
    if head is None:
        return None
    body = _read_exactly(sock, HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        part = sock.recv(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class _Run:
    """Rows of one point list being gathered, in blocks (a message's row, or a gateway's matrix)."""

    def __init__(self, with_seq: bool) -> None:
        self.routes: list[int] = []
        self.values: list[npt.NDArray[np.float64]] = []  # blocks of rows
        self.quality: list[npt.NDArray[np.int8]] = []
        self.received: list[float] = []
        self.sent: list[float] = []
        self.seqs: list[int | None] | None = [] if with_seq else None
        self.messages = 0

    def add(
        self,
        routes: list[int],
        values: npt.NDArray[np.float64],
        quality: npt.NDArray[np.int8],
        received: float,
        sent: list[float | None],
        seqs: list[int | None],
    ) -> None:
        if self.seqs is None and any(seq is not None for seq in seqs):
            self.seqs = [None] * len(self.routes)  # another route of the same points counts them
        self.routes += routes
        self.values.append(values)
        self.quality.append(quality)
        self.received += [received] * len(routes)
        self.sent += [math.nan if t is None else t for t in sent]
        if self.seqs is not None:
            self.seqs += seqs
        self.messages += 1

    def close(self) -> Rows:
        return Rows(
            np.array(self.routes, dtype=np.int32),
            np.concatenate(self.values),
            np.concatenate(self.quality),
            np.array(self.received),
            np.array(self.sent),
            None if self.seqs is None else tuple(self.seqs),
            self.messages,
        )


class Batcher:
    """The child's parse: messages in, a ``Chunk`` out per ``take`` (pure logic, no socket)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.index = {id(route): i for i, route in enumerate(router.routes())}
        self._items: list[Rows | Raw] = []
        self._runs: dict[tuple[str, ...], _Run] = {}
        self.messages = 0  # taken since the last ``take``

    def add(self, ts: float, topic: str, payload: bytes) -> None:
        self.messages += 1
        route = self.router.resolve(topic)
        if type(route) is TopicRoute and route.fields:
            try:
                one = parse_payload(route, payload)
            except Exception:  # the daemon parses it again, counts and logs it
                one = None
            if one is not None and _plain(one):
                self._run(route).add(
                    [self.index[id(route)]], one.values[None], one.quality[None], ts, [one.ts], [one.seq]
                )
                return
        elif isinstance(route, dict) and self._gateway(route, ts, payload):
            return
        # a status word, a plain number, an unknown topic, the broker's count, anything not plainly good
        self._close_runs()  # what came before it goes first
        self._items.append((ts, topic, payload))

    def _run(self, route: TopicRoute) -> _Run:
        run = self._runs.get(route.points)
        if run is None:
            run = self._runs[route.points] = _Run(bool(route.seq_field))
        return run

    def _gateway(self, devices: dict[str, TopicRoute], ts: float, payload: bytes) -> bool:
        """A gateway message as rows, if all of it is plainly good (else the daemon reads it)."""
        try:
            block = gateway_block(devices, loads(payload))
        except Exception:
            return False
        if block is None:
            return False
        rows = [self.index[id(route)] for route in block.routes]
        quality = np.zeros(block.values.shape, dtype=np.int8)  # Quality.GOOD is 0
        self._run(block.routes[0]).add(rows, block.values, quality, ts, block.ts, block.seqs)
        return True

    def _close_runs(self) -> None:
        self._items.extend(run.close() for run in self._runs.values())
        self._runs = {}

    def take(self) -> list[Rows | Raw]:
        """What was added since the last call, in order; empties the batcher."""
        self._close_runs()
        items, self._items, self.messages = self._items, [], 0
        return items


def _plain(parsed: Any) -> bool:
    """A parse the daemon would take as it is: some value good, its own time a number if any."""
    return bool(parsed.any_good) and (parsed.ts is None or math.isfinite(parsed.ts))
