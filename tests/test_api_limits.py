"""What a client may cost the API (issue 10, item 8), against the running daemon over real sockets:
a body over the limit is refused unread, idle connections are let go (served on the event loop: no
thread each), a body that is not a JSON object is a 400 and a field of the wrong type a 422.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from pathlib import Path

import pytest

from monitord.daemon.web import WebServer
from monitord.daemon.web.limits import MAX_BODY
from tests.support import TOKEN, demo_site, run, running, with_people
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
    monkeypatch.setattr(WebServer, "socket_timeout", 1.0)
    monkeypatch.setattr(WebServer, "max_connections", 8)


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
            assert head.startswith(b"HTTP/1.1 413"), head
            sock.close()

            for body in (b"[]", b'"note"', b"3", b"\xff\xfe", b"[" * 60_000, b"{"):
                answer = await call(request, port, "POST", "/tickets/WO-1/comment", body)
                assert answer == (400, {"error": "body must be a JSON object"}), body[:10]
            status, answer = await call(request, port, "POST", "/silences", b'{"expires_in": [1]}')
            assert status == 422 and answer["fields"] == ["matcher", "reason", "expires_in"], answer  # type: ignore[index]
            big = b'{"note": "' + b"y" * MAX_BODY + b'"}'
            assert (await call(request, port, "POST", "/tickets/WO-1/comment", big))[0] == 413

            # a field of the wrong type: 422 naming it
            status, answer = await call(request, port, "POST", "/tickets/WO-1/comment", b'{"note": [1]}')
            assert status == 422 and answer["fields"] == ["note"], answer  # type: ignore[index]

            # idle connections: no thread each, closed after the timeout, the API answers again
            before = threading.active_count()
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
            try:
                # every connection is answered: closed after 1 s idle (or turned away past the limit)
                answers = await call(lambda: [_first_bytes(s) for s in idle])
                # + 1: the to_thread worker running this very check
                assert threading.active_count() <= before + 1, "served on the loop, not a thread each"
            finally:
                for s in idle:
                    s.close()
            closed = answers.count(b"")
            turned_away = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
            # (how many are turned away depends on how fast the kernel hands them over: backlog 5)
            assert closed + turned_away == 100 and closed >= 8, (closed, turned_away)
            # (called off the loop: the API is served on this very loop)
            answer = None
            for _ in range(50):
                if answer := await call(_healthz, port):
                    break
                await asyncio.sleep(0.1)
            assert answer is not None and answer[0] == 200, answer
            body = answer[1]
            assert isinstance(body, dict) and body["status"] == "ok" and body["fleet"]["role"] == "single"

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
