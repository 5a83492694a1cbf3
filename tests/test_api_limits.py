"""What a client may cost the API (issue 10, item 8), against the running daemon over real sockets:
a body over the limit is refused unread, idle connections are let go, threads are bounded, and a body
that is not a JSON object is a 400.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from pathlib import Path

import pytest

from monitord.daemon.api import MAX_BODY, Api
from tests.support import TOKEN, demo_site, eventually, run, running, with_people
from tests.support.webhooks import WebhookReceiver


def request(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


@pytest.fixture
def quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Api, "socket_timeout", 1.0)
    monkeypatch.setattr(Api, "max_connections", 8)


def test_bodies_limits_and_idle_connections(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, quick_limits: None
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)

    async def scenario() -> None:
        async with running(config) as (_site, app):
            assert app.api is not None
            port = app.api.port
            call = asyncio.to_thread

            # a 150 MB note: refused by its Content-Length, nothing read
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                b"POST /tickets/WO-1/comment HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + f"\r\nContent-Length: {150 * 2**20}\r\n\r\n".encode()
                + b"x" * 65536
            )
            sock.settimeout(10)
            head = await call(sock.recv, 200)
            assert head.startswith(b"HTTP/1.0 413"), head
            sock.close()

            for body in (b"[]", b'"note"', b"3", b"\xff\xfe", b"[" * 60_000, b"{"):
                answer = await call(request, port, "POST", "/tickets/WO-1/comment", body)
                assert answer == (400, {"error": "body must be a JSON object"}), body[:10]
            status, _ = await call(request, port, "POST", "/silences", b'{"expires_in": [1]}')
            assert status == 400
            big = b'{"note": "' + b"y" * MAX_BODY + b'"}'
            assert (await call(request, port, "POST", "/tickets/WO-1/comment", big))[0] == 413

            # idle connections: bounded threads, closed after the timeout, the API answers again
            before = threading.active_count()
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
            try:
                # every connection is answered: served ones closed after 1 s idle, the rest turned away
                answers = await call(lambda: [_first_bytes(s) for s in idle])
                assert threading.active_count() <= before + 8, "one thread per served connection, at most 8"
            finally:
                for s in idle:
                    s.close()
            closed = answers.count(b"")
            turned_away = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
            # (how many are turned away depends on how fast the kernel hands them over: backlog 5)
            assert closed + turned_away == 100 and closed >= 8, (closed, turned_away)
            assert await eventually(lambda: _healthz(port), 5) == (200, {"status": "ok"})

    run(scenario(), timeout=120)


def _first_bytes(s: socket.socket) -> bytes:
    s.settimeout(5)  # the server's idle timeout is 1 s: any wait past that is the server holding on
    return s.recv(200)


def _healthz(port: int) -> tuple[int, object] | None:
    try:
        status, body = request(port, "GET", "/healthz")
    except (OSError, http.client.HTTPException):
        return None
    return (status, body) if status == 200 else None
