"""What the MQTT worker process hands the daemon: parsed rows as matrices, the rest as received.

Pure logic between ``mqtt_worker`` (the child: paho and the parse) and ``mqtt_keeper`` (the
daemon's side of it). A chunk is what paho read in one go, in order: runs of well-formed messages
become ``Rows`` (one float64 matrix per point list, with each row's qualities, route, receive time,
the payload's own time and sequence number), and anything else (a status word, a payload the parse
refuses or finds no number in, a gateway message with any entry not plainly good, a plain number,
a sequence number past 64 bits, the broker's ``$SYS`` count) travels as the raw
``(ts, topic, payload)`` so that the daemon judges it with the same code as in process: what is
malformed, a device's word, skewed or a gap is decided in one place (the daemon; times and sequence
numbers of rows too).

The frames on the socket pair are a fixed layout that loading cannot turn into code (no pickle):
a header (kind, body length), then per kind numbers by ``struct``; a chunk's rows as raw native
matrices after their shape (both ends are one machine), a run of raw messages as arrays of their
times and of their topics' and payloads' lengths, then the topics and the payloads joined; each
part padded to 8 bytes so the arrays are read in place, aligned. The setup, the one frame the
daemon sends its child besides acknowledgements, is JSON. Decoding checks every length and value it
relies on and refuses anything else with a ``WireError``, which the daemon counts and logs as a
worker that ended.
"""

from __future__ import annotations

import array
import itertools
import json
import math
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .mqtt_routes import (
    FlatBlock,
    Router,
    StatusRoute,
    TopicRoute,
    gateway_block,
    gateway_fast,
    loads,
    parse_payload,
)

__all__ = [
    "Ack",
    "Batcher",
    "Chunk",
    "Event",
    "LogLine",
    "Raw",
    "RouteTable",
    "Rows",
    "WireError",
    "ack_frame",
    "chunk_frame",
    "decode_frame",
    "decode_setup",
    "event_frame",
    "log_frame",
    "read_frame",
    "setup_frame",
]

Raw = tuple[float, str, bytes]  # receive time, topic, payload: as paho handed it over

# kind (one byte), then the body's length. Native order and sizes: both ends are one machine.
HEADER = struct.Struct("=BI")
CHUNK, EVENT, LOG, ACK, SETUP = b"CELAS"  # frame kinds, as their byte
_CHUNK = struct.Struct("=qI4x")  # acknowledgement number (-1: none), parts (rows, or a run of raw items)
_RAW = struct.Struct("=B3xI")  # b"R", raw messages in a row
_ROWS = struct.Struct("=B?2xIII")  # b"M", has sequence numbers, rows, points per row, messages
_LOG = struct.Struct("=iI")  # level, bytes of the logger's name (the message is the rest)
_ACK = struct.Struct("=Q")
_RAW_TAG, _ROWS_TAG = b"RM"
EVENTS = frozenset({"connected", "disconnected", "connect_failed"})
_INT64 = 2**63
assert array.array("I").itemsize == 4 and array.array("q").itemsize == 8  # the layout's sizes


class WireError(ValueError):
    """A frame that does not hold what its kind says: refused whole, never partly taken."""


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


class Event(NamedTuple):
    """The worker's session changed: ``connected``, ``disconnected`` or ``connect_failed``."""

    kind: str


class LogLine(NamedTuple):
    """One of the worker's log records, for the daemon's own handlers."""

    level: int
    name: str
    message: str


class Ack(NamedTuple):
    """The daemon holds chunk ``number``: its QoS 1 messages may be acknowledged to the broker."""

    number: int


Frame = Chunk | Event | LogLine | Ack | dict[str, Any]


# -- encoding ------------------------------------------------------------------------------------


def _framed(kind: int, parts: list[Any]) -> bytes:
    size = sum(memoryview(p).nbytes for p in parts)
    return b"".join([HEADER.pack(kind, size), *parts])


def _pad(n: int) -> bytes:
    return bytes(-n % 8)


