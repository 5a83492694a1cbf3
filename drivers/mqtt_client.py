"""paho's client with a read buffer: the MQTT driver's connection, under ``drivers/mqtt.py``.

paho reads each packet with a ``select`` and three or more ``recv`` calls (the command byte, each
remaining-length byte, the body), about 40 µs of its Python per message at a flood. This client
hands paho a socket that reads up to ``READ_SIZE`` bytes at once and serves paho's small reads
from memory, and reads every packet already buffered before paho selects again. paho still does
all of the protocol (framing, acknowledgements, keep-alive, TLS, reconnects); only where its bytes
come from changes. It also calls ``on_message`` straight when no per-topic callback was added
(paho matches every message against its per-topic callbacks first: ~10 % of its loop at a flood).
It relies on paho's private methods (``_create_socket``, ``_handle_on_message``, ``loop_read``'s
use of the socket's ``pending()``), which is why pyproject pins paho-mqtt to a tested range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["BufferedClient", "BufferedSocket", "stop_loop"]

READ_SIZE = 65_536  # one recv: ~300 lift documents; the kernel's socket buffer holds more


class BufferedSocket:
    """A connected socket (plain or TLS) whose reads come from a buffer refilled ``READ_SIZE`` at a
    time; everything else is the socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        buf, at = self._buf, self._at
        if at >= len(buf):
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
