"""Real HTTP receivers on free ports: one that records the webhooks it gets (and can be down for a
while), and a black hole that accepts connections and never answers."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any

from tests.support.net import free_port


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[float, str, dict[str, Any]]] = []  # (arrival, path, body)
        self.scripted: dict[str, list[tuple[int, bytes]]] = {}  # path → replies to give first
        # path → (status, seconds): answer ``status`` for this long from the first request on
        self.outages: dict[str, tuple[int, float]] = {}
        self.answered: list[tuple[float, str, int]] = []  # (arrival, path, status answered)
        self._outage_start: dict[str, float] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                now = time.time()
                receiver.received.append((now, self.path, body))
                path = self.path.split("?")[0]
                script = receiver.scripted.get(path, [])
                status, reply = script.pop(0) if script else (200, b'{"errcode": 0}')
                if path in receiver.outages:
                    down, seconds = receiver.outages[path]
                    if now < receiver._outage_start.setdefault(path, now) + seconds:
                        status, reply = down, b"down"
                receiver.answered.append((now, path, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def to(self, path: str) -> list[dict[str, Any]]:
        return [body for _t, p, body in self.received if p.split("?")[0] == f"/{path}"]

    def query_of(self, path: str) -> str:
        return next(p.split("?", 1)[1] for _t, p, _b in self.received if p.split("?")[0] == f"/{path}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self, path: str) -> list[float]:
        """When ``path`` got a request it answered 2xx: each a delivery."""
        return [t for t, p, status in self.answered if p == f"/{path}" and 200 <= status < 300]


class BlackHole:
    """A TCP port that accepts connections and never answers: a hung robot endpoint."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[socket.socket] = []  # held open until close
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()