def chunk_frame(chunk: Chunk) -> bytes:
    """A chunk as a frame: its rows, and each run of raw messages between them, as parts."""
    parts: list[Any] = []
    count = 0
    for raw, run in itertools.groupby(chunk.items, lambda item: type(item) is tuple):
        if raw:
            _raw_parts(list(run), parts)  # type: ignore[arg-type]
            count += 1
        else:
            for rows in run:
                _rows_parts(rows, parts)  # type: ignore[arg-type]
                count += 1
    return _framed(CHUNK, [_CHUNK.pack(-1 if chunk.ack is None else chunk.ack, count), *parts])


def _raw_parts(run: list[Raw], parts: list[Any]) -> None:
    """Raw messages in a row: their times, the lengths of their topics and payloads (arrays), then
    the topics and the payloads each joined: no Python step per message but C's."""
    stamps, topics, payloads = zip(*run, strict=True)
    names = "".join(topics)
    if names.isascii():  # almost always: a byte per character
        blob, sizes = names.encode(), list(map(len, topics))
    else:
        encoded = [t.encode("utf-8", "surrogatepass") for t in topics]
        blob, sizes = b"".join(encoded), list(map(len, encoded))
    data = b"".join(payloads)
    parts += (
        _RAW.pack(_RAW_TAG, len(run)),
        array.array("d", stamps),  # array, not numpy: from a list of Python numbers it is quicker
        array.array("I", sizes),
        array.array("I", map(len, payloads)),
        blob,
        data,
        _pad(len(blob) + len(data)),
    )


def _rows_parts(rows: Rows, parts: list[Any]) -> None:
    n, width = rows.values.shape
    seqs = rows.seqs
    parts.append(_ROWS.pack(_ROWS_TAG, seqs is not None, n, width, rows.messages))
    first = len(parts)
    parts += (np.ascontiguousarray(a, dtype=np.float64).data for a in (rows.values, rows.received, rows.sent))
    known = None if seqs is None or None not in seqs else bytes(s is not None for s in seqs)
    if seqs is not None:  # 8-byte numbers before the 4- and 1-byte ones: every array aligned
        # A number past 64 bits never gets here: the batcher sends its message raw.
        parts.append(array.array("q", seqs if known is None else [s or 0 for s in seqs]))
    parts += (
        np.ascontiguousarray(rows.routes, dtype=np.int32).data,
        np.ascontiguousarray(rows.quality, dtype=np.int8).data,
    )
    if seqs is not None:
        parts.append(bytes(b"\x01" * n) if known is None else known)
    parts.append(_pad(sum(memoryview(p).nbytes for p in parts[first:])))


def event_frame(kind: str) -> bytes:
    return _framed(EVENT, [kind.encode()])


def log_frame(level: int, name: str, message: str) -> bytes:
    who = name.encode("utf-8", "surrogatepass")
    return _framed(LOG, [_LOG.pack(level, len(who)), who, message.encode("utf-8", "surrogatepass")])


def ack_frame(number: int) -> bytes:
    return _framed(ACK, [_ACK.pack(number)])


def setup_frame(setup: dict[str, Any]) -> bytes:
    """The worker's setup (broker, session, TLS paths, log level, the router) as JSON."""
    doc = dict(setup, router=_router_doc(setup["router"]))
    return _framed(SETUP, [json.dumps(doc).encode()])


def _route_doc(route: TopicRoute) -> list[Any]:
    return [route.asset, route.points, route.fields, route.ts_field, route.seq_field, route.changes]


def _router_doc(router: Router) -> dict[str, Any]:
    return {
        "assets": {topic: _route_doc(r) for topic, r in router.assets.items()},
        "gateways": {
            topic: {key: _route_doc(r) for key, r in devices.items()}
            for topic, devices in router.gateways.items()
        },
        "status": {topic: [r.kind, r.asset, r.devices] for topic, r in router.status.items()},
    }


