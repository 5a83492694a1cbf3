"""A raw Modbus TCP server on a free port whose replies a test writes byte by byte.

For what a well-behaved simulator never sends: a reply with the wrong function code, a short or
garbled frame, a wrong transaction id, silence. ``reply(request)`` gets each request's whole ADU
(MBAP header + PDU) and returns the bytes to send back (``b""``: say nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from typing import Self

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from tests.support.net import free_port, run

Reply = Callable[[bytes], bytes]


def adu(request: bytes, pdu: bytes, *, tid: int | None = None) -> bytes:
    """An answer to ``request`` carrying ``pdu``, with the request's transaction id unless given."""
    req_tid, _proto, _length, unit = struct.unpack(">HHHB", request[:7])
    return struct.pack(">HHHB", req_tid if tid is None else tid, 0, len(pdu) + 1, unit) + pdu


def registers(request: bytes, function: int | None = None, value: int = 0x1234) -> bytes:
    """A register read's answer to ``request`` (every register ``value``), under ``function``."""
    fc, _start, count = struct.unpack(">BHH", request[7:12])
    data = struct.pack(f">{count}H", *([value] * count))
    return adu(request, struct.pack(">BB", fc if function is None else function, len(data)) + data)


class RawModbusServer:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.port = free_port()
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)
                length = struct.unpack(">H", header[4:6])[0]
                request = header + await reader.readexactly(length - 1)
                self.requests += 1
                answer = self.reply(request)
                if answer:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def pump_profile() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "pump-set.yaml"))


def poll_raw(reply: Reply, polls: int = 1, timeout: float = 0.5) -> tuple[list[SampleBatch], Metrics]:
    """Poll one pump ``polls`` times against a raw server answering with ``reply``."""
    bus, metrics = SampleBus(), Metrics()
    batches: list[SampleBatch] = []
    bus.subscribe(batches.append)

    async def scenario() -> None:
        async with RawModbusServer(reply) as server:
            device = ModbusDevice.from_profile("P1", 1, 1.0, pump_profile())
            poller = GatewayPoller(
                "127.0.0.1", server.port, [device], bus, SystemClock(), metrics, timeout=timeout
            )
            for _ in range(polls):
                await poller.poll(device)
            poller._close()

    run(scenario(), timeout=60)
    return batches, metrics
