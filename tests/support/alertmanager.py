"""Debian's Prometheus Alertmanager (``prometheus-alertmanager``) on a free port, for the push tests.

No cluster (``--cluster.listen-address=``), its own storage folder, and one
receiver: a webhook (``notify``) with ``send_resolved``, so a test sees both
what Alertmanager holds (``alerts()``) and what it decided to notify,
resolved alerts included. Not started until ``start()``: a test can let the
daemon meet a dead Alertmanager first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.net import free_port, wait_port

BINARY = "prometheus-alertmanager"


def alertmanager_binary() -> str | None:
    return shutil.which(BINARY) or shutil.which("alertmanager")


class Alertmanager:
    def __init__(self, binary: str, folder: Path, notify: str) -> None:
        self.binary, self.folder = binary, folder
        self.port = free_port()
        self.config = folder / "alertmanager.yml"
        self.config.write_text(f"""
route:
  {{receiver: hook, group_by: [alertname, asset], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}
receivers:
  - name: hook
    webhook_configs: [{{url: '{notify}', send_resolved: true}}]
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager knows (GET /api/v2/silences), expired ones included."""
        with urllib.request.urlopen(self.url + "/api/v2/silences", timeout=10) as r:
            return list(json.loads(r.read()))

    def alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager holds now (GET /api/v2/alerts: active, silenced and inhibited)."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=10) as r:
            return list(json.loads(r.read()))
