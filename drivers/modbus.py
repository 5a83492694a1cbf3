"""Modbus driver (TCP, RTU on a serial port, RTU over TCP): plans merged reads and polls devices.

Sits before the ``SampleBus``. One ``GatewayPoller`` per line (a TCP endpoint,
a serial port, or a serial server reached over TCP; ``drivers.modbus_line``)
is that line's only master: by default one request at a time (most Modbus TCP
gateways, RTU gateways and an RS-485 bus expect that), with the silent gap an RTU
line needs between frames, for every unit id on it; a Modbus TCP line with
``pipeline: N`` polls up to N devices at once over its one connection
(``drivers.modbus_tcp``). Lines are independent tasks, so a slow or dead device
holds up only its own line. Reads are planned once per profile: its registers are
merged over small gaps into as few requests as the device's limit allows. Each poll
of a device becomes one ``SampleBatch`` (the replies of many devices of one plan are
decoded as one matrix and handed over together); a failed read becomes
``comm_error`` samples and, once per outage, an offline health change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile, InfoSpec, ModbusSettings
from monitord.ingest.registers import BIT_KINDS, PointEncoding, RegisterCodec, decode_ascii

from .modbus_line import SERIAL_SETUP_ERRORS, Line
from .modbus_tcp import Answer, LinkLost, TcpLink, request_frame
from .verdict import fences, mark_quality, unmarked

log = logging.getLogger(__name__)
# Exception codes that mean "the device behind the gateway did not answer".
_UNREACHABLE = {0x0A, 0x0B}
# What a failed connect may raise: a refused or missing endpoint, or a serial port's settings refused.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (OSError, ModbusException, *SERIAL_SETUP_ERRORS)
# The function code each kind of read is asked, and must be answered, with.
_FUNCTION = {"coil": 0x01, "discrete": 0x02, "holding": 0x03, "input": 0x04}
# The reasons after which the line was closed: the device's other reads would only wait too.
_DROPPED = ("timeout", "io", "protocol")


GATEWAY_POINTS = ("devices_online", "devices_total")


def gateway_asset_id(host: str, port: int) -> str:
    """The id under which a Modbus gateway with several devices behind it is watched."""
    return Line.tcp(host, port).asset_id()


@dataclass(frozen=True)
class ReadRequest:
    kind: str
    start: int
    count: int
    codec: RegisterCodec


def plan_reads(encodings: Sequence[PointEncoding], settings: ModbusSettings) -> list[ReadRequest]:
    """Merge points into requests: fill gaps up to ``max_gap``, never exceed the limit."""
    requests: list[ReadRequest] = []
    by_kind: dict[str, list[PointEncoding]] = {}
    for p in encodings:
        by_kind.setdefault(p.kind, []).append(p)
    for kind, points in by_kind.items():
        bits = kind in BIT_KINDS
        limit = settings.max_bits if bits else settings.max_registers
        even = settings.even_count and not bits
        if even:
            limit -= limit % 2
        points.sort(key=lambda p: p.address)
        group: list[PointEncoding] = []
        for p in points:
            if group:
                start = group[0].address
                end = max(q.address + q.words for q in group)
                new_end = max(end, p.address + p.words)
                span = new_end - start
                if even:
                    span += span % 2
                if p.address - end > settings.max_gap or span > limit:
                    requests.append(_request(kind, group, even))
                    group = []
            group.append(p)
        if group:
            requests.append(_request(kind, group, even))
    return requests


def _request(kind: str, group: list[PointEncoding], even: bool) -> ReadRequest:
    start = group[0].address
    count = max(p.address + p.words for p in group) - start
    if even and count % 2:
        count += 1
    return ReadRequest(kind, start, count, RegisterCodec(start, count, group))


@dataclass(frozen=True)
class ReadPlan:
    """A profile's reads and what they yield, shared by every device of that profile: their replies
    are decoded together, one matrix per request, and their batches share one ``points`` tuple."""

    requests: tuple[ReadRequest, ...]
    points: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    slices: tuple[slice, ...]
    floor: np.ndarray  # low and high with open ends closed (verdict.fences): settle's quick check
    ceiling: np.ndarray

    @classmethod
    def of(cls, profile: DeviceProfile) -> ReadPlan:
        """The plan of ``profile``, made once per profile object."""
        cached = _PLANS.get(id(profile))
        if cached is not None and cached[0] is profile:
            return cached[1]
        requests = plan_reads(profile.modbus_encodings(), profile.modbus or ModbusSettings())
        names = tuple(n for r in requests for n in r.codec.names)
        specs = [profile.points[n] for n in names]
        low = np.array([-math.inf if s.min is None else s.min for s in specs])
        high = np.array([math.inf if s.max is None else s.max for s in specs])
        slices, offset = [], 0
        for r in requests:
            slices.append(slice(offset, offset + len(r.codec.names)))
            offset += len(r.codec.names)
        plan = cls(tuple(requests), names, low, high, tuple(slices), *fences(low, high))
        _PLANS[id(profile)] = (profile, plan)  # the profile is kept, so its id is not reused
        return plan


_PLANS: dict[int, tuple[DeviceProfile, ReadPlan]] = {}


@dataclass
class ModbusDevice:
    """One asset behind a gateway, with its read plan and health."""

    asset: str
    unit: int
    interval: float
    plan: ReadPlan
    pause: float = 0.0
    online: bool = True
    next_due: float = 0.0
    info: dict[str, InfoSpec] = field(default_factory=dict)  # ASCII facts, read when it (re)appears
    facts: dict[str, str] = field(default_factory=dict)  # what they read last
    info_due: bool = True

    @classmethod
    def from_profile(cls, asset: str, unit: int, interval: float, profile: DeviceProfile) -> ModbusDevice:
        settings = profile.modbus or ModbusSettings()
        return cls(asset, unit, interval, ReadPlan.of(profile), settings.pause, info=dict(profile.info))

    @property
    def requests(self) -> tuple[ReadRequest, ...]:
        return self.plan.requests

    @property
    def points(self) -> tuple[str, ...]:
        return self.plan.points


Client = AsyncModbusTcpClient | AsyncModbusSerialClient
Payload = npt.NDArray[np.uint16]
#: Readings decoded and handed to the bus together: at most this many, or after this long.
_CHUNK = 64
_CHUNK_DELAY = 0.005


@dataclass
class _Reading:
    """What one poll of one device brought back, before decoding: a register block per request."""

    dev: ModbusDevice
    ts: float
    started: float
    blocks: list[Payload | None]
    answered: bool = False
    reason: str = "no connection"


class GatewayPoller:
    """Polls every device on one line (by default the TCP endpoint host:port).

    On RTU lines, and on TCP lines with ``pipeline: 1`` (the default), one request at a time; on a
    TCP line with ``pipeline: N``, up to N devices are polled at once, each with one request in
    flight, over one connection (``drivers.modbus_tcp``)."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[ModbusDevice],
        bus: SampleBus,
        clock: Clock,
        metrics: Metrics,
        timeout: float = 1.0,
        backoff_max: float = 30.0,
        line: Line | None = None,
        utilisation_window: float = 5.0,
    ) -> None:
        self.line = line or Line.tcp(host, port)
        self.host, self.port, self.devices = host, port, devices
        self.bus, self.clock, self.metrics = bus, clock, metrics
        self.timeout, self.backoff_max = timeout, backoff_max
        self._client: Client | TcpLink | None = None
        self._connecting = asyncio.Lock()
        # With several devices behind it, the gateway is an asset of its own (comms.gateway_down).
        self.gateway_asset: str | None = self.line.asset_id() if len(devices) > 1 else None
        self._backoff = 0.0
        self._next_connect = 0.0
        self._reachable = True
        self._quiet_at = 0.0  # loop time before which the line must stay silent (RTU frame gap)
        self._busy = 0.0  # seconds the line was held since the window began
        self._window = utilisation_window
        self._window_start: float | None = None
        self._utilisation = metrics.modbus_line_utilisation.labels(self.line.name)
        self._latency = metrics.poll_latency.labels("modbus")
        self._frames: dict[tuple[int, str, int, int], bytes] = {}  # request ADUs (TCP), per read
        self._readings: list[_Reading] = []  # fetched, not yet decoded
        self._flush_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return self.line.name

    @property
    def in_flight(self) -> int:
        """Requests the line may have outstanding at once (RTU: always one)."""
        return 1 if self.line.rtu else max(1, self.line.pipeline)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = loop.time()
                due = [d for d in self.devices if d.next_due <= now]
                if due:
                    await self._poll_due(due)
                    if self.gateway_asset:
                        self._report_gateway()
                self._report_utilisation(loop.time())
                wait = min(d.next_due for d in self.devices) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            self._flush()
            self._close()

    async def _poll_due(self, due: list[ModbusDevice]) -> None:
        """Poll the devices that are due, up to ``in_flight`` at once, and hand their batches over."""
        todo = iter(due)
        # Each worker may have a whole device's reads in flight together, so the window holds fewer
        # workers: ``in_flight`` requests at once, never more.
        span = max(self._together(d) for d in due)
        workers = min(max(1, self.in_flight // span), len(due))
        started = asyncio.get_running_loop().time()
        if workers == 1:
            await self._worker(todo, started)
        else:
            async with asyncio.TaskGroup() as tg:
                for _ in range(workers):
                    tg.create_task(self._worker(todo, started))
        self._flush()

    async def _worker(self, todo: Iterator[ModbusDevice], started: float) -> None:
        me = asyncio.current_task()
        for dev in todo:
            self._collect(await self.fetch(dev))
            # A cycle that ran late puts its devices on the same new start, so they stay one cycle:
            # polled together, their replies are decoded together (a device settled alone costs ~6x
            # the CPU of one in a chunk of 40).
            dev.next_due = max(dev.next_due + dev.interval, started)
            # Python 3.11's wait_for (inside pymodbus, RTU lines) can swallow a cancellation that
            # arrives with the reply; honour it here so that shutdown never hangs.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError

    def _collect(self, reading: _Reading) -> None:
        """Keep a reading for the next decode; decode at once when enough are waiting, else soon."""
        self._readings.append(reading)
        if len(self._readings) >= _CHUNK:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(_CHUNK_DELAY, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        readings, self._readings = self._readings, []
        if readings:
            self.settle(readings)

    def _report_utilisation(self, now: float) -> None:
        """Set the line's utilisation gauge: the share of the last window the line was held."""
        if self._window_start is None:
            self._window_start, self._busy = now, 0.0
        elif now - self._window_start >= self._window:
            self._utilisation.set(min(1.0, self._busy / (now - self._window_start)))
            self._window_start, self._busy = now, 0.0

    def _report_gateway(self) -> None:
        assert self.gateway_asset is not None
        online = sum(d.online for d in self.devices)
        values = np.array([float(online), float(len(self.devices))])
        self.bus.publish(
            SampleBatch(
                self.clock.now(), self.gateway_asset, GATEWAY_POINTS, values, np.zeros(2, dtype=np.int8)
            )
        )

    async def _connected(self) -> Client | TcpLink | None:
        client = self._client
        if client is not None and client.connected:
            return client
        async with self._connecting:  # several workers: one connects, the others wait for it
            if self._client is not None and self._client.connected:
                return self._client
            if time.monotonic() < self._next_connect:
                return None
            self._close()
            client, why = await self._connect()
            if client is None:
                self._backoff = min(max(self._backoff * 2, 0.5), self.backoff_max)
                self._next_connect = time.monotonic() + self._backoff
                self.metrics.driver_errors.labels("modbus", "connect").inc()
                if self._reachable:
                    log.warning(
                        "modbus %s: cannot connect%s; retrying with backoff up to %.0fs",
                        self.name,
                        why,
                        self.backoff_max,
                    )
                    self._reachable = False
                return None
            if not self._reachable:
                log.info("modbus %s: connected again", self.name)
            self._reachable, self._backoff = True, 0.0
            self._client = client
            return client

    async def _connect(self) -> tuple[Client | TcpLink | None, str]:
        """A new connection (Modbus TCP: our own link; RTU: a pymodbus client), or None and why not."""
        if self.line.kind == "tcp":
            try:
                return await TcpLink.open(self.line.host, int(self.line.port), self.timeout), ""
            except (OSError, TimeoutError) as exc:
                return None, f" ({exc or 'timeout'})"
        client = self.line.client(self.timeout, f"monitord-{self.name}")
        why = ""
        try:
            ok = await client.connect()
        except _CONNECT_ERRORS as exc:
            # A port that refuses its settings (a pty, or an adapter without parity) raises from
            # termios, not OSError; it is a line that cannot be opened, never a crash.
            ok, why = False, f" ({exc})"
        if not ok:
            client.close()
            return None, why
        return client, ""

    def _close(self, client: Client | TcpLink | None = None) -> None:
        """Drop the connection (only if it is still ``client``, when given: another worker may
        already have made a new one)."""
        if self._client is not None and (client is None or client is self._client):
            self._client.close()
            self._client = None

    async def poll(self, dev: ModbusDevice) -> None:
        """Read one device completely and publish one batch; never raises."""
        self.settle([await self.fetch(dev)])

    def _together(self, dev: ModbusDevice) -> int:
        """How many of ``dev``'s reads go out at once: on a pipelined Modbus TCP line, all of them up
        to the window; one at a time on RTU, with ``pipeline: 1`` or a device that needs a pause."""
        if self.line.kind != "tcp" or dev.pause:
            return 1
        return max(1, min(self.line.pipeline, len(dev.requests)))

    async def fetch(self, dev: ModbusDevice) -> _Reading:
        """Read one device's registers; never raises. Decoding is left to ``settle``."""
        reading = _Reading(dev, self.clock.now(), time.perf_counter(), [None] * len(dev.requests))
        together = self._together(dev)
        for first in range(0, len(dev.requests), together):
            client = self._client
            if client is None or not client.connected:  # else ``_connected`` would say so, a coroutine later
                client = await self._connected()
            if client is None:
                break
            if dev.info and dev.info_due and not await self._read_info(client, dev):
                reading.reason = "no reply to the info read"
                break  # silent: the numeric reads would only wait too
            if first and dev.pause:
                await asyncio.sleep(dev.pause)
            reqs = dev.requests[first : first + together]
            if isinstance(client, TcpLink):
                results = await self._exchange(client, dev.unit, reqs)
            else:
                results = [await self._read(client, dev.unit, reqs[0])]
            silent = False
            for i, (ok, payload) in enumerate(results, start=first):
                if not ok:
                    assert isinstance(payload, str)
                    reading.reason = payload
                    # the device is silent: the rest would only wait too
                    silent = silent or payload.startswith(("timeout", "io"))
                    if not payload.startswith(("exception 0x0a", "exception 0x0b", "timeout", "io")):
                        reading.answered = True
                    continue
                assert not isinstance(payload, str)
                reading.answered = True
                reading.blocks[i] = payload
            if silent:
                break
        return reading

    def settle(self, readings: Sequence[_Reading]) -> None:
        """Decode readings, one matrix per read plan and request, and hand the batches over together."""
        if len(readings) == 1 and all(b is not None for b in readings[0].blocks):
            batches = [self._settle_one(readings[0])]
        else:
            batches = self._settle_many(readings)
        self.bus.publish_many(batches)
        done = time.perf_counter()
        for r in readings:
            self._latency.observe(done - r.started)
            self._judge(r)

    @staticmethod
    def _settle_one(r: _Reading) -> SampleBatch:
        """A device settled alone that answered every read (a lone device, ``pipeline: 1``, a poll
        of its own): ``_settle_many``'s batch without its matrices, each block decoded into its
        columns (tests/test_modbus_settle.py holds the two alike)."""
        plan = r.dev.plan
        values = np.empty(len(plan.points))
        for req, columns, block in zip(plan.requests, plan.slices, r.blocks, strict=True):
            req.codec.decode(block, out=values[columns])  # type: ignore[arg-type]
        quality = np.zeros(len(values), dtype=np.int8)  # Quality.GOOD
        if not unmarked(values, plan.floor, plan.ceiling):
            mark_quality(values, quality, plan.low, plan.high)
        return SampleBatch(r.ts, r.dev.asset, plan.points, values, quality)

    @staticmethod
    def _settle_many(readings: Sequence[_Reading]) -> list[SampleBatch]:
        """Readings decoded one matrix per read plan and request; a row of ``comm_error`` for a
        block a device did not answer."""
        by_plan: dict[int, list[_Reading]] = {}
        for r in readings:
            by_plan.setdefault(id(r.dev.plan), []).append(r)
        batches = []
        for group in by_plan.values():
            plan = group[0].dev.plan
            values = np.full((len(group), len(plan.points)), math.nan)
            quality = np.full(values.shape, int(Quality.COMM_ERROR), dtype=np.int8)
            for i, req in enumerate(plan.requests):
                rows = [k for k, r in enumerate(group) if r.blocks[i] is not None]
                if rows:
                    blocks = [group[k].blocks[i] for k in rows]
                    block = blocks[0][None] if len(blocks) == 1 else np.stack(blocks)  # type: ignore[index,arg-type]
                    # Every device answered (the usual case): a plain slice, ~4 µs less than a fancy index.
                    where: slice | list[int] = slice(None) if len(rows) == len(group) else rows
                    values[where, plan.slices[i]] = req.codec.decode(block)
                    quality[where, plan.slices[i]] = int(Quality.GOOD)
            if not unmarked(values, plan.floor, plan.ceiling):
                mark_quality(values, quality, plan.low, plan.high)
            batches += [
                SampleBatch(r.ts, r.dev.asset, plan.points, values[k], quality[k])
                for k, r in enumerate(group)
            ]
        return batches

    def _judge(self, r: _Reading) -> None:
        """A device that answered after an outage, or fell silent: log it, say it, count it."""
        dev = r.dev
        if r.answered == dev.online:
            return
        dev.online = r.answered
        dev.info_due = r.answered  # back after an outage: it may be another device now
        if r.answered:
            log.info("modbus %s unit %d (%s): back online", self.name, dev.unit, dev.asset)
        else:
            log.warning("modbus %s unit %d (%s): offline: %s", self.name, dev.unit, dev.asset, r.reason)
        self.bus.publish_health(
            HealthChange(r.ts, dev.asset, r.answered, r.reason if not r.answered else "ok")
        )
        self.metrics.devices_offline.labels("modbus").inc(-1 if r.answered else 1)

    async def _read_info(self, client: Client | TcpLink, dev: ModbusDevice) -> bool:
        """Read a device's ASCII facts, log what changed, expose them as ``monitord_device_info``.

        Done when the device first answers and each time it comes back from an outage. A fact that
        is refused or not text is warned about and left out; it never becomes a sample. False when
        the device did not answer (tried again at the next poll)."""
        for name, spec in dev.info.items():
            req = ReadRequest(spec.kind, spec.address, spec.registers, RegisterCodec(spec.address, 0, ()))
            ok, payload = await self._read(client, dev.unit, req)
            where = f"modbus {self.name} unit {dev.unit} ({dev.asset})"
            if not ok:
                assert isinstance(payload, str)
                if payload.startswith(_DROPPED):  # the line was closed
                    return False
                log.warning("%s: cannot read %s: %s", where, name, payload)
                continue
            assert not isinstance(payload, str)
            try:
                text = decode_ascii(payload, spec.order)
            except ValueError as exc:
                self.metrics.driver_errors.labels("modbus", "decode").inc()
                log.warning("%s: %s is not text (%s); check the profile's info map", where, name, exc)
                continue
            old = dev.facts.get(name)
            if old != text:
                log.info("%s: %s = %r", where, name, text)
                if old is not None:
                    self.metrics.device_info.remove(dev.asset, name, old)
                self.metrics.device_info.labels(dev.asset, name, text).set(1)
                dev.facts[name] = text
        dev.info_due = False
        return True

    async def _read(
        self, client: Client | TcpLink, unit: int, req: ReadRequest
    ) -> tuple[bool, Payload | str]:
        """One request; on an RTU line, after the silence that must precede it."""
        if isinstance(client, TcpLink):
            return (await self._exchange(client, unit, (req,)))[0]
        loop = asyncio.get_running_loop()
        if (wait := self._quiet_at - loop.time()) > 0:
            await asyncio.sleep(wait)
        started = loop.time()
        try:
            return await self._request(client, unit, req)
        finally:
            self._quiet_at = loop.time() + self.line.gap
            self._busy += self._quiet_at - started

    async def _exchange(
        self, link: TcpLink, unit: int, reqs: Sequence[ReadRequest]
    ) -> list[tuple[bool, Payload | str]]:
        """One device's requests over our own Modbus TCP link, in flight together (others possibly
        beside them); a result per request, in order."""
        frames = [self._frame(unit, req) for req in reqs]
        started = time.perf_counter()
        try:
            answers = await self._send_all(link, frames)
            lost = [k for k, a in enumerate(answers) if isinstance(a, LinkLost)]
            if lost and all(a.collateral for a in answers if isinstance(a, LinkLost)):
                # Dropped for another device's fault: this one did nothing wrong, so what it lost
                # is asked again, once, on a new connection.
                self.metrics.driver_errors.labels("modbus", "dropped").inc(len(lost))
                again = await self._connected()
                if again is None or not isinstance(again, TcpLink):
                    return [
                        (False, "io error: no connection after the line was dropped")
                        if isinstance(a, LinkLost)
                        else self._take(link, unit, req, a)
                        for req, a in zip(reqs, answers, strict=True)
                    ]
                for k, a in zip(lost, await self._send_all(again, [frames[k] for k in lost]), strict=True):
                    answers[k] = a
                link = again
        finally:
            self._busy += time.perf_counter() - started
        failed = [a for a in answers if isinstance(a, LinkLost)]
        why = ""
        if failed:
            # The device's own fault (or a second drop) is counted once; its reads lost with it fail
            # with the same reason, those answered before it are kept.
            why = self._lost(link, next((a for a in failed if not a.collateral), failed[0]))[1]
        return [
            (False, why) if isinstance(a, LinkLost) else self._take(link, unit, req, a)
            for req, a in zip(reqs, answers, strict=True)
        ]

    def _frame(self, unit: int, req: ReadRequest) -> bytes:
        key = (unit, req.kind, req.start, req.count)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = request_frame(req.kind, unit, req.start, req.count)
        return frame

    @staticmethod
    async def _send_all(link: TcpLink, frames: Sequence[bytes]) -> list[Answer | LinkLost]:
        """Put every frame on the wire at once, then wait for their replies (or failures)."""
        if len(frames) == 1:
            try:
                return [await link.send(frames[0])]
            except LinkLost as lost:
                return [lost]
        futures = link.send_many(frames)
        answers: list[Answer | LinkLost] = []
        for fut in futures:
            try:
                answers.append(await fut)
            except LinkLost as lost:
                answers.append(lost)
        return answers

    def _lost(self, link: TcpLink, lost: LinkLost) -> tuple[bool, str]:
        kind = lost.reason.split(" ", 1)[0].split(":")[0]
        self.metrics.driver_errors.labels("modbus", kind if kind in ("timeout", "protocol") else "io").inc()
        log.debug("modbus %s: connection dropped: %s", self.name, lost.reason)
        self._close(link)
        return False, lost.reason

    def _take(self, link: TcpLink, unit: int, req: ReadRequest, answer: Answer) -> tuple[bool, Payload | str]:
        """A reply on our link: its registers or bits, or why they cannot be taken."""
        if answer.function & 0x80:
            return False, self._refused(unit, req, answer.exception_code())
        if answer.function != _FUNCTION[req.kind]:
            link.close("protocol error: a reply under another function code", culprit=0)
            return self._protocol_error(link, unit, req, answer.function)
        if req.kind in BIT_KINDS:
            data = np.array(answer.bits()[: req.count], dtype=np.uint16)
        else:
            size = answer.data[0] if answer.data else -1
            if not 0 <= size <= len(answer.data) - 1:
                self.metrics.driver_errors.labels("modbus", "protocol").inc()
                link.close("protocol error: no byte count, or one beyond the frame", culprit=0)
                self._close(link)
                return False, "protocol error: no byte count, or one beyond the frame"
            # Big-endian words straight from the frame: the codec converts a whole matrix of them at once.
            data = np.frombuffer(answer.data, ">u2", min(size, 2 * req.count) // 2, 1)
        if len(data) < req.count:
            self.metrics.driver_errors.labels("modbus", "short_reply").inc()
            return False, "short reply"
        return True, data

    def _refused(self, unit: int, req: ReadRequest, code: int) -> str:
        """An exception reply: counted, logged at debug, its reason."""
        self.metrics.driver_errors.labels("modbus", "exception").inc()
        log.debug(
            "modbus %s unit %d: exception 0x%02x reading %s %d+%d",
            self.name,
            unit,
            code,
            req.kind,
            req.start,
            req.count,
        )
        return f"exception 0x{code:02x}"

    def _protocol_error(
        self, client: Client | TcpLink, unit: int, req: ReadRequest, answered_with: int
    ) -> tuple[bool, str]:
        """A reply under another function code: an FC04 answer to an FC03 request carries other
        registers, so it is never taken as ours, and the stream cannot be trusted any more."""
        self.metrics.driver_errors.labels("modbus", "protocol").inc()
        self._close(client)
        log.debug(
            "modbus %s unit %d: reply with function 0x%02x to a 0x%02x read of %s %d+%d",
            self.name,
            unit,
            answered_with,
            _FUNCTION[req.kind],
            req.kind,
            req.start,
            req.count,
        )
        return False, f"protocol error: function 0x{answered_with:02x} answered 0x{_FUNCTION[req.kind]:02x}"

    async def _request(self, client: Client, unit: int, req: ReadRequest) -> tuple[bool, Payload | str]:
        """One request through the pymodbus client (RTU lines), one at a time."""
        method = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[req.kind]
        try:
            async with asyncio.timeout(self.timeout * 1.5):
                rr = await method(req.start, count=req.count, device_id=unit)
        except TimeoutError:
            self.metrics.driver_errors.labels("modbus", "timeout").inc()
            self._close(client)  # a late reply must never answer the next request
            return False, "timeout"
        except ModbusException as exc:
            self.metrics.driver_errors.labels("modbus", "io").inc()
            self._close(client)
            return False, f"io error: {exc}"
        if rr.isError():
            return False, self._refused(unit, req, int(getattr(rr, "exception_code", 0)))
        answered_with = int(getattr(rr, "function_code", 0)) & 0x7F
        if answered_with != _FUNCTION[req.kind]:
            return self._protocol_error(client, unit, req, answered_with)
        data = np.array(
            rr.bits[: req.count] if req.kind in BIT_KINDS else rr.registers[: req.count], dtype=np.uint16
        )
        if len(data) < req.count:
            self.metrics.driver_errors.labels("modbus", "short_reply").inc()
            return False, "short reply"
        return True, data


class ModbusDriver:
    def __init__(self, pollers: list[GatewayPoller]) -> None:
        self.pollers = pollers

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for p in self.pollers:
                tg.create_task(p.run(), name=f"modbus-{p.name}")

    def close(self) -> None:
        for p in self.pollers:
            with contextlib.suppress(Exception):
                p._close()
