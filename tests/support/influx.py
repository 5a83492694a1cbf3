"""Test support for the InfluxDB tests: Debian's influxd, and a /api/v2/write proxy in front of it.

Debian ships InfluxDB 1.6.7, which predates ``/api/v2/write``. The proxy
translates ``/api/v2/write?bucket=B&precision=P`` to ``/write?db=B&precision=P`` (``us`` → ``u``)
with the body (and its gzip encoding) passed through — exactly what InfluxDB
1.8 does natively — and forwards everything else, so monitord's real client
code path runs against a real storage engine.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.net import free_port


class InfluxServer:
    def __init__(self, folder: Path, http: str = "") -> None:
        """``http``: more lines of the [http] section (``max-row-limit = 40``)."""
        self.folder = folder
        self.http_port, self.rpc_port = free_port(), free_port()
        self.config = folder / "influxdb.conf"
        self.config.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{folder}/meta"
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.http_port}"
  log-enabled = false
{http}
[monitor]
  store-enabled = false
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        self.proc = subprocess.Popen(
            [binary, "-config", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/ping", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("influxd did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def query(self, q: str, db: str = "monitord", epoch: str = "u") -> list[dict[str, Any]]:
        """Rows of every series; times in microseconds (monitord writes microseconds) unless ``epoch``."""
        url = self.url + "/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": epoch})
        data = urllib.parse.urlencode({"q": q}).encode() if q.upper().startswith("CREATE") else None
        with urllib.request.urlopen(url if data is None else self.url + "/query", data=data, timeout=30) as r:
            body = json.loads(r.read())
        rows = []
        for result in body.get("results", []):
            for series in result.get("series", []):
                for values in series["values"]:
                    rows.append(
                        {**series.get("tags", {}), **dict(zip(series["columns"], values, strict=True))}
                    )
        return rows


class V2WriteProxy:
    """Threaded HTTP proxy on a free port: /api/v2/write → /write, anything else as is."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self, "GET")

            def do_POST(self) -> None:
                proxy.forward(self, "POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlparse(h.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        path = parsed.path
        if path == "/api/v2/write":
            path = "/write"
            precision = query.get("precision", "ns")
            query = {
                "db": query.get("bucket", ""),
                "precision": {"us": "u", "ns": "n"}.get(precision, precision),
            }
        body = h.rfile.read(int(h.headers.get("Content-Length", 0) or 0)) if method == "POST" else None
        request = urllib.request.Request(
            self.upstream + path + "?" + urllib.parse.urlencode(query), data=body, method=method
        )
        for header in ("Content-Encoding", "Content-Type", "Authorization"):
            if h.headers.get(header) and not (header == "Authorization" and path == "/write"):
                request.add_header(header, h.headers[header])
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        except OSError:
            status, payload = 503, b'{"error": "upstream unavailable"}'
        h.send_response(status)
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("Content-Type", "application/json")
        h.end_headers()
        h.wfile.write(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def influx_with_proxy(tmp_path: Path, http: str = "") -> Iterator[tuple[InfluxServer, V2WriteProxy]]:
    """A real InfluxDB in ``tmp_path/influxdb`` with database ``monitord``, behind the v2-write
    proxy; ``http``: more lines of its [http] section (``max-row-limit = 40``)."""
    folder = tmp_path / "influxdb"
    folder.mkdir()
    server = InfluxServer(folder, http)
    server.start()
    try:
        server.query("CREATE DATABASE monitord")
        proxy = V2WriteProxy(server.url)
        try:
            yield server, proxy
        finally:
            proxy.close()
    finally:
        server.kill()
