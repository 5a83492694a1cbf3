"""Benchmark: what the Alertmanager push costs the event road, and how soon an alert is there.

Debian's ``prometheus-alertmanager`` runs on a free port (no cluster, its own storage folder).
Prints:

- the cost of ``AlertmanagerPush.on_alert`` on the road (µs per event: a dict update under a
  lock; the POSTs happen in the push's own thread) for a burst of ``--burst`` distinct alerts,
  and how long until Alertmanager holds all of them;
- from ``on_alert`` to the alert in Alertmanager's ``GET /api/v2/alerts``: p50 and p99 over
  ``--trials`` single alerts, polled every 5 ms;
- the same burst while the URL is dead (nothing listening): the road's cost must not change.

Needs ``prometheus-alertmanager`` (Debian package). Never part of the test pass/fail.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from monitord.alerting.tracker import AlertEvent
from monitord.core.assets import Asset
from monitord.core.metrics import Metrics
from monitord.people.alertmanager import AlertmanagerConfig, AlertmanagerPush


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        sys.exit("prometheus-alertmanager is not installed (Debian package)")
    port = free_port()
    config = folder / "am.yml"
    config.write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/-/ready", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("alertmanager did not start")


def held(url: str, asset: str | None = None) -> set[str]:
    """Assets of the alerts Alertmanager holds (only ``asset``'s, if given: a small answer to poll)."""
    query = "?" + urllib.parse.urlencode({"filter": f'asset="{asset}"'}) if asset else ""
    with urllib.request.urlopen(url + "/api/v2/alerts" + query, timeout=10) as r:
        return {a["labels"]["asset"] for a in json.loads(r.read())}


def push_for(url: str, n: int, metrics: Metrics) -> AlertmanagerPush:
    assets = {f"X{i}": Asset(f"X{i}", "pump", location={"building": "A"}) for i in range(n)}
    return AlertmanagerPush(AlertmanagerConfig(url=[url], resend=600.0), "bench", assets, "http://c", metrics)


def burst(push: AlertmanagerPush, prefix: str, n: int) -> float:
    """µs per on_alert over ``n`` distinct firing alerts."""
    now = time.time()
    events = [
        AlertEvent(now, "pump.dry_run", f"{prefix}{i}", "firing", "critical", now, "dry") for i in range(n)
    ]
    started = time.perf_counter()
    for ev in events:
        push.on_alert(ev)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start(Path(tmp))
        try:
            push = push_for(url, args.burst, Metrics())
            cost = burst(push, "X", args.burst)
            t0 = time.perf_counter()
            while len(held(url)) < args.burst:
                time.sleep(0.02)
            landed = time.perf_counter() - t0
            print(
                f"burst of {args.burst}: on_alert {cost:.1f} µs each; all in Alertmanager in {landed:.2f} s"
            )
            waits = []
            for k in range(args.trials):
                now = time.time()
                started = time.perf_counter()
                push.on_alert(AlertEvent(now, "pump.dry_run", f"T{k}", "firing", "critical", now, "dry"))
                while f"T{k}" not in held(url, f"T{k}"):
                    time.sleep(0.005)
                waits.append((time.perf_counter() - started) * 1e3)
            waits.sort()
            p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))]
            print(f"on_alert → in Alertmanager: p50 {statistics.median(waits):.1f} ms, p99 {p99:.1f} ms")
            push.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    metrics = Metrics()
    dead = push_for(f"http://127.0.0.1:{free_port()}", args.burst, metrics)
    cost = burst(dead, "X", args.burst)
    time.sleep(1.5)
    lost = metrics.registry.get_sample_value("monitord_alertmanager_undelivered_total")
    print(
        f"dead Alertmanager: on_alert {cost:.1f} µs each; {lost:.0f} updates counted undelivered after 1.5 s"
    )
    dead.close()


if __name__ == "__main__":
    main()
