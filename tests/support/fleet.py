"""HA pairs on one machine: the demo site as an ``ha`` site file, ``monitord run --instance`` processes
whose printed URLs are read back, the simulator as a ``monitord sim`` process, the retained claim.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitord.drivers.mqtt_client import stop_loop
from tests.support.daemon import TOKEN, daemon_yaml
from tests.support.net import eventually
from tests.support.webhooks import WebhookReceiver

SECRET = "ha-pair-shared-secret-0123456789"  # one for the pair: a signed link outlives a takeover


def ha_yaml(
    tmp_path: Path, mosquitto: int, hooks: WebhookReceiver, influx_url: str, fleet: str = "{mode: ha}"
) -> Path:
    """The demo site for an HA pair: InfluxDB store, metrics and API on any free port (each instance
    prints its own), a fixed site secret (signed links stay valid across a takeover), ``fleet``."""
    path, _metrics, _api = daemon_yaml(tmp_path, mosquitto, hooks, f"fleet: {fleet}\n")
    text = path.read_text()
    text = text.replace(
        f"store: {{kind: sqlite, path: {tmp_path}/store.db}}",
        f"store: {{kind: influxdb, url: '{influx_url}', bucket: monitord, spool: '{tmp_path}/spool'}}",
    )
    lines = []
    for line in text.splitlines():
        if line.startswith("metrics:"):
            line = "metrics: {host: 127.0.0.1, port: 0}"
        elif line.startswith("api:"):
            line = f"api: {{host: 127.0.0.1, port: 0, token: {TOKEN}, secret: {SECRET}}}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


class Instance:
    """``monitord run CONFIG --instance NAME`` as a process; its metrics and API URLs as it prints them."""

    def __init__(self, config: Path, name: str, cwd: Path) -> None:
        self.name = name
        self.log = cwd / f"{name}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitord", "run", str(config), "--instance", name],
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.metrics_url = self.api_url = ""
        self.started = time.monotonic()
        #: what /healthz said, each time it said something else: (seconds since start, role or why none)
        self.seen: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            self._lines(self.proc.stdout)

    def _lines(self, out: Any) -> None:
        for line in out:
            if line.startswith("metrics: "):
                self.metrics_url = line.split(" ", 1)[1].strip()
            elif line.startswith("console: "):
                self.api_url = line.split(" ", 1)[1].strip().removesuffix("/console")

    def health(self) -> dict[str, Any] | None:
        """/healthz's body (200 or 503), None while it does not answer."""
        if not self.api_url:
            self._saw("no API URL printed yet")
            return None
        try:
            with urllib.request.urlopen(self.api_url + "/healthz", timeout=2) as r:
                body = dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            body = dict(json.loads(exc.read()))
        except OSError as exc:
            self._saw(f"/healthz unanswered ({exc})")
            return None
        fleet = body.get("fleet") or {}
        self._saw(f"{fleet.get('role')} (leader {fleet.get('leader')}, connected {fleet.get('connected')})")
        return body

    def _saw(self, what: str) -> None:
        if not self.seen or self.seen[-1][1] != what:
            self.seen.append((time.monotonic() - self.started, what))

    def role(self) -> str | None:
        health = self.health()
        return str(health["fleet"]["role"]) if health and health.get("fleet") else None

    def describe(self, lines: int = 40) -> str:
        """What the test saw of this instance (each change of /healthz, when) and the tail of its log."""
        code = self.proc.poll()
        seen = "; ".join(f"{at:.1f}s {what}" for at, what in self.seen) or "nothing asked yet"
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        state = "running" if code is None else f"exited {code}"
        return f"--- {self.name} (pid {self.proc.pid}, {state}): {seen}\n" + "\n".join(tail)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return str(r.read().decode())

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


def simulator(config: Path, cwd: Path, scenario: str | None = None) -> subprocess.Popen[bytes]:
    """``monitord sim CONFIG`` (with a fault timeline written from ``scenario``) as a process, once its
    devices answer (it says "simulating"): an instance polling a simulator still starting would see
    its Modbus gateway down and open a ticket of its own, nothing to do with the test."""
    args = [sys.executable, "-m", "monitord", "sim", str(config)]
    if scenario is not None:
        (cwd / "scenario.yaml").write_text(scenario)
        args += ["--scenario", str(cwd / "scenario.yaml")]
    log = cwd / "sim.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: proc.poll() is not None or "simulating" in log.read_text(errors="replace"), 30)
    if proc.poll() is not None:
        raise AssertionError(f"monitord sim ended: {log.read_text(errors='replace')}")
    return proc


def retained(port: int, topic: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The retained message on ``topic`` as JSON (None: nothing retained), read by a fresh client."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_a: c.subscribe(topic, 1)
    client.on_subscribe = lambda *_a: threading.Timer(0.5, done.set).start()  # retained arrive first

    def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        got.append(bytes(m.payload))
        done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        stop_loop(client)
    return dict(json.loads(got[-1])) if got and got[-1] else None


#: How long `monitord run` may take to answer /healthz, timed apart from the election (its own bound).
#: Starting is mostly importing, in the daemon and again in its MQTT worker process: two instances at
#: once on the loaded 2-core machine took 14, 26 and 31 s to answer, and the 31 s failed the election's
#: 30 s before either had a fleet link (CI: test_both_started_at_once_exactly_one_is_active).
STARTUP = 90.0


def wait_started(instances: Sequence[Instance], timeout: float = STARTUP) -> None:
    """Until every instance answers /healthz (its fleet link is connecting: the election starts there)."""
    wait_for(lambda: all(i.health() is not None for i in instances), timeout, seen=instances)


def wait_for(
    check: Any, timeout: float, interval: float = 0.1, seen: Sequence[Instance] | Callable[[], str] = ()
) -> Any:
    """``eventually`` for process tests that hold no event loop of their own; when it fails, the message
    says what ``seen`` saw: each instance's /healthz over the wait and its log's tail (or a text)."""
    try:
        return asyncio.run(eventually(check, timeout, interval))
    except AssertionError as exc:
        if not seen:
            raise
        told = seen() if callable(seen) else "\n".join(i.describe() for i in seen)
        raise AssertionError(f"{exc}\n{told}") from None
