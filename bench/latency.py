"""Benchmark: detection latency, from a fault in a simulator to the page at a webhook receiver.

The daemon runs as its own process (``monitord run``) against the demo building's simulators
(in this process, over real Modbus TCP and a real Mosquitto), with people on a real HTTP
receiver. Each trial injects a fault, waits for the page of the ticket it opens, clears the
fault and waits for the ticket to be resolved (``tickets.reopen_window: 0s``, so the next trial
opens a new ticket and pages again). Two kinds of device run their trials side by side, each
on a fresh copy of the device every two trials (a third fault on one device within ten minutes
would be, rightly, a flapping alert that stays open):

- Modbus: pumps polled every 1 s behind one gateway, fault ``sump_high`` →
  ``pump.sump_high_level`` (for 2 s);
- MQTT: lifts publishing every 1 s, fault ``door_lock`` → ``elevator.door_lock_circuit_open``
  (for 2 s).

Target: p99 ≤ poll interval + 100 ms + the rule's ``for``. Prints p50, p99 and max per device.
``--load RATE``: the same trials while a publisher in its own process sends RATE lift messages per
second (QoS 0) to the demo's lift A-E1, so one path's detection is measured under the other's load.
Needs ``mosquitto`` (Debian package). Never part of the test pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from monitord.config.mqtt import publish_topic
from monitord.config.site import SiteConfig, load_config
from monitord.simulators.models import MODELS
from monitord.simulators.mqtt_publisher import document
from tests.support import (
    SiteThread,
    WebhookReceiver,
    daemon_yaml,
    eventually,
    free_port,
    get,
    metric,
    simulated,
    wait_port,
)

POLL = 1.0


TRIALS_PER_ASSET = 2


@dataclass(frozen=True)
class Case:
    label: str
    prefix: str  # copies are <prefix>1, <prefix>2, ...
    template: str  # YAML of one copy; {i} its number
    fault: str
    rule: str
    hold: float  # the rule's `for`
    receiver: str  # the on-call person's webhook path


CASES = (
    Case(
        "Modbus pump, 1 s poll",
        "B-P",
        "  - {{id: B-P{i}, type: pump, profile: pump-set, location: {{building: B}},\n"
        "     connection: {{modbus: {{host: 127.0.0.1, port: {port}, unit: {i}}}}}}}\n",
        "sump_high",
        "pump.sump_high_level",
        2.0,
        "plumbing-tech",
    ),
    Case(
        "MQTT lift, 1 s publish",
        "B-E",
        "  - {{id: B-E{i}, type: elevator, profile: elevator-gbt24476, location: {{building: B}},\n"
        "     connection: {{mqtt: {{}}}}}}\n",
        "door_lock",
        "elevator.door_lock_circuit_open",
        2.0,
        "elevator-tech",
    ),
)


def with_copies(path: Path, copies: int) -> None:
    """Add ``copies`` of each case's device to the site file (the pumps on a gateway of their own)."""
    port = free_port()
    assets = "".join(c.template.format(i=i, port=port) for c in CASES for i in range(1, copies + 1))
    text = path.read_text()
    path.write_text(text.replace("rules:\n", assets + "rules:\n", 1))


def page(hooks: WebhookReceiver, receiver: str, asset: str, seen: int) -> tuple[float, dict[str, Any]] | None:
    """The arrival and body of the first page about ``asset`` past the receiver's first ``seen``
    (another device may page the same person meanwhile: under ``--load`` the flooding lift's
    heartbeat, which its constant message never moves, rightly stops)."""
    mine = [(t, b) for t, p, b in hooks.received if p.split("?")[0] == f"/{receiver}"][seen:]
    return next(((t, b) for t, b in mine if b["asset"] == asset), None)


def resolved(api: int, ticket: str) -> dict[str, Any] | None:
    """The ticket once resolved, else None."""
    return next((t for t in get(f"http://127.0.0.1:{api}/tickets?state=resolved") if t["id"] == ticket), None)


@dataclass(frozen=True)
class Trial:
    """One fault's times, in seconds from its injection (the daemon's clock is this machine's)."""

    page: float  # the webhook receiver has the page
    seen: float  # the evaluation that first saw the fault (the alert's ``since``)
    opened: float  # the evaluation that opened the ticket (its ``opened_at``)


async def trials(case: Case, site: SiteThread, hooks: WebhookReceiver, api: int, n: int) -> list[Trial]:
    """Fault → ticket → page, ``n`` times."""
    rng = random.Random(case.prefix)  # trials start at varied phases of the poll cycle, reproducibly
    out: list[Trial] = []
    for trial in range(n):
        asset = f"{case.prefix}{trial // TRIALS_PER_ASSET + 1}"
        await asyncio.sleep(rng.uniform(0.0, POLL))
        seen = len(hooks.to(case.receiver))
        start = time.time()
        site.inject(asset, case.fault)
        await eventually(partial(page, hooks, case.receiver, asset, seen), 30, interval=0.005)
        arrival, body = page(hooks, case.receiver, asset, seen) or (0.0, {})
        assert body["event"] == "opened", body
        site.clear(asset, case.fault)
        # The API is asked off this loop: the webhook receiver serves on it and must not be held up.
        while (ticket := await asyncio.to_thread(resolved, api, body["ticket"])) is None:
            await asyncio.sleep(0.2)
        opened = float(ticket["opened_at"])
        out.append(Trial(arrival - start, body["since"] - start, opened - start))
    return out


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