# -- decoding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteTable:
    """What the daemon checks a worker's rows against: its routes' point lists, by route number."""

    widths: npt.NDArray[np.int64]  # points per route
    groups: npt.NDArray[np.int64]  # routes of one point list share a number

    @classmethod
    def of(cls, routes: Sequence[TopicRoute]) -> RouteTable:
        numbers: dict[tuple[str, ...], int] = {}
        groups = [numbers.setdefault(r.points, len(numbers)) for r in routes]
        return cls(
            np.array([len(r.points) for r in routes], dtype=np.int64), np.array(groups, dtype=np.int64)
        )


def decode_frame(data: bytes | bytearray, routes: RouteTable | None = None) -> Frame:
    """A whole frame (header included) as what it carries; raises ``WireError``."""
    if len(data) < HEADER.size:
        raise WireError(f"a frame of {len(data)} bytes is shorter than its header")
    kind, size = HEADER.unpack_from(data)
    if size != len(data) - HEADER.size:
        raise WireError(f"the header says {size} bytes follow, {len(data) - HEADER.size} do")
    # A buffer of its own, as from the socket: the arrays read in place are aligned and writable.
    return decode_body(kind, memoryview(bytearray(data[HEADER.size :])), routes)


def read_frame(sock: socket.socket, routes: RouteTable | None = None) -> Frame | None:
    """The next frame from ``sock``, or None when the other side closed; raises ``WireError``.
    ``routes``: a chunk's rows are checked against them (the daemon's side)."""
    head = _read_exactly(sock, HEADER.size)
    if head is None:
        return None
    kind, size = HEADER.unpack(head)
    if kind not in (CHUNK, EVENT, LOG, ACK, SETUP):
        raise WireError(f"unknown frame kind {kind:#04x}")
    body = _read_exactly(sock, size)
    return None if body is None else decode_body(kind, memoryview(body), routes)


def _read_exactly(sock: socket.socket, n: int) -> bytearray | None:
    """``n`` bytes into a buffer of their own (the arrays decoded from it are views, writable)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return buf


def decode_body(kind: int, body: memoryview, routes: RouteTable | None = None) -> Frame:
    """What a frame's body carries, by its kind; raises ``WireError`` for anything malformed."""
    try:
        if kind == CHUNK:
            return _chunk(body, routes)
        if kind == EVENT:
            word = bytes(body).decode()
            if word not in EVENTS:
                raise WireError(f"unknown worker event {word[:40]!r}")
            return Event(word)
        if kind == LOG:
            level, n = _unpack(_LOG, body, 0)
            at = _LOG.size
            _need(body, at, n, "the logger's name")
            name = bytes(body[at : at + n]).decode("utf-8", "surrogatepass")
            return LogLine(level, name, bytes(body[at + n :]).decode("utf-8", "surrogatepass"))
        if kind == ACK:
            if len(body) != _ACK.size:
                raise WireError(f"an acknowledgement of {len(body)} bytes, not {_ACK.size}")
            return Ack(_ACK.unpack(body)[0])
        if kind == SETUP:
            return decode_setup(bytes(body))
    except UnicodeDecodeError as exc:
        raise WireError(f"text that is not UTF-8 in a frame of kind {chr(kind)!r}: {exc}") from None
    raise WireError(f"unknown frame kind {kind:#04x}")


def _unpack(fmt: struct.Struct, body: memoryview, at: int) -> tuple[Any, ...]:
    _need(body, at, fmt.size, "a head")
    return fmt.unpack_from(body, at)


def _need(body: memoryview, at: int, n: int, what: str) -> None:
    if n < 0 or at + n > len(body):
        raise WireError(f"truncated frame: {what} needs {n} bytes at {at}, {len(body) - at} are left")


def _chunk(body: memoryview, routes: RouteTable | None) -> Chunk:
    ack, count = _unpack(_CHUNK, body, 0)
    if ack < -1:
        raise WireError(f"acknowledgement number {ack}")
    at = _CHUNK.size
    items: list[Rows | Raw] = []
    for _ in range(count):
        _need(body, at, 1, "a part's tag")
        tag = body[at]
        if tag == _RAW_TAG:
            at = _raw(body, at, items)
        elif tag == _ROWS_TAG:
            rows, at = _rows(body, at, routes)
            items.append(rows)
        else:
            raise WireError(f"unknown part tag {tag:#04x} at {at}")
    if at != len(body):
        raise WireError(f"{len(body) - at} bytes after the chunk's {count} parts")
    return Chunk(tuple(items), None if ack == -1 else ack)


