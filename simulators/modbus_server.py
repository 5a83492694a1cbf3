"""Serve simulated devices over real Modbus: TCP, RTU on a serial port, RTU over TCP.

One server per line (``drivers.modbus_line.Line``): a ``ModbusTcpServer`` per
host:port, every device behind it by unit id, as an RTU gateway would; the same
with RTU framing for a transparent serial server; a ``ModbusSerialServer`` on a
serial port (in tests, one end of a socat pty pair). On RTU lines a unit nobody
simulates gets no reply, as on a real bus, and each reply is held for the time
its request and reply frames would take on the wire at the line's baud rate
(a pty carries bytes at memory speed), so RTU timing is what a real bus allows.
Registers are encoded from the model on each read with the same
``RegisterCodec`` the driver decodes with. Device quirks from the
profile are enforced: a request over the device's limit or (SDM630) with an
odd count gets an exception. Faults: ``offline`` answers 0x0B (gateway: target
failed to respond); ``silent`` does not answer at all; on an RTU line neither
answers (no gateway, and no late reply on a shared bus).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException, NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from monitord.drivers.modbus_line import TURNAROUND, Line
from monitord.ingest.profiles import DeviceProfile, ModbusSettings
from monitord.ingest.registers import BIT_KINDS, PointEncoding, RegisterCodec, encode_ascii

from .models import Equipment

log = logging.getLogger(__name__)
_KIND_OF_FC = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_BLOCK_ORDER = ("coil", "discrete", "holding", "input")
# What pymodbus's register read requests accept (ReadHoldingRegistersRequest.MAX_COUNT).
_MAX_READ = 125
_READ = struct.Struct(">HHHBBHH")  # a read request ADU: MBAP, function, address, count
_MBAP = struct.Struct(">HHHB")


@dataclass
class _Image:
    """All registers of one kind for one device: points encoded from the model, fixed strings laid over.

    Encoded again only when the model's values changed since the last read (a dict comparison,
    ~1 µs, against ~20 µs for an encode): the physics steps five times a second, a busy master
    reads far more often."""

    codec: RegisterCodec
    strings: list[tuple[int, np.ndarray]]  # (address, registers) of the profile's info strings
    _seen: dict[str, float] | None = None
    _words: np.ndarray | None = None
    _wire: bytes = b""
    _strings_seen: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def encode(self, values: dict[str, float]) -> np.ndarray:
        """The registers (do not modify them: they are kept for the next read)."""
        if self._words is not None and values == self._seen and self._same_strings():
            return self._words
        words = self.codec.encode([values.get(n, 0.0) for n in self.codec.names])
        for address, text in self.strings:
            words[address : address + len(text)] = text
        self._seen, self._words, self._wire = dict(values), words, words.astype(">u2").tobytes()
        self._strings_seen = list(self.strings)
        return words

    def _same_strings(self) -> bool:
        """The info strings laid over are the ones encoded last (a meter swapped changes them)."""
        seen = self._strings_seen
        return len(seen) == len(self.strings) and all(a is b for a, b in zip(seen, self.strings, strict=True))

    def wire(self, values: dict[str, float], address: int, count: int) -> bytes:
        """Registers ``address`` .. ``address + count`` as they go on the wire (big-endian words)."""
        self.encode(values)
        return self._wire[2 * address : 2 * (address + count)]

    @property
    def size(self) -> int:
        return self.codec.count


class SimulatedModbusDevice:
    """``info`` gives the profile's ASCII facts (default ``SIM-<asset>``, cut to fit)."""

    def __init__(
        self, unit: int, profile: DeviceProfile, model: Equipment, info: dict[str, str] | None = None
    ) -> None:
        self.unit, self.profile, self.model = unit, profile, model
        self.settings = profile.modbus or ModbusSettings()
        by_kind: dict[str, list[PointEncoding]] = {}
        for p in profile.modbus_encodings():
            by_kind.setdefault(p.kind, []).append(p)
        strings: dict[str, list[tuple[int, np.ndarray]]] = {}
        for name, spec in profile.info.items():
            text = (info or {}).get(name, f"SIM-{model.asset}"[: 2 * spec.registers])
            strings.setdefault(spec.kind, []).append(
                (spec.address, encode_ascii(text, spec.registers, spec.order))
            )
        self.images: dict[str, _Image] = {}
        for kind in by_kind.keys() | strings.keys():
            pts, texts = by_kind.get(kind, []), strings.get(kind, [])
            end = max([p.address + p.words for p in pts] + [a + len(t) for a, t in texts])
            self.images[kind] = _Image(RegisterCodec(0, end, pts), texts)
        self.requests = 0
        self.resumed = asyncio.Event()
        self.wire: Line | None = None  # an RTU line whose timing replies keep

    @property
    def mute(self) -> bool:
        """On an RTU line an unpowered or hung device just does not answer: there is no gateway to
        say 0x0B, and a reply it sends late would land in the middle of another unit's exchange."""
        return self.wire is not None and self.wire.rtu and bool({"offline", "silent"} & self.model.faults)

    async def _on_the_wire(self, kind: str, count: int) -> None:
        """Hold a reply for the time its frames and the device's turnaround take on a serial line."""
        if self.wire is not None and self.wire.rtu:
            # The device knows the request is over only after a gap of silence, then turns round.
            await asyncio.sleep(self.wire.frame_time(kind, count) + self.wire.gap + TURNAROUND)

    def answer_now(self, function: int, address: int, count: int) -> bytes | None:
        """The reply PDU to a register read, framed straight from the register image; None when
        pymodbus's server must answer it (a bit read, a write, an address outside the image, a
        count pymodbus refuses, a device that stays silent). Gives what ``_action`` and pymodbus
        would: 0x0B when offline, 0x03 over the device's limit or for an odd count (SDM630)."""
        kind = _KIND_OF_FC.get(function)
        img = self.images.get(kind) if kind in ("holding", "input") else None
        if (
            img is None
            or not 1 <= count <= _MAX_READ
            or address + count > img.size
            or self.mute
            or "silent" in self.model.faults
        ):
            return None
        self.requests += 1
        if "offline" in self.model.faults:
            return bytes((function | 0x80, ExcCodes.GATEWAY_NO_RESPONSE))
        if count > self.settings.max_registers or (self.settings.even_count and count % 2):
            return bytes((function | 0x80, ExcCodes.ILLEGAL_VALUE))
        return bytes((function, 2 * count)) + img.wire(self.model.values, address, count)

    def sim_device(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for kind in _BLOCK_ORDER:
            img = self.images.get(kind)
            size = img.codec.count if img else 1
            if kind in BIT_KINDS:
                blocks.append(
                    [SimData(0, count=(size + 15) // 16 * 16, values=False, datatype=DataType.BITS)]
                )
            else:
                blocks.append([SimData(0, count=size, values=0, datatype=DataType.REGISTERS)])
        return SimDevice(self.unit, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]), action=self._action)

    async def _action(
        self,
        func_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if self.mute:
            return None  # an RTU line: the server drops the reply (ModbusSimServer._on_the_bus)
        if "offline" in self.model.faults:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if "silent" in self.model.faults:
            self.resumed.clear()
            try:
                async with asyncio.timeout(30):
                    await self.resumed.wait()  # answer only once the fault clears, as a hung device might
            except TimeoutError:
                pass
        kind = _KIND_OF_FC.get(func_code)
        if kind is None or set_values is not None:
            return None
        await self._on_the_wire(kind, count)
        if kind in BIT_KINDS:
            if count > self.settings.max_bits:
                return ExcCodes.ILLEGAL_VALUE
        else:
            if count > self.settings.max_registers:
                return ExcCodes.ILLEGAL_VALUE
            if self.settings.even_count and count % 2:
                return ExcCodes.ILLEGAL_VALUE
        img = self.images.get(kind)
        if img is None:
            return None
        words = img.encode(self.model.values)
        if kind in BIT_KINDS:
            # pymodbus keeps bits packed 16 to a register, least significant bit first
            bits = np.zeros((len(registers) - 1) * 16 if len(registers) > 1 else 16, dtype=np.uint16)
            bits[: len(words)] = words
            packed = (bits.reshape(-1, 16) << np.arange(16, dtype=np.uint16)).sum(axis=1)
            registers[: len(packed)] = [int(x) for x in packed]
        else:
            registers[: len(words)] = words.tolist()
        return None


class _PipelinedHandler(ServerRequestHandler):
    """One Modbus TCP connection that answers every request in the stream, several in flight.

    pymodbus's handler takes one frame per read from the socket and answers from one ``last_pdu``
    slot: requests sent back to back (a master pipelining transactions, as a Modbus TCP gateway
    allows) would wait for more bytes, or be answered with another's transaction id. Here each
    frame is its own task, answered under its own transaction id as soon as its device answers,
    so a slow unit does not hold up the others on the connection (replies may come out of order)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(transport)
        if self.server.closed:  # accepted from the backlog after shutdown: nobody would close it
            transport.abort()  # type: ignore[attr-defined]

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        fast: list[bytes] = []
        try:
            return self._take(data, addr, fast)
        finally:  # also after an undecodable request, which ends the read
            if fast and isinstance(self.transport, asyncio.WriteTransport):
                self.transport.write(b"".join(fast))  # the replies of one read of the socket in one write

    def _take(self, data: bytes, addr: tuple[str, int] | None, fast: list[bytes]) -> int:
        """Answer every whole request in ``data`` (register reads into ``fast``); the bytes used."""
        used = 0
        units: dict[int, SimulatedModbusDevice] = self.server.units
        while used < len(data):
            if len(data) - used >= _READ.size:
                # A register read of a device with an image: the reply is framed here, straight from
                # its registers, without pymodbus's request objects, task and datastore per request.
                tid, protocol, length, unit, function, address, count = _READ.unpack_from(data, used)
                dev = units.get(unit)
                if protocol == 0 and length == 6 and dev is not None:
                    reply = dev.answer_now(function, address, count)
                    if reply is not None:
                        fast.append(_MBAP.pack(tid, 0, len(reply) + 1, unit) + reply)
                        used += _READ.size
                        continue
            try:
                size, pdu = self.framer.handleFrame(data[used:], 0, 0)
            except ModbusIOException as exc:  # an undecodable request: refused, as pymodbus does
                refusal = ExceptionResponse(exc.fcode or 0, ExcCodes.ILLEGAL_FUNCTION)
                refusal.transaction_id, refusal.dev_id = exc.transaction_id, exc.dev_id
                self.server_send(refusal, addr)  # type: ignore[no-untyped-call]
                return len(data)
            if not size:
                break
            used += size
            if pdu is not None:
                task = asyncio.get_running_loop().create_task(self._answer(pdu, addr))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return used

    @functools.cached_property
    def _tasks(self) -> set[asyncio.Task[None]]:
        return set()

    async def _answer(self, request: ModbusPDU, addr: tuple[str, int] | None) -> None:
        try:
            response = await request.datastore_update(self.server.context, request.dev_id)
        except NoSuchIdException:
            response = ExceptionResponse(request.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        except Exception:  # a broken model answers "device failure", as pymodbus's handler does
            log.exception("simulated unit %d cannot answer", request.dev_id)
            response = ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)
        if self.transport is None or self.transport.is_closing():
            return  # the master hung up meanwhile
        response.transaction_id, response.dev_id = request.transaction_id, request.dev_id
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _PipelinedTcpServer(ModbusTcpServer):
    """``units``: the devices whose register reads are answered straight from their images (empty:
    everything through pymodbus's machinery, as the tests compare against)."""

    def __init__(self, *args: Any, units: dict[int, SimulatedModbusDevice], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.units = units
        self.connections: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self.closed = False

    async def shutdown(self) -> None:
        """pymodbus closes its connections gracefully: one whose peer stopped reading keeps its
        socket until garbage collection ("unclosed transport"). Every connection ends here."""
        self.closed = True
        await super().shutdown()  # type: ignore[no-untyped-call]
        for transport in list(self.connections):
            transport.abort()  # type: ignore[attr-defined]
        await asyncio.sleep(0)  # their connection_lost, which closes the sockets, runs now

    def callback_new_connection(self) -> ServerRequestHandler:
        return _PipelinedHandler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect
        )


class ModbusSimServer:
    """Every simulated device on one line: a TCP endpoint by default, or the given RTU ``line``."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[SimulatedModbusDevice],
        line: Line | None = None,
        *,
        fast: bool = True,
    ) -> None:
        """``fast``: on a Modbus TCP line, register reads are answered straight from the devices'
        images (False: every request through pymodbus's server, the reference the tests compare with)."""
        self.host, self.port, self.devices, self.fast = host, port, devices, fast
        self.line = line or Line.tcp(host, port)
        for d in devices:
            d.wire = self.line

    @property
    def name(self) -> str:
        return self.line.name

    async def run(self, started: Callable[[], None] | None = None) -> None:
        # pymodbus binds its server to the running loop, so it is made here.
        line, sims = self.line, [d.sim_device() for d in self.devices]
        server: ModbusSerialServer | ModbusTcpServer
        if line.kind == "serial":
            server = ModbusSerialServer(
                sims,
                port=str(line.port),
                baudrate=line.baudrate,
                parity=line.parity,
                stopbits=line.stopbits,
                bytesize=line.bytesize,
                trace_packet=self._on_the_bus,
            )
        elif line.rtu:  # a serial server: one request at a time, as the bus behind it
            server = ModbusTcpServer(
                sims, address=(self.host, self.port), framer=FramerType.RTU, trace_packet=self._on_the_bus
            )
        else:
            units = {d.unit: d for d in self.devices} if self.fast else {}
            server = _PipelinedTcpServer(
                sims, address=(self.host, self.port), framer=FramerType.SOCKET, units=units
            )
        if not await server.listen():
            raise OSError(f"modbus simulator cannot listen on {line.name}")
        if started:
            started()
        try:
            await asyncio.Event().wait()
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]

    def _on_the_bus(self, sending: bool, packet: bytes) -> bytes:
        """On an RTU line, a unit no device has, or a mute one, sends no reply at all (pymodbus
        would send one)."""
        if sending and packet and not any(d.unit == packet[0] and not d.mute for d in self.devices):
            return b""
        return packet

    def resume(self) -> None:
        for d in self.devices:
            d.resumed.set()
