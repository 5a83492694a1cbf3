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

from tests.support.net import free_port

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

    async def __aenter__(self) -> RawModbusServer:
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
