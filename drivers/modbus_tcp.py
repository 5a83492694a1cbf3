"""Modbus TCP transactions on one connection, several in flight, matched by transaction id.

Sits under ``drivers.modbus`` (the poller), for plain Modbus TCP lines only; RTU lines keep the
pymodbus client and its one-at-a-time exchange. pymodbus stays the protocol library: its request
classes and ``FramerSocket`` build each request frame (once per read, then only the MBAP
transaction id changes), ``FramerSocket`` splits the reply stream into frames, and ``DecodePDU``
decodes exception and bit replies. What is not used is the client's per-request transaction
machinery (a lock, a future and a ``wait_for`` per request, one request at a time), which cost more
than the rest of the daemon's work per point (docs/performance.md).

Every failure fails *every* outstanding transaction and closes the connection, so a late or stray
reply can never be taken as the answer to another request: a timeout of the oldest transaction, a
reply with a transaction id not outstanding, from another unit, under another protocol id, or the
connection lost. The poller then reconnects (a fresh stream, fresh ids).
"""

from __future__ import annotations

import asyncio
import collections
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

#: The pymodbus request class of each kind of read.
REQUESTS: dict[str, type[ModbusPDU]] = {
    "coil": ReadCoilsRequest,
    "discrete": ReadDiscreteInputsRequest,
    "holding": ReadHoldingRegistersRequest,
    "input": ReadInputRegistersRequest,
}
_MBAP = struct.Struct(">HHHB")


