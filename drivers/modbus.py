"""Modbus driver (TCP, RTU on a serial port, RTU over TCP): plans merged reads and polls devices.

Sits before the ``SampleBus``. One ``GatewayPoller`` per line (a TCP endpoint,
a serial port, or a serial server reached over TCP; ``drivers.modbus_line``)
is that line's only master: one task, one request at a time (Modbus TCP devices,
RTU gateways and an RS-485 bus all expect that), with the silent gap an RTU
line needs between frames, for every unit id on it. Lines are independent
tasks, so a slow or dead device holds up only its own line. Reads are planned
once at start-up: a profile's registers are merged over small gaps into as
few requests as the device's limit allows. Each poll of a device becomes one ``SampleBatch``; a failed read
becomes ``comm_error`` samples and, once per outage, an offline health change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile, InfoSpec, ModbusSettings
from monitord.ingest.registers import BIT_KINDS, PointEncoding, RegisterCodec, decode_ascii

from .modbus_line import SERIAL_SETUP_ERRORS, Line

log = logging.getLogger(__name__)
# Exception codes that mean "the device behind the gateway did not answer".
_UNREACHABLE = {0x0A, 0x0B}
# What a failed connect may raise: a refused or missing endpoint, or a serial port's settings refused.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (OSError, ModbusException, *SERIAL_SETUP_ERRORS)
# The function code each kind of read is asked, and must be answered, with.
_FUNCTION = {"coil": 0x01, "discrete": 0x02, "holding": 0x03, "input": 0x04}


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


@dataclass
class ModbusDevice:
    """One asset behind a gateway, with its read plan and health."""

    asset: str
    unit: int
    interval: float
    requests: list[ReadRequest]
    low: np.ndarray
    high: np.ndarray
    pause: float = 0.0
    points: tuple[str, ...] = ()
    online: bool = True
    next_due: float = 0.0
    info: dict[str, InfoSpec] = field(default_factory=dict)  # ASCII facts, read when it (re)appears
    facts: dict[str, str] = field(default_factory=dict)  # what they read last
    info_due: bool = True
    _slices: list[slice] = field(default_factory=list)

    @classmethod
    def from_profile(cls, asset: str, unit: int, interval: float, profile: DeviceProfile) -> ModbusDevice:
        settings = profile.modbus or ModbusSettings()
        requests = plan_reads(profile.modbus_encodings(), settings)
        names = tuple(n for r in requests for n in r.codec.names)
        specs = [profile.points[n] for n in names]
        low = np.array([-math.inf if s.min is None else s.min for s in specs])
        high = np.array([math.inf if s.max is None else s.max for s in specs])
        dev = cls(asset, unit, interval, requests, low, high, settings.pause, names, info=dict(profile.info))
        offset = 0
        for r in requests:
            dev._slices.append(slice(offset, offset + len(r.codec.names)))
            offset += len(r.codec.names)
        return dev


Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class GatewayPoller:
    """Polls every device on one line (by default the TCP endpoint host:port), one request at a time."""

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
        self._client: Client | None = None
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

    @property
    def name(self) -> str:
        return self.line.name

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        try:
            while True:
                now = loop.time()
                due = [d for d in self.devices if d.next_due <= now]
                for dev in due:
                    await self.poll(dev)
                    dev.next_due = max(dev.next_due + dev.interval, loop.time())
                    # Python 3.11's wait_for (inside pymodbus) can swallow a cancellation that
                    # arrives with the reply; honour it here so that shutdown never hangs.
                    if me is not None and me.cancelling():
                        raise asyncio.CancelledError
                if due and self.gateway_asset:
                    self._report_gateway()
                self._report_utilisation(loop.time())
                wait = min(d.next_due for d in self.devices) - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            self._close()

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

    async def _connected(self) -> Client | None:
        if self._client is not None and self._client.connected:
            return self._client
        if time.monotonic() < self._next_connect:
            return None
        self._close()
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

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def poll(self, dev: ModbusDevice) -> None:
        """Read one device completely and publish one batch; never raises."""
        started = time.perf_counter()
        ts = self.clock.now()
        values = np.full(len(dev.points), math.nan)
        quality = np.full(len(dev.points), int(Quality.COMM_ERROR), dtype=np.int8)
        answered = False
        reason = "no connection"
        for i, req in enumerate(dev.requests):
            client = await self._connected()
            if client is None:
                break
            if dev.info and dev.info_due and not await self._read_info(client, dev):
                reason = "no reply to the info read"
                break  # silent: the numeric reads would only wait too
            if i and dev.pause:
                await asyncio.sleep(dev.pause)
            ok, payload = await self._read(client, dev.unit, req)
            if not ok:
                reason = str(payload)
                if reason.startswith("timeout") or reason.startswith("io"):
                    break  # the device is silent; the rest would only wait too
                if not reason.startswith("exception 0x0a") and not reason.startswith("exception 0x0b"):
                    answered = True
                continue
            answered = True
            sl = dev._slices[i]
            assert not isinstance(payload, str)
            decoded = req.codec.decode(payload)
            values[sl] = decoded
            quality[sl] = int(Quality.GOOD)
        bad = ~np.isfinite(values) & (quality == Quality.GOOD)
        quality[bad] = int(Quality.DECODE_ERROR)
        outside = (quality == Quality.GOOD) & ((values < dev.low) | (values > dev.high))
        quality[outside] = int(Quality.OUT_OF_RANGE)
        self.metrics.poll_latency.labels("modbus").observe(time.perf_counter() - started)
        self.bus.publish(SampleBatch(ts, dev.asset, dev.points, values, quality))
        if answered != dev.online:
            dev.online = answered
            dev.info_due = answered  # back after an outage: it may be another device now
            if answered:
                log.info("modbus %s unit %d (%s): back online", self.name, dev.unit, dev.asset)
            else:
                log.warning("modbus %s unit %d (%s): offline: %s", self.name, dev.unit, dev.asset, reason)
            self.bus.publish_health(HealthChange(ts, dev.asset, answered, reason if not answered else "ok"))
            self.metrics.devices_offline.labels("modbus").inc(-1 if answered else 1)

    async def _read_info(self, client: Client, dev: ModbusDevice) -> bool:
        """Read a device's ASCII facts, log what changed, expose them as ``monitord_device_info``.

        Done when the device first answers and each time it comes back from an outage. A fact that
        is refused or not text is warned about and left out; it never becomes a sample. False when
        the device did not answer (tried again at the next poll)."""
        for name, spec in dev.info.items():
            req = ReadRequest(spec.kind, spec.address, spec.registers, RegisterCodec(spec.address, 0, ()))
            ok, payload = await self._read(client, dev.unit, req)
            where = f"modbus {self.name} unit {dev.unit} ({dev.asset})"
            if not ok:
                if self._client is None:  # timeout or I/O error: the line was closed
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

    async def _read(self, client: Client, unit: int, req: ReadRequest) -> tuple[bool, list[int] | str]:
        """One request; on an RTU line, after the silence that must precede it."""
        loop = asyncio.get_running_loop()
        if (wait := self._quiet_at - loop.time()) > 0:
            await asyncio.sleep(wait)
        started = loop.time()
        try:
            return await self._request(client, unit, req)
        finally:
            self._quiet_at = loop.time() + self.line.gap
            self._busy += self._quiet_at - started

    async def _request(self, client: Client, unit: int, req: ReadRequest) -> tuple[bool, list[int] | str]:
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
            self._close()  # a late reply must never answer the next request
            return False, "timeout"
        except ModbusException as exc:
            self.metrics.driver_errors.labels("modbus", "io").inc()
            self._close()
            return False, f"io error: {exc}"
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
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
            return False, f"exception 0x{code:02x}"
        answered_with = int(getattr(rr, "function_code", 0)) & 0x7F
        if answered_with != _FUNCTION[req.kind]:
            # An FC04 answer to an FC03 request carries other registers: never take it as ours.
            self.metrics.driver_errors.labels("modbus", "protocol").inc()
            self._close()  # the stream cannot be trusted to be in step any more
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
            return (
                False,
                f"protocol error: function 0x{answered_with:02x} answered 0x{_FUNCTION[req.kind]:02x}",
            )
        data = list(rr.bits[: req.count] if req.kind in BIT_KINDS else rr.registers)
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
