"""Modbus lines: where the poller's requests go, and how much a serial line can carry.

Sits under ``drivers.modbus`` (the poller) and is used by config for its checks.
A ``Line`` is one Modbus master's medium: a Modbus TCP endpoint, a serial port
(RTU), or a transparent serial server reached over TCP with RTU framing. It
makes the pymodbus client, knows the silent gap a serial line needs between
frames, and turns a device's read plan into time on the wire, from which
``monitord check`` and the poller's utilisation gauge work out the line's budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from monitord.ingest.registers import BIT_KINDS

try:
    import termios

    #: What opening a serial port with settings it refuses raises besides OSError (pyserial lets
    #: termios.error through, e.g. parity on a Linux pty).
    SERIAL_SETUP_ERRORS: tuple[type[Exception], ...] = (termios.error, ValueError)
except ImportError:  # not POSIX
    SERIAL_SETUP_ERRORS = (ValueError,)

LineKind = Literal["tcp", "rtu-tcp", "serial"]
#: The rates serial ports and Modbus devices offer; anything else is a typo that would never talk.
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)
#: Assumed time a device takes between the end of a request and the start of its reply. Real meters
#: answer in 5-50 ms; the budget takes a modest 10 ms so that a warning means a real shortage.
TURNAROUND = 0.010
# Modbus over serial line spec (V1.02, 2.5.1.1): above 19200 baud the gaps are fixed.
_FIXED_GAP_ABOVE = 19200
_FIXED_GAP = 0.00175
# An RTU read request: unit, function, start (2), count (2), CRC (2).
_RTU_REQUEST = 8
# An RTU read reply: unit, function, byte count, data, CRC (2).
_RTU_REPLY_OVERHEAD = 5


@dataclass(frozen=True)
class Line:
    """One Modbus master's medium and its serial settings (unused for plain TCP)."""

    kind: LineKind
    port: int | str
    host: str = ""
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8
    #: Requests the master may have in flight at once (Modbus TCP only, matched by transaction id).
    pipeline: int = 1

    @classmethod
    def tcp(cls, host: str, port: int, pipeline: int = 1) -> Line:
        return cls("tcp", port, host, pipeline=pipeline)

    @property
    def name(self) -> str:
        if self.kind == "serial":
            return str(self.port)
        return f"{self.host}:{self.port}" + ("/rtu" if self.kind == "rtu-tcp" else "")

    @property
    def key(self) -> tuple[str, int | str]:
        """What makes two assets' lines one line: the same endpoint or the same serial port."""
        return (self.host, self.port)

    @property
    def rtu(self) -> bool:
        return self.kind != "tcp"

    @property
    def settings(self) -> tuple[int, str, int, int]:
        """What every device on one serial line must agree on."""
        return (self.baudrate, self.parity, self.stopbits, self.bytesize)

    @property
    def char_time(self) -> float:
        """Seconds one character takes on the wire: start bit, data bits, parity, stop bits."""
        bits = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return bits / self.baudrate

    @property
    def gap(self) -> float:
        """The silence that ends an RTU frame and must pass before the next one (0 for TCP)."""
        if not self.rtu:
            return 0.0
        return _FIXED_GAP if self.baudrate > _FIXED_GAP_ABOVE else 3.5 * self.char_time

    def client(self, timeout: float, name: str) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """A pymodbus client for this line that never retries or reconnects on its own."""
        # No retries, no reconnects of its own: the poller decides (timeouts close, backoff reconnects).
        own: dict[str, Any] = {"timeout": timeout, "retries": 0, "reconnect_delay": 0, "name": name}
        if self.kind == "serial":
            return AsyncModbusSerialClient(
                str(self.port),
                framer=FramerType.RTU,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
                bytesize=self.bytesize,
                **own,
            )
        framer = FramerType.RTU if self.rtu else FramerType.SOCKET
        return AsyncModbusTcpClient(self.host, port=int(self.port), framer=framer, **own)

    def asset_id(self) -> str:
        """The id of the synthetic ``gateway`` asset watching a line with several devices."""
        if self.kind == "serial":
            return "GW-" + re.sub(r"[^A-Za-z0-9_.\-]", "_", str(self.port).removeprefix("/dev/"))
        return f"GW-{self.host}-{self.port}"

    def frame_time(self, kind: str, count: int) -> float:
        """Seconds the request and reply frames of one read of ``count`` registers or bits take."""
        data = math.ceil(count / 8) if kind in BIT_KINDS else 2 * count
        return (_RTU_REQUEST + _RTU_REPLY_OVERHEAD + data) * self.char_time

    def read_time(self, kind: str, count: int) -> float:
        """Seconds one read holds an RTU line: both frames, the gap after each, the device's turnaround."""
        return self.frame_time(kind, count) + 2 * self.gap + TURNAROUND


@dataclass(frozen=True)
class Demand:
    """One device on a line: its reads (kind, count) and how often they are made."""

    asset: str
    reads: Sequence[tuple[str, int]]
    interval: float


@dataclass(frozen=True)
class Budget:
    """What a serial line's configured polling asks of it."""

    line: Line
    poll_seconds: float  # line time for one poll of every device
    demand: float  # polls per second the configuration asks for
    capacity: float  # polls per second the line can carry at that mix

    @property
    def utilisation(self) -> float:
        """Fraction of the line's time the configured polls need (over 1: they cannot all happen)."""
        return self.demand / self.capacity if self.capacity else math.inf


def budget(line: Line, devices: Iterable[Demand]) -> Budget:
    """The line's budget for these devices, from their read plans."""
    devs = list(devices)
    times = [sum(line.read_time(k, n) for k, n in d.reads) for d in devs]
    busy = sum(t / d.interval for t, d in zip(times, devs, strict=True))  # seconds of line per second
    demand = sum(1 / d.interval for d in devs)
    return Budget(line, sum(times), demand, demand / busy if busy else math.inf)