class LinkLost(Exception):
    """The connection was dropped; ``reason`` starts with timeout, io error or protocol error.

    ``collateral``: this transaction was not the one at fault, only outstanding when another failed
    (asking it again on a new connection is safe)."""

    def __init__(self, reason: str, collateral: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.collateral = collateral


@dataclass(frozen=True)
class Answer:
    """A reply's function code (0x80 set for an exception) and its PDU after the function code."""

    function: int
    data: bytes

    def exception_code(self) -> int:
        """The exception code of an exception reply, decoded by pymodbus."""
        pdu = _DECODER.decode(bytes((self.function,)) + self.data)
        return int(pdu.exception_code) if isinstance(pdu, ExceptionResponse) else 0

    def bits(self) -> list[bool]:
        """The bits of a coil or discrete-input reply, decoded by pymodbus."""
        pdu = _DECODER.decode(bytes((self.function,)) + self.data)
        return list(pdu.bits) if pdu is not None else []


_DECODER = DecodePDU(is_server=False)


def request_frame(kind: str, unit: int, start: int, count: int) -> bytes:
    """The whole ADU of a read (transaction id 0), built by pymodbus; the link stamps the id."""
    pdu = REQUESTS[kind](dev_id=unit, address=start, count=count)
    return FramerSocket(_DECODER).buildFrame(pdu)


class TcpLink(asyncio.Protocol):
    """One Modbus TCP connection; ``send`` puts a request on the wire and returns its reply's future."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._framer = FramerSocket(_DECODER)
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        # tid -> (future, unit, deadline), in send order: the first one is the next to time out.
        self._pending: collections.OrderedDict[int, tuple[asyncio.Future[Answer], int, float]] = (
            collections.OrderedDict()
        )
        self._next_tid = 0
        self._outgoing: list[bytes] = []  # requests to send at the end of this turn of the loop
        self._watchdog: asyncio.TimerHandle | None = None
        self._lost: LinkLost | None = None
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> TcpLink:
        """Connect within ``timeout``; raises OSError (or TimeoutError) when the endpoint does not take it."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _transport, link = await loop.create_connection(lambda: cls(timeout), host, port)
        return link

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._lost is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send(self, frame: bytes) -> asyncio.Future[Answer]:
        """Send a request ADU (from ``request_frame``) under the next free transaction id."""
        if self._pending or self._lost is not None or self._transport is None:
            return self.send_many((frame,))[0]
        # Alone on an idle link (``pipeline: 1``): ``send_many`` without its lists, and any id is free.
        fut = self._loop.create_future()
        tid = self._next_tid = self._next_tid % 0xFFFF + 1
        deadline = self._loop.time() + self.timeout
        self._pending[tid] = (fut, frame[6], deadline)
        self._transport.write(tid.to_bytes(2, "big") + frame[2:])
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)
        return fut

    def send_many(self, frames: Sequence[bytes]) -> list[asyncio.Future[Answer]]:
        """Send request ADUs together (one write), each under the next free transaction id."""
        futures = [self._loop.create_future() for _ in frames]
        if self._lost is not None or self._transport is None:
            for fut in futures:
                fut.set_exception(self._lost or LinkLost("io error: not connected"))
            return futures
        busy = bool(self._pending)
        deadline = self._loop.time() + self.timeout
        adus = []
        for frame, fut in zip(frames, futures, strict=True):
            tid = self._next_tid = self._next_tid % 0xFFFF + 1
            while tid in self._pending:  # 65,535 ids: only a stuck connection could wrap onto its own
                tid = self._next_tid = self._next_tid % 0xFFFF + 1
            adus.append(tid.to_bytes(2, "big") + frame[2:])
            self._pending[tid] = (fut, frame[6], deadline)
        if busy:
            # Others in flight: requests made in this turn of the loop leave in one write (one
            # system call instead of one each; pipelined polls resume together on one read).
            if not self._outgoing:
                self._loop.call_soon(self._write_out)
            self._outgoing += adus
        else:
            self._transport.write(b"".join(adus))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)
        return futures

    def _write_out(self) -> None:
        out, self._outgoing = self._outgoing, []
        if self._transport is not None and self._lost is None:
            self._transport.write(b"".join(out))

    def _check_deadline(self) -> None:
        """The oldest transaction's deadline came: fail them all if it is still outstanding."""
        self._watchdog = None
        if not self._pending:
            return
        _fut, _unit, deadline = next(iter(self._pending.values()))
        if deadline <= self._loop.time():
            self.close("timeout")
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def close(self, reason: str = "io error: closed", culprit: int | None = None) -> None:
        """Drop the connection and fail every outstanding transaction with ``reason``: transaction
        ``culprit`` (by default the oldest; 0: none, it was answered already) as the one at fault,
        the others as collateral."""
        if self._lost is None:
            self._lost = LinkLost(reason)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, collections.OrderedDict()
        if culprit is None:
            culprit = next(iter(pending), 0)
        for tid, (fut, _unit, _deadline) in pending.items():
            if not fut.done():
                fut.set_exception(LinkLost(reason, collateral=tid != culprit))
                fut.exception()  # a caller gone (cancelled) must not leave it "never retrieved"
        if self._transport is not None:
            self._transport.abort()  # no lingering: a late reply must not reach anyone

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"io error: connection lost ({exc or 'closed by the device'})")

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        used = 0
        while len(buffer) - used >= 8:
            if buffer[used + 2] or buffer[used + 3]:  # FramerSocket would wait forever on it
                self.close("protocol error: MBAP protocol id is not 0 (Modbus)")
                return
            size, unit, tid, pdu = self._framer.decode(buffer[used:])
            if not size:
                break  # the rest of the frame is still on its way
            used += size
            entry = self._pending.get(tid)
            if entry is None:
                self.close(f"protocol error: reply with transaction id {tid}, not outstanding")
                return
            fut, asked, _deadline = entry
            if unit != asked or not pdu:  # the transaction at fault, failed with the rest
                self.close(
                    f"protocol error: unit {unit} answered a request to unit {asked}"
                    if pdu
                    else "protocol error: empty PDU",
                    culprit=tid,
                )
                return
            del self._pending[tid]
            if not fut.done():
                fut.set_result(Answer(pdu[0], pdu[1:]))
        self._buffer = buffer[used:]
