"""A real HTTP server on a free port that records the webhook requests it gets."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

from monitord.demo import free_port


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[float, str, dict[str, Any]]] = []  # (arrival, path, body)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver.received.append((time.time(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def to(self, path: str) -> list[dict[str, Any]]:
        return [body for _t, p, body in self.received if p == f"/{path}"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
