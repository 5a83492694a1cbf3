"""A real HTTP server on a free port that records the webhook requests it gets."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

from tests.support.net import free_port


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[float, str, dict[str, Any]]] = []  # (arrival, path, body)
        self.scripted: dict[str, list[tuple[int, bytes]]] = {}  # path → replies to give first
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver.received.append((time.time(), self.path, body))
                script = receiver.scripted.get(self.path.split("?")[0], [])
                status, reply = script.pop(0) if script else (200, b'{"errcode": 0}')
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