LIFT_SAMPLES = 'monitord_bus_samples_total{asset_type="elevator",quality="good"}'
LOAD_PUBLISHER = r"""
import json, os, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, topic, payload, rate = json.loads(sys.argv[1])
client = paho.Client(CallbackAPIVersion.VERSION2, client_id="")
client.connect("127.0.0.1", port)
client.loop_start()
sent, began, burst = 0, time.monotonic(), max(1, rate // 100)
try:
    while True:  # bursts every 10 ms: RATE messages per second, steadily
        for _ in range(burst):
            client.publish(topic, payload, qos=0)
        sent += burst
        ahead = began + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
except KeyboardInterrupt:
    print(sent / (time.monotonic() - began), flush=True)
    os._exit(0)  # not waiting on paho's thread, which the interrupt may have left holding a lock
"""


def start_load(config: SiteConfig, broker_port: int, rate: int) -> subprocess.Popen[str]:
    """RATE lift documents per second to A-E1's topic, from a process of their own."""
    lift = config.asset("A-E1")
    values = MODELS["elevator"]("A-E1").values
    payload = json.dumps(document(config.profile(lift.profile), values, time.time()))
    arguments = json.dumps([broker_port, publish_topic(config, lift), payload, rate])
    command = [sys.executable, "-c", LOAD_PUBLISHER, arguments]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


async def main(n: int, load: int, worker: bool = True) -> None:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker_port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        hooks = WebhookReceiver()
        daemon: subprocess.Popen[bytes] | None = None
        try:
            wait_port(broker_port)
            path, metrics, api = daemon_yaml(folder, broker_port, hooks, "tickets: {reopen_window: 0s}\n")
            with_copies(path, -(-n // TRIALS_PER_ASSET))
            if not worker:  # paho and the parse in the daemon's process, as before mqtt.worker
                text = path.read_text().replace("max_clock_skew: 60s}", "max_clock_skew: 60s, worker: false}")
                assert "worker: false" in text, "the demo site's mqtt line changed"
                path.write_text(text)
            config = load_config(path)
            assert config.mqtt is not None and config.mqtt.worker == worker
            async with simulated(config) as site:
                with (folder / "daemon.log").open("ab") as log:
                    daemon = subprocess.Popen(
                        [sys.executable, "-m", "monitord", "run", str(path)],
                        cwd=folder,
                        stdout=log,
                        stderr=log,
                    )
                await eventually(
                    lambda: (metric(metrics, "monitord_rules_evaluation_duration_seconds_count") or 0) > 5, 60
                )
                # This process stands for the devices and the phone: its own collector's pauses (its
                # simulators make many objects) would delay a fault or a page's arrival, not the daemon.
                gc.collect()
                gc.freeze()
                publisher = start_load(config, broker_port, load) if load else None
                taken0 = metric(metrics, LIFT_SAMPLES) or 0.0
                began = time.monotonic()
                try:
                    results = await asyncio.gather(*(trials(c, site, hooks, api, n) for c in CASES))
                finally:
                    if publisher is not None:
                        publisher.send_signal(signal.SIGINT)
                        try:
                            said = publisher.communicate(timeout=10)[0]
                        except subprocess.TimeoutExpired:  # the trials' figures are not lost for it
                            publisher.kill()
                            said = publisher.communicate()[0]
                        sent_rate = float(said or "nan")
                taken = ((metric(metrics, LIFT_SAMPLES) or 0.0) - taken0) / (time.monotonic() - began)
                lift_points = len(config.profile(config.asset("A-E1").profile).json_fields())
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(30)
            hooks.close()
            broker.terminate()
            broker.wait(10)
    print(f"fault in the simulator → ticket → page at a webhook receiver; {n} trials per device")
    if load:
        print(
            f"under MQTT load: {sent_rate:,.0f} lift messages/s published to A-E1; the daemon took "
            f"{taken / lift_points:,.0f} lift messages/s ({taken:,.0f} good lift samples/s) meanwhile"
        )
    print(f"{'device':26} {'rule':34} {'p50':>7} {'p99':>7} {'max':>7} {'target':>7}")
    for case, runs in zip(CASES, results, strict=True):
        lat = [t.page for t in runs]
        target = POLL + 0.1 + case.hold
        verdict = "ok" if percentile(lat, 99) <= target else "MISSED"
        print(
            f"{case.label:26} {case.rule:34} {percentile(lat, 50):6.2f}s {percentile(lat, 99):6.2f}s "
            f"{max(lat):6.2f}s {target:6.2f}s {verdict}"
        )
        for label, part in (
            ("  fault → first seen", [t.seen for t in runs]),
            ("  first seen → page", [t.page - t.seen for t in runs]),
            ("    first seen → ticket opened (`for`)", [t.opened - t.seen for t in runs]),
            ("    ticket opened → page received", [t.page - t.opened for t in runs]),
        ):
            print(f"{label:61} {percentile(part, 50):6.2f}s {percentile(part, 99):6.2f}s {max(part):6.2f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=50, help="per device (default 50)")
    parser.add_argument("--load", type=int, default=0, help="MQTT lift messages/s meanwhile (default 0)")
    parser.add_argument("--in-process", action="store_true", help="mqtt.worker false: paho in the daemon")
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.load, not args.in_process))
