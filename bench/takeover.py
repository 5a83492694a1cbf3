"""HA takeover time and the cost of coordination (issue 14): an HA pair of `monitord run` processes on a
real Mosquitto and InfluxDB against `monitord sim`; the active is killed (kill -9) ``--kills`` times and
frozen (SIGSTOP: a hung host or a lost network, where only the keep-alive tells) ``--freezes`` times.

Takeover time: from the signal until the other instance's /healthz says ``active`` (polled every 20 ms).
Each killed or frozen instance is restarted and comes back as standby (a live holder keeps the lead).
Cost of coordination: ``monitord_fleet_cpu_seconds_total`` (paho's fleet thread + the decisions on the
event loop) over ``--seconds`` of steady running, per second and per evaluation tick, for both roles.

Run: PYTHONPATH=. .venv/bin/python bench/takeover.py [--kills 10] [--freezes 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.fleet import Instance, ha_yaml, simulator, wait_for
from tests.support.influx import InfluxServer, V2WriteProxy
from tests.support.mosquitto import Mosquitto, mosquitto_binary
from tests.support.webhooks import WebhookReceiver


def sample(inst: Instance, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", inst.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def active_of(pair: dict[str, Instance]) -> Instance | None:
    roles = {n: i.role() for n, i in pair.items()}
    actives = [n for n, r in roles.items() if r == "active"]
    return pair[actives[0]] if len(actives) == 1 and None not in roles.values() else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Watcher:
    """When the broker delivered each will ("offline") and each claim: splits a takeover into the
    broker noticing and the standby acting on it."""

    def __init__(self, port: int) -> None:
        self.events: list[tuple[float, str, dict[str, object]]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_a: c.subscribe("monitord/tower-a/#", 1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        self.events.append((time.monotonic(), m.topic, json.loads(m.payload) if m.payload else {}))

    def first_after(self, started: float, topic_end: str, key: str, value: str) -> float:
        found = (
            t - started
            for t, topic, body in list(self.events)
            if t >= started and topic.endswith(topic_end) and body.get(key) == value
        )
        return next(found, float("nan"))


def takeovers(
    pair: dict[str, Instance], path: Path, folder: Path, n: int, how: signal.Signals, watcher: Watcher
) -> tuple[list[float], list[float], list[float]]:
    """Per takeover: signal → the other's /healthz says active; signal → the will; signal → the claim."""
    times: list[float] = []
    wills: list[float] = []
    claims: list[float] = []
    for _ in range(n):
        active = wait_for(lambda: active_of(pair), 60)
        other = next(i for i in pair.values() if i is not active)
        wait_for(lambda o=other: o.role() == "standby", 30)  # type: ignore[misc]
        # A standby that has just started listens for fleet.settle (1 s) before it may claim: measure
        # the standby of a running pair, not one in its first second (that case is the bound's + settle).
        time.sleep(2.0)
        started = time.monotonic()
        os.kill(active.proc.pid, how)
        wait_for(lambda o=other: o.role() == "active", 30, interval=0.02)  # type: ignore[misc]
        times.append(time.monotonic() - started)
        wills.append(watcher.first_after(started, f"/instances/{active.name}", "state", "offline"))
        claims.append(watcher.first_after(started, "/leader", "instance", other.name))
        if how == signal.SIGSTOP:
            os.kill(active.proc.pid, signal.SIGKILL)
        active.proc.wait(timeout=10)
        active.stop()
        pair[active.name] = Instance(path, active.name, folder)  # back as standby
    return times, wills, claims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--freezes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0, help="steady running measured for the cost")
    args = parser.parse_args()
    binary = mosquitto_binary()
    assert binary, "mosquitto is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "influx").mkdir()
        broker, influx = Mosquitto(binary, folder), InfluxServer(folder / "influx")
        broker.start()
        influx.start()
        influx.query("CREATE DATABASE monitord")
        proxy, hooks = V2WriteProxy(influx.url), WebhookReceiver()
        path = ha_yaml(folder, broker.port, hooks, proxy.url)
        sim = simulator(path, folder)
        watcher = Watcher(broker.port)
        pair = {n: Instance(path, n, folder) for n in ("a", "b")}
        try:
            active = wait_for(lambda: active_of(pair), 60)
            standby = next(i for i in pair.values() if i is not active)
            time.sleep(5)  # past start-up: steady polling and evaluation
            cpu = "monitord_fleet_cpu_seconds_total"
            ticks = "monitord_rules_evaluation_duration_seconds_count"
            before = {i.name: (sample(i, cpu), sample(i, ticks)) for i in (active, standby)}
            t0 = time.monotonic()
            time.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            after = {i.name: (sample(i, cpu), sample(i, ticks)) for i in (active, standby)}
            (ca, ta), (ca2, ta2) = before[active.name], after[active.name]
            (cs, _), (cs2, _) = before[standby.name], after[standby.name]
            per_tick = (ca2 - ca) / max(1.0, ta2 - ta)
            print(f"coordination cost over {elapsed:.0f} s (keep-alive 2 s):")
            print(
                f"  active:  {1e3 * (ca2 - ca) / elapsed:.3f} CPU-ms/s, {1e6 * per_tick:.1f} CPU-µs per tick"
            )
            print(f"           ({ta2 - ta:.0f} evaluation ticks, {(ta2 - ta) / elapsed:.1f}/s)")
            print(f"  standby: {1e3 * (cs2 - cs) / elapsed:.3f} CPU-ms/s")
            for label, n, how in (
                ("kill -9", args.kills, signal.SIGKILL),
                ("SIGSTOP", args.freezes, signal.SIGSTOP),
            ):
                if n:
                    times, wills, claims = takeovers(pair, path, folder, n, how, watcher)
                    print(
                        f"takeover after {label} ({n}x): p50 {statistics.median(times):.2f} s, "
                        f"p99 {pct(times, 0.99):.2f} s, max {max(times):.2f} s "
                        f"(bound 2 × keep-alive = 4.0 s)",
                        flush=True,
                    )
                    print("  each (s):       " + " ".join(f"{t:.2f}" for t in times))
                    print(
                        "  will at (s, nan: not before the takeover): " + " ".join(f"{t:.2f}" for t in wills)
                    )
                    print("  claim at (s):   " + " ".join(f"{t:.2f}" for t in claims), flush=True)
        finally:
            for inst in pair.values():
                inst.stop()
            sim.terminate()
            sim.wait(timeout=30)
            proxy.close()
            hooks.close()
            influx.kill()
            broker.stop()


if __name__ == "__main__":
    main()
