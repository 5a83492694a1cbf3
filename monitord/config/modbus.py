"""The ``connection.modbus`` schema and the checks of Modbus lines; part of the site config.

Sits in config beside ``site`` (which composes it). One connection names its
transport — Modbus TCP, RTU on a serial port, RTU over TCP — and yields the
driver's ``Line``; ``check_lines`` finds what assets sharing a line disagree on,
``line_budget`` what their polling asks of an RTU line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from monitord.config.yamlio import problem
from monitord.core.schema import Strict, in_range
from monitord.core.units import Duration
from monitord.drivers.modbus import plan_reads
from monitord.drivers.modbus_line import STANDARD_BAUDS, Budget, Demand, Line, budget
from monitord.ingest.profiles import DeviceProfile, ModbusSettings

Port = Annotated[int, in_range(1, 65535)]


def _standard_baud(v: int) -> int:
    if v not in STANDARD_BAUDS:
        rates = ", ".join(map(str, STANDARD_BAUDS))
        raise PydanticCustomError(
            "range", "must be a standard rate ({rates}), got {v}", {"rates": rates, "v": v}
        )
    return v


_SERIAL_KEYS = ("baudrate", "parity", "stopbits", "bytesize")


class ModbusConnection(Strict):
    """Modbus TCP (``host``, ``port``), RTU on a serial port (``port: /dev/ttyUSB0``, line settings),
    or RTU over TCP to a transparent serial server (``host``, ``port``, ``framer: rtu``)."""

    host: str | None = None
    port: Port = 502
    serial: str | None = Field(None, description="the serial device; written as port: /dev/ttyUSB0")
    framer: Literal["tcp", "rtu"] | None = None
    unit: Annotated[int, in_range(0, 247)] = 1
    timeout: Duration = 1.0
    pipeline: Annotated[int, in_range(1, 64)] = Field(
        1, description="requests in flight at once on this Modbus TCP connection (1: one at a time)"
    )
    baudrate: Annotated[int, AfterValidator(_standard_baud)] | None = None
    parity: Literal["N", "E", "O"] | None = None
    stopbits: Literal[1, 2] | None = None
    bytesize: Literal[7, 8] | None = None

    @model_validator(mode="before")
    @classmethod
    def _serial_port(cls, data: Any) -> Any:
        """``port: /dev/ttyUSB0`` (or ``COM3``) names a serial device, not a TCP port."""
        port = data.get("port") if isinstance(data, dict) else None
        if isinstance(port, str) and (port.startswith("/") or re.fullmatch(r"COM\d+", port)):
            data = {k: v for k, v in data.items() if k != "port"} | {"serial": port}
        return data

    @model_validator(mode="after")
    def _one_transport(self) -> ModbusConnection:
        given = [k for k in _SERIAL_KEYS if getattr(self, k) is not None]
        if self.serial is not None:
            if self.host is not None:
                raise PydanticCustomError(
                    "connection", "a serial line (port: {port}) has no host", {"port": self.serial}
                )
            if self.framer == "tcp":
                raise PydanticCustomError("connection", "a serial line speaks framer: rtu, not tcp")
        elif self.host is None:
            raise PydanticCustomError(
                "connection", "give host: (Modbus TCP, or framer: rtu for a serial server) or port: /dev/..."
            )
        elif given and self.framer != "rtu":
            raise PydanticCustomError(
                "connection",
                "serial settings ({keys}) on a Modbus TCP connection: for a serial port give "
                "port: /dev/ttyUSB0, for a serial server on TCP give framer: rtu",
                {"keys": ", ".join(given)},
            )
        if self.pipeline > 1 and (self.serial is not None or self.framer == "rtu"):
            raise PydanticCustomError(
                "connection",
                "pipeline: {n} needs Modbus TCP; an RTU line carries one request at a time",
                {"n": self.pipeline},
            )
        return self

    @property
    def line(self) -> Line:
        """The line this asset is polled on; devices on one line share one master."""
        if self.serial is None and self.framer != "rtu":
            assert self.host is not None  # _one_transport guarantees it
            return Line.tcp(self.host, self.port, self.pipeline)
        return Line(
            "serial" if self.serial is not None else "rtu-tcp",
            self.serial if self.serial is not None else self.port,
            self.host or "",
            baudrate=self.baudrate or 9600,
            parity=self.parity or "N",
            stopbits=self.stopbits or 1,
            bytesize=self.bytesize or 8,
        )


def check_lines(lines: Iterable[Sequence[tuple[int, str, ModbusConnection]]], raw: Any) -> list[str]:
    """Per line, (asset index, asset id, connection) of its assets: they must agree on framing and
    serial settings and not share a unit id (nor use 0, broadcast, on RTU). One problem per offending
    asset, at its key."""
    out: list[str] = []
    for assets in lines:
        first_id, first = assets[0][1], assets[0][2].line
        units: dict[int, str] = {}
        for i, asset, m in assets:
            at = ("assets", i, "connection", "modbus")
            line = m.line
            if line.pipeline != first.pipeline:
                out.append(
                    problem(
                        raw,
                        (*at, "pipeline"),
                        f"line {line.name} has pipeline: {first.pipeline} from asset {first_id!r}, "
                        f"here {line.pipeline}; one connection has one setting",
                    )
                )
            if line.kind != first.kind or (line.rtu and line.settings != first.settings):
                out.append(
                    problem(
                        raw,
                        at,
                        f"line {line.name} is set up as {_setup(first)} by asset {first_id!r}, "
                        f"here as {_setup(line)}; one line has one setting",
                    )
                )
            if line.rtu and m.unit == 0:
                out.append(
                    problem(
                        raw,
                        (*at, "unit"),
                        "unit 0 is broadcast on an RTU line: no device answers it (1..247)",
                    )
                )
            elif m.unit in units:
                out.append(
                    problem(
                        raw,
                        (*at, "unit"),
                        f"unit {m.unit} on line {line.name} is already asset {units[m.unit]!r}",
                    )
                )
            units.setdefault(m.unit, asset)
    return out


def _setup(line: Line) -> str:
    if not line.rtu:
        return "Modbus TCP"
    baud, parity, stop, size = line.settings
    return f"RTU {baud} {size}{parity}{stop}"


def line_budget(assets: Sequence[tuple[str, ModbusConnection, DeviceProfile, float]]) -> Budget:
    """(asset id, connection, profile, poll interval) of one RTU line's assets → its budget, from the
    read plans the driver will make."""
    demands = []
    for asset, _m, prof, interval in assets:
        reads = plan_reads(prof.modbus_encodings(), prof.modbus or ModbusSettings())
        demands.append(Demand(asset, [(r.kind, r.count) for r in reads], interval))
    return budget(assets[0][1].line, demands)
