"""A small embedded MQTT 3.1.1 broker, so that ``monitord demo`` needs no service.

Enough of the protocol for a demo and for local tests of the simulators:
CONNECT, PUBLISH (QoS 0 and 1 in, QoS 0 out), SUBSCRIBE with ``+``/``#``,
UNSUBSCRIBE, retained messages, last will, PING, DISCONNECT. Production sites
and the end-to-end tests use a real broker (Mosquitto, EMQX, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from dataclasses import dataclass, field

from monitord.ingest.topics import topic_matches

log = logging.getLogger(__name__)


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2 : pos + 2 + n].decode("utf-8"), pos + 2 + n


def _packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    n, length = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([kind << 4 | flags]) + bytes(length) + body


def _publish(topic: str, payload: bytes, retain: bool) -> bytes:
    t = topic.encode()
    return _packet(3, struct.pack("!H", len(t)) + t + payload, 1 if retain else 0)


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    client_id: str = ""
    subscriptions: set[str] = field(default_factory=set)
    will: tuple[str, bytes, bool] | None = None


class MqttBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._sessions: set[_Session] = set()
        self._retained: dict[str, bytes] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for s in list(self._sessions):
                s.writer.close()
            await self._server.wait_closed()

    def route(self, topic: str, payload: bytes, retain: bool) -> None:
        if retain:
            if payload:
                self._retained[topic] = payload
            else:
                self._retained.pop(topic, None)
        frame = _publish(topic, payload, False)
        for s in self._sessions:
            if any(topic_matches(p, topic) for p in s.subscriptions):
                s.writer.write(frame)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer)
        clean = False
        try:
            while True:
                header = await reader.readexactly(1)
                length, shift = 0, 0
                while True:
                    (b,) = await reader.readexactly(1)
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                body = await reader.readexactly(length)
                kind, flags = header[0] >> 4, header[0] & 0x0F
                if kind == 1:
                    self._connect(session, body)
                    self._sessions.add(session)
                    writer.write(_packet(2, b"\x00\x00"))
                elif kind == 3:
                    self._on_publish(session, flags, body)
                elif kind == 6:  # PUBREL of a QoS 2 publish
                    writer.write(_packet(7, body[:2]))
                elif kind == 8:
                    self._subscribe(session, body)
                elif kind == 10:
                    pos = 2
                    while pos < len(body):
                        topic, pos = _string(body, pos)
                        session.subscriptions.discard(topic)
                    writer.write(_packet(11, body[:2]))
                elif kind == 12:
                    writer.write(_packet(13, b""))
                elif kind == 14:
                    clean = True
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, UnicodeDecodeError, struct.error):
            pass
        finally:
            self._sessions.discard(session)
            if session.will and not clean:
                self.route(*session.will)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _connect(self, session: _Session, body: bytes) -> None:
        _proto, pos = _string(body, 0)
        flags = body[pos + 1]
        pos += 4  # level, flags, keepalive
        session.client_id, pos = _string(body, pos)
        if flags & 0x04:
            topic, pos = _string(body, pos)
            (n,) = struct.unpack_from("!H", body, pos)
            session.will = (topic, body[pos + 2 : pos + 2 + n], bool(flags & 0x20))

    def _on_publish(self, session: _Session, flags: int, body: bytes) -> None:
        topic, pos = _string(body, 0)
        qos = (flags >> 1) & 3
        if qos:
            pid = body[pos : pos + 2]
            pos += 2
            session.writer.write(_packet(4 if qos == 1 else 5, pid))
        self.route(topic, body[pos:], bool(flags & 1))

    def _subscribe(self, session: _Session, body: bytes) -> None:
        pos, granted, new = 2, bytearray(), []
        while pos < len(body):
            topic, pos = _string(body, pos)
            pos += 1
            session.subscriptions.add(topic)
            granted.append(0)
            new.append(topic)
        session.writer.write(_packet(9, body[:2] + bytes(granted), 0))
        for topic, payload in self._retained.items():
            if any(topic_matches(p, topic) for p in new):
                session.writer.write(_publish(topic, payload, True))