def _raw(body: memoryview, at: int, items: list[Rows | Raw]) -> int:
    """A run of raw messages onto ``items``; where the next part starts."""
    _tag, n = _unpack(_RAW, body, at)
    if n < 1:
        raise WireError("a run of no raw messages")
    at += _RAW.size
    stamps, at = _array(body, at, np.float64, n)
    sizes, at = _array(body, at, np.uint32, n)
    lengths, at = _array(body, at, np.uint32, n)
    if not np.isfinite(stamps).all():
        raise WireError("a raw message's receive time is not a number")
    ends = np.cumsum(sizes, dtype=np.int64).tolist()
    stops = np.cumsum(lengths, dtype=np.int64).tolist()
    _need(body, at, ends[-1] + stops[-1], "topics and payloads")
    blob = bytes(body[at : at + ends[-1]])
    data = bytes(body[at + ends[-1] : at + ends[-1] + stops[-1]])
    at += ends[-1] + stops[-1]
    at += -at % 8  # every part starts at a multiple of 8
    _need(body, at, 0, "padding")
    names = blob.decode("utf-8", "surrogatepass")
    starts = [0, *ends[:-1]]
    if len(names) == len(blob):  # ASCII: characters are bytes
        topics = list(map(names.__getitem__, map(slice, starts, ends)))
    else:
        topics = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends, strict=True)]
    payloads = list(map(data.__getitem__, map(slice, [0, *stops[:-1]], stops)))
    items.extend(zip(stamps.tolist(), topics, payloads, strict=True))
    return at


def _array(body: memoryview, at: int, dtype: type[Any], count: int) -> tuple[npt.NDArray[Any], int]:
    size = dtype().itemsize * count
    if at + size > len(body):
        _need(body, at, size, f"{count} × {np.dtype(dtype).name}")
    return np.frombuffer(body, dtype=dtype, count=count, offset=at), at + size


def _rows(body: memoryview, at: int, routes: RouteTable | None) -> tuple[Rows, int]:
    """One matrix of rows; where the next part starts. The part is read as bytes once and its
    arrays are views of it (a chunk at QoS 1 holds a message or two: fixed costs count)."""
    _tag, with_seqs, n, width, messages = _unpack(_ROWS, body, at)
    if n < 1 or width < 1 or not 1 <= messages <= n:
        raise WireError(f"rows of {n} × {width} points from {messages} messages")
    at += _ROWS.size
    cells, floats = n * width, n * width + 2 * n + (n if with_seqs else 0)  # values, times, seqs
    size = 8 * floats + 4 * n + cells + (n if with_seqs else 0)
    _need(body, at, size + -size % 8, f"rows of {n} × {width} points")
    part = np.frombuffer(body, np.uint8, count=size, offset=at)
    wide = part[: 8 * floats].view(np.float64)
    values, received, sent = (
        wide[:cells].reshape(n, width),
        wide[cells : cells + n],
        wide[cells + n : cells + 2 * n],
    )
    o = 8 * floats
    numbers = part[o : o + 4 * n].view(np.int32)
    quality = part[o + 4 * n : o + 4 * n + cells].view(np.int8).reshape(n, width)
    seqs: tuple[int | None, ...] | None = None
    if with_seqs:
        listed = wide[cells + 2 * n :].view(np.int64).tolist()
        known = part[o + 4 * n + cells :]
        if not known.all():
            listed = [s if k else None for s, k in zip(listed, known.tolist(), strict=True)]
        seqs = tuple(listed)
    if not math.isfinite(received.sum()) or np.isinf(sent).any():
        raise WireError("a row's receive time is not a number, or its own time is infinite")
    if routes is not None:
        try:  # as unsigned, a negative number is out of range too
            groups = routes.groups.take(numbers.view(np.uint32))
        except IndexError:
            raise WireError(f"a route number outside 0..{len(routes.widths) - 1}") from None
        if (groups != groups[0]).any() or routes.widths[numbers[0]] != width:
            raise WireError(f"rows of {width} points whose routes are not all of one such point list")
    return Rows(numbers, values, quality, received, sent, seqs, messages), at + size + -size % 8


