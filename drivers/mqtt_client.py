"""paho's client with a read buffer: the MQTT driver's connection, under ``drivers/mqtt.py``.

paho reads each packet with a ``select`` and three or more ``recv`` calls (the command byte, each
remaining-length byte, the body), about 40 µs of its Python per message at a flood. This client
hands paho a socket that reads up to ``READ_SIZE`` bytes at once and serves paho's small reads
from memory, and reads every packet already buffered before paho selects again. paho still does
all of the protocol (framing, acknowledgements, keep-alive, TLS, reconnects); only where its bytes
come from changes. It also calls ``on_message`` straight when no per-topic callback was added
(paho matches every message against its per-topic callbacks first: ~10 % of its loop at a flood).
With ``on_incoming`` set (the worker's), every whole QoS 0 or 1 PUBLISH at the head of the buffer
is read at once, straight from the buffer to that callback: paho's own read of a packet (four
``recv`` calls, its state dict, ``decode_publish``'s copies, an ``MQTTMessage``, its log call) cost
about a third of the worker's CPU per gateway message. Anything else (another packet, QoS 2, a
topic paho would refuse or not decode, MQTT 5's properties, paho's logging on) is left to paho.
It relies on paho's private methods (``_create_socket``, ``_handle_on_message``, ``_packet_read``,
``_in_packet``, ``loop_read``'s use of the socket's ``pending()``), which is why pyproject pins
paho-mqtt to a tested range.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

__all__ = ["BufferedClient", "BufferedSocket", "stop_loop"]

READ_SIZE = 65_536  # one recv: ~300 lift documents; the kernel's socket buffer holds more
PUBLISH_QOS_0, PUBLISH_QOS_1 = 0x30, 0x32  # a PUBLISH's first byte, its DUP and RETAIN bits cleared
PUBACK = struct.Struct("!BBH")  # as paho packs one: command, remaining length 2, message id
OnPublish = Callable[[str, bytes, int, int], None]  # topic, payload, QoS, message id (0 at QoS 0)


class BufferedSocket:
    """A connected socket (plain or TLS) whose reads come from a buffer refilled ``READ_SIZE`` at a
    time; everything else is the socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._at = 0

    _answer: Exception | None = None  # what the socket raised in ``fill``, for paho's next recv

    def recv(self, size: int) -> bytes:
        buf, at = self._buf, self._at
        if at >= len(buf):
            if self._answer is not None:
                err, self._answer = self._answer, None
                raise err
            # Empty: one read of what the kernel holds. BlockingIOError (and TLS's want-read) pass
            # to paho as from the socket itself; b"" is the peer's close, as from the socket.
            buf = self._sock.recv(max(size, READ_SIZE))
            at = 0
        end = at + size
        self._buf, self._at = buf, min(end, len(buf))
        return buf[at:end] if at or end < len(buf) else buf

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed to paho."""
        return len(self._buf) - self._at

    def fill(self) -> bool:
        """One read of the socket onto what is left in the buffer (a packet's start, or nothing),
        as ``recv`` would read it there; False if nothing came. Then the socket's answer (nothing
        yet, closed, an error) is kept for paho's next ``recv``, which meets it as from the socket;
        till then the socket is not read again (its answer is never passed over)."""
        if self._answer is not None:
            return False
        try:
            data = self._sock.recv(READ_SIZE)
        except Exception as err:  # BlockingIOError, TLS's want-read, OSError: paho's to judge
            self._answer = err
            return False
        if not data:
            return False  # closed: the socket says b"" again to paho's recv
        self._buf, self._at = self._buf[self._at :] + data, 0
        return True

    def pending(self) -> int:
        """What paho asks before it selects (meant for TLS): bytes it can read without waiting."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + inner

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def __getattr__(self, name: str) -> Any:  # send, close, setblocking, ...: the socket's own
        return getattr(self._sock, name)