def decode_setup(data: bytes) -> dict[str, Any]:
    """The setup frame's body: the JSON back, the router rebuilt; raises ``WireError``."""
    try:
        doc = json.loads(data)
        doc["router"] = Router(
            {topic: _route(r) for topic, r in doc["router"]["assets"].items()},
            {
                topic: {key: _route(r) for key, r in devices.items()}
                for topic, devices in doc["router"]["gateways"].items()
            },
            {
                topic: StatusRoute(kind, asset, dict(devices))
                for topic, (kind, asset, devices) in doc["router"]["status"].items()
            },
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"a setup that does not read: {exc!r}") from None
    return dict(doc)


def _route(doc: list[Any]) -> TopicRoute:
    asset, points, fields, ts_field, seq_field, changes = doc
    paths = tuple(tuple(f) for f in fields)
    return TopicRoute(asset, tuple(points), paths, tuple(ts_field), tuple(seq_field), bool(changes))


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
        self.flat: list[Any] = []  # gateway_fast's values, rows after rows: made one array at a time
        self.width = 0

    def add(
        self,
        routes: list[int],
        values: npt.NDArray[np.float64],
        quality: npt.NDArray[np.int8],
        received: float,
        sent: list[float | None],
        seqs: list[int | None],
    ) -> None:
        self._stamps(routes, received, seqs)
        self._flush()  # the rows before these go first
        self.values.append(values)
        self.quality.append(quality)
        self.sent += [math.nan if t is None else t for t in sent]

    def add_flat(self, routes: list[int], block: FlatBlock, received: float) -> None:
        """A ``gateway_fast`` block: its values stay a list until the run's next array (``_flush``)."""
        self._stamps(routes, received, block.seqs)
        self.flat += block.values
        self.width = block.width
        self.sent += block.ts

    def _stamps(self, routes: list[int], received: float, seqs: list[int | None]) -> None:
        if self.seqs is None and any(seq is not None for seq in seqs):
            self.seqs = [None] * len(self.routes)  # another route of the same points counts them
        self.routes += routes
        self.received += [received] * len(routes)
        if self.seqs is not None:
            self.seqs += seqs
        self.messages += 1

    def _flush(self) -> None:
        if self.flat:
            # fromiter: each number made a float as np.array would, without its walk of the list for
            # a shape first (8 → 3.4 µs per gateway message of 170 numbers, timeit)
            values = np.fromiter(self.flat, np.float64, len(self.flat)).reshape(-1, self.width)
            self.values.append(values)
            self.quality.append(np.zeros(values.shape, dtype=np.int8))  # Quality.GOOD is 0
            self.flat = []

    def close(self) -> Rows:
        self._flush()
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
            if one is not None and _plain(one) and _fits(one.seq):
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
            doc = loads(payload)
            fast = gateway_fast(devices, doc)
            if fast is not None:  # the common message: as gateway_block would, its seqs fit
                index = self.index
                rows = [index[id(route)] for route in fast.routes]
                self._run(fast.routes[0]).add_flat(rows, fast, ts)
                return True
            block = gateway_block(devices, doc)
        except Exception:
            return False
        if block is None or not all(map(_fits, block.seqs)):
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
    """A parse the daemon would take as it is: every mapped field there (the daemon leaves out what
    a message does not carry), some value good, its own time a number if any."""
    return bool(parsed.any_good and parsed.complete) and (parsed.ts is None or math.isfinite(parsed.ts))


def _fits(seq: int | None) -> bool:
    """A sequence number the wire carries (64 bits); a larger one travels raw, parsed by the daemon."""
    return seq is None or -_INT64 <= seq < _INT64