class BufferedClient(paho.Client):
    """``paho.Client`` reading through a ``BufferedSocket``."""

    _filtered = False  # whether message_callback_add was used
    after_read: Callable[[], None] | None = None  # after each read of the socket: the worker's hand-over
    on_incoming: OnPublish | None = None  # set: QoS 0 and 1 messages read at once (the module's docstring)

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def message_callback_add(self, sub: str, callback: Callable[..., None]) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        if self._filtered:
            super()._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:  # as paho's own: logged, raised unless suppressed
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _packet_read(self) -> MQTTErrorCode:
        sock, on_incoming = self._sock, self.on_incoming
        if (
            on_incoming is None
            or type(sock) is not BufferedSocket
            or self._in_packet["command"]  # paho is part way through a packet
            or self._filtered
            or self._protocol == MQTTProtocolVersion.MQTTv5  # properties: paho decodes them
            or self._logger is not None
            or self._on_log is not None  # paho logs each PUBLISH it reads
        ):
            return super()._packet_read()
        taken, short = self._publishes(sock, on_incoming)
        # The head packet not whole yet (or nothing left): one read of the socket onto it, as paho's
        # recv would read there. A packet past READ_SIZE paho reads in its own pieces (joining the
        # buffer again at each read would copy it over and over).
        if not taken and short and sock.buffered() < READ_SIZE and sock.fill():
            taken, short = self._publishes(sock, on_incoming)
        if not taken:  # another packet, or not whole with nothing more to read: paho's read
            return super()._packet_read()
        with self._msgtime_mutex:  # the keep-alive's "heard from the broker", as paho's read sets it
            self._last_bytes_received = paho.time_func()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publishes(self, sock: BufferedSocket, on_incoming: OnPublish) -> tuple[int, bool]:
        """Every whole QoS 0 or 1 PUBLISH at the head of the buffer to ``on_incoming``, each taken
        from the buffer before its callback (an exception leaves the stream in step, as in paho).
        How many were taken, and whether it stopped at a packet not whole (else at another kind,
        or one paho is to judge)."""
        buf, at = sock._buf, sock._at
        end = len(buf)
        manual = self._manual_ack  # else paho's read sends the PUBACK itself
        taken = 0
        while True:
            if at + 5 > end:  # the shortest PUBLISH: its 2 bytes of header, 2 of topic length, 1 of topic
                return taken, True
            head = buf[at] & 0xF6  # DUP and RETAIN mean nothing here (paho only passes them on)
            if not (head == PUBLISH_QOS_0 or (head == PUBLISH_QOS_1 and manual)):
                return taken, False
            # The remaining length: up to four bytes of seven bits, the high bit says another follows.
            size, shift, p = 0, 0, at + 1
            while True:
                byte = buf[p]
                size |= (byte & 127) << shift
                shift += 7
                p += 1
                if byte < 128:
                    break
                if p - at > 4:
                    return taken, False  # past four bytes: paho's protocol error
                if p == end:
                    return taken, True
            stop = p + size
            if stop > end:
                return taken, True
            n = buf[p] << 8 | buf[p + 1] if p + 2 <= stop else 0
            body = p + 2 + n + (2 if head == PUBLISH_QOS_1 else 0)
            if not n or body > stop:
                return taken, False  # no topic, or one past the packet: paho's error to report
            try:
                topic = buf[p + 2 : p + 2 + n].decode()
            except UnicodeDecodeError:
                return taken, False  # paho hands it over with a topic that raises when read
            mid = buf[body - 2] << 8 | buf[body - 1] if head == PUBLISH_QOS_1 else 0
            sock._at = at = stop
            taken += 1
            with self._in_callback_mutex:
                try:
                    on_incoming(topic, buf[body:stop], (head >> 1) & 3, mid)
                except Exception as err:  # as paho's own: logged, raised unless suppressed
                    self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise

    def ack_all(self, messages: list[tuple[int, int]]) -> None:
        """``ack`` of each (message id, QoS): with QoS 1 only (the worker's chunk, as a rule), their
        PUBACKs queued as one packet of the same bytes, so one wake-up of paho's thread and one send,
        not one each (~5 µs a message: paho queues, wakes and writes each on its own)."""
        if not self._manual_ack:
            return  # as ``ack``: paho acknowledged them when read
        if any(qos != 1 for _mid, qos in messages):
            for mid, qos in messages:
                self.ack(mid, qos)
        elif messages:
            packet = b"".join(PUBACK.pack(paho.PUBACK, 2, mid) for mid, _qos in messages)
            self._packet_queue(paho.PUBACK, packet, messages[0][0], 1)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho reads one packet per select; what is already buffered needs no select (and its
        # select would not see it). A partial packet at the end of the buffer reads the socket,
        # which says "again" when it is empty: the loop ends there.
        rc = super().loop_read(max_packets)
        sock = self._sock
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(sock, BufferedSocket) and sock.buffered():
            rc = super().loop_read(max_packets)
            sock = self._sock
        if self.after_read is not None:
            self.after_read()
        return rc


def stop_loop(client: paho.Client) -> None:
    """``loop_stop``, then close the client's sockets, the pair ``loop_start`` made to wake paho's
    thread among them.

    paho closes that pair only in ``Client.__del__``. A client in a reference cycle (its callbacks
    bound to the object that owns it) is finalised by the garbage collector, which calls finalisers
    in no set order: the pair's sockets may be finalised first, and warn "unclosed socket" wherever
    the collection happens to run (seen in the tests, one fleet link's pair)."""
    client.loop_stop()
    client._reset_sockets()  # private, as paho's other internals this module uses (pinned range)
