"""Benchmark: the whole daemon as its own process, over real sockets, beside bare-library baselines.

Two paths, each next to a baseline that does the same protocol work with nothing else, in the
same run on the same load:

1. **Modbus TCP.** ``monitord sim`` (its own process) serves ``--devices`` Eastron SDM630 meters
   behind ``--ports`` gateway ports; ``monitord run`` (its own process) polls them every
   ``--poll`` seconds, decodes, evaluates the packs and stores to SQLite. Printed: points/s
   sustained (from the daemon's own ``monitord_bus_samples_total``), the daemon's CPU share
   (utime + stime of its process, every thread) and peak RSS, and CPU-seconds per 100,000
   points. Baseline: a bare pymodbus loop (its own process), one client per port, reading the
   same requests at the same interval, decoding nothing.
2. **MQTT.** ``--messages`` elevator JSON documents (at ``--qos``, 0 by default) published as fast
   as one paho client can to 100 elevator topics through one Mosquitto, with ``monitord run`` and a bare paho
   subscriber (``json.loads`` per message) subscribed side by side; then the same lifts behind a
   ThingsBoard IoT Gateway, ten per ``v1/gateway/telemetry`` message. Printed: each one's
   messages/s from the first publish to the last message received, and the ratio.

One round each (the machine is shared; run it twice to see the spread). Never part of the test
pass/fail. Needs ``mosquitto``.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.drivers.modbus import plan_reads
from monitord.ingest.profiles import DeviceProfile
from tests.support.mosquitto import Mosquitto, mosquitto_binary
from tests.support.net import child_pids, free_port, wait_port

TICKS = os.sysconf("SC_CLK_TCK")
GATEWAY_DEVICES = 10
WINDOW = 10_000  # QoS 1 messages in paho's hands at once (its message ids wrap at 65,535)
MONITORD = [sys.executable, "-m", "monitord", "--log-level", "warning"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """``cpu_seconds`` of a process and its live children (an ended child's CPU is not counted)."""
    total = cpu_seconds(pid)
    for child in child_pids(pid):
        with contextlib.suppress(FileNotFoundError):  # ended in between
            total += cpu_seconds(child)
    return total


def waited_for_cpu(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (/proc schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def samples_total(port: int, metric: str = "monitord_bus_samples_total") -> float:
    """The sum of a counter's series on the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric))


def wait_metrics(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples_total(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def site_yaml(folder: Path, assets: str, metrics: int, extra: str = "", name: str = "site.yaml") -> Path:
    profiles = CONFIG_DIR / "profiles"
    text = (
        "site: {id: bench}\n"
        f"store: {{kind: sqlite, path: {folder / 'store.db'}}}\n"
        f"notify: {{log: {folder / 'notify.db'}}}\n"
        f"metrics: {{port: {metrics}}}\n"
        "api: {port: 0}\n"
        f"{extra}"
        "profiles:\n"
        f"  - include: {profiles / 'eastron-sdm630.yaml'}\n"
        f"  - include: {profiles / 'elevator-gbt24476.yaml'}\n"
        # the power pack reads fire-monitor channels too; with no such asset it costs nothing
        f"  - include: {profiles / 'fire-monitor.yaml'}\n"
        "rules:\n"
        "  - include: rules/packs/power.yaml\n"
        "  - include: rules/packs/comms.yaml\n"
        "  - include: rules/packs/elevator.yaml\n"
        f"assets:\n{assets}"
    )
    path = folder / name
    path.write_text(text)
    return path


def sdm630() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))


# ---------------------------------------------------------------- Modbus

BARE_MODBUS = r"""
import asyncio, json, sys, time
from pymodbus.client import AsyncModbusTcpClient
ports, units, plan, poll, seconds = json.loads(sys.argv[1])

async def line(port, counter):
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        for unit in range(1, units + 1):
            for start, count, points in plan:
                reply = await client.read_input_registers(start, count=count, device_id=unit)
                if not reply.isError():
                    counter[0] += points
        next_at += poll
        await asyncio.sleep(max(0.0, next_at - loop.time()))

async def main():
    counter = [0]
    tasks = [asyncio.create_task(line(p, counter)) for p in ports]
    await asyncio.sleep(seconds / 3)  # warm-up: connections made, first polls through
    c0, t0 = counter[0], time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    print(json.dumps({"points_per_s": (counter[0] - c0) / (time.perf_counter() - t0),
                      "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0}))
    for t in tasks:
        t.cancel()
    sys.stdout.flush()
    import os; os._exit(0)

asyncio.run(main())
"""


def modbus(devices: int, ports: int, poll: float, seconds: float, pipeline: int = 1, sims: int = 1) -> None:
    profile = sdm630()
    assert profile.modbus is not None
    plan = plan_reads(profile.modbus_encodings(), profile.modbus)
    points_per_poll = sum(len(r.codec.names) for r in plan)
    units = devices // ports
    port_numbers: list[int] = []
    while len(port_numbers) < ports:  # free_port does not hold the port: 48 draws can repeat one
        if (port := free_port()) not in port_numbers:
            port_numbers.append(port)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        metrics = free_port()
        lines = [
            "".join(
                f"  - {{id: M{p}-{u}, type: power_meter, profile: eastron-sdm630, connection:"
                f" {{modbus: {{host: 127.0.0.1, port: {port}, unit: {u}, pipeline: {pipeline}}}}}}}\n"
                for u in range(1, units + 1)
            )
            for p, port in enumerate(port_numbers)
        ]
        site = site_yaml(folder, "".join(lines), metrics, f"poll: {poll}s\n")
        # More offered load than one simulator process serves needs more of them, each serving every
        # sims-th port (their CPU is not counted, only printed).
        parts = [
            site_yaml(folder, "".join(lines[k::sims]), metrics, f"poll: {poll}s\n", f"sim{k}.yaml")
            for k in range(sims)
        ]
        # Physics once a second (as often as the daemon reads): at the default 0.2 s, stepping
        # thousands of meters took most of a simulator's CPU.
        simulators = [
            subprocess.Popen([*MONITORD, "sim", "--step", "1s", str(part)], stdout=subprocess.DEVNULL)
            for part in parts
        ]
        try:
            for port in port_numbers:
                wait_port(port, timeout=300)  # pymodbus builds each device's datastore: ~10 ms each
            # Baseline first, alone against the simulator, so neither steals the other's replies.
            bare = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    BARE_MODBUS,
                    json.dumps(
                        [
                            port_numbers,
                            units,
                            [(r.start, r.count, len(r.codec.names)) for r in plan],
                            poll,
                            seconds,
                        ]
                    ),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            base = json.loads(bare.stdout)
            daemon = subprocess.Popen([*MONITORD, "run", str(site)], stdout=subprocess.DEVNULL)
            try:
                wait_metrics(metrics)
                time.sleep(seconds / 3)  # warm-up: every poller connected and on its schedule
                s0, c0, t0 = samples_total(metrics), cpu_seconds(daemon.pid), time.perf_counter()
                sim0 = sum(cpu_seconds(sim.pid) for sim in simulators)
                w0 = waited_for_cpu(daemon.pid)
                time.sleep(seconds)
                s1, c1, t1 = samples_total(metrics), cpu_seconds(daemon.pid), time.perf_counter()
                sim1 = sum(cpu_seconds(sim.pid) for sim in simulators)
                w1 = waited_for_cpu(daemon.pid)
                rss = peak_rss_mb(daemon.pid)
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
        finally:
            for sim in simulators:
                sim.terminate()
                sim.wait(timeout=30)
    ours = (s1 - s0) / (t1 - t0)
    share = (c1 - c0) / (t1 - t0)
    offered = devices * points_per_poll / poll
    print(
        f"Modbus TCP, {devices} SDM630 on {ports} ports ({sims} simulator processes), {poll:g} s poll,"
        f" pipeline {pipeline}"
        f" (offered {offered:,.0f} pts/s):"
    )
    print(
        f"  monitord run: {ours:,.0f} points/s at {share:.1%} of a core, peak RSS {rss:.0f} MB;"
        f" {share / max(ours, 1) * 1e5:.2f} CPU-s per 100k points"
    )
    print(
        f"  bare pymodbus loop: {base['points_per_s']:,.0f} points/s at {base['cpu_s'] / base['wall_s']:.1%}"
        f" of a core; {base['cpu_s'] / base['wall_s'] / max(base['points_per_s'], 1) * 1e5:.2f} CPU-s"
        " per 100k points"
    )
    print(f"  throughput ratio monitord/bare: {ours / max(base['points_per_s'], 1):.2f}")
    print(f"  the simulators (not counted): {(sim1 - sim0) / (t1 - t0):.1%} of a core while monitord ran")
    # On a shared machine a daemon that falls behind may simply not have been given a CPU.
    print(f"  monitord's threads waited for a CPU {(w1 - w0) / (t1 - t0):.1%} of the time (other load)")
    need = share / max(ours, 1) * 1e5
    print(f"  at 100k points/s the daemon would need {need:.0%} of a core (target ≤ 50 %)")


# ---------------------------------------------------------------- MQTT

# A bare subscriber (its own process): json.loads per message, nothing else; kind is "stock" (paho.Client)
# or "buffered" (the driver's BufferedClient, for bench/mqtt_client.py). It prints "warm" once the first
# ``warmup`` messages are in; cpu_s counts from then (from its start when warmup is 0).
BARE_MQTT = r"""
import json, os, sys, time
import paho.mqtt.client as mqtt
from monitord.drivers.mqtt_client import BufferedClient
port, expected, topic, qos, kind, warmup = json.loads(sys.argv[1])
state = {"n": 0, "last": 0.0}
def on_message(_c, _u, msg):
    json.loads(msg.payload)
    state["n"] += 1
    state["last"] = time.time()
    if state["n"] == warmup:
        state["cpu_warm"] = time.process_time()
        print("warm", flush=True)
make = BufferedClient if kind == "buffered" else mqtt.Client
c = make(mqtt.CallbackAPIVersion.VERSION2, client_id="bare-bench-" + kind)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.subscribe(topic, qos=qos)
c.loop_start()
cpu0 = time.process_time()
print("ready", flush=True)
deadline = time.time() + 600
while state["n"] < expected + warmup and time.time() < deadline:
    time.sleep(0.05)
now = time.process_time()
said = {
    "n": state["n"] - warmup,
    "last": state["last"],
    "cpu_s": now - state.get("cpu_warm", 0.0),
    "cpu_since_ready": now - cpu0,
}
print(json.dumps(said), flush=True)
os._exit(0)
"""


def watch_samples(port: int, s0: float, want: float, every: float = 0.05) -> tuple[float, float]:
    """The daemon's sample count, watched from the first publish (in a thread, beside the publisher
    and the bare subscriber): (samples seen, when the last of them came). That time is the midpoint
    between the scrape that saw the count move and the one before, so the daemon is charged half a
    scrape interval at most, not the time the others took to finish (at QoS 1 the publisher's own
    acknowledgements end a second after both subscribers did)."""
    seen, last_change, before = s0, time.time(), time.time()
    deadline = time.time() + 600
    while seen < want and time.time() < deadline and time.time() - last_change < 10:
        time.sleep(every)
        now_seen, at = samples_total(port), time.time()
        if now_seen != seen:
            seen, last_change = now_seen, (before + at) / 2
        before = at
    return seen, last_change


def publish_all(pub: Any, messages: list[tuple[str, bytes]], qos: int) -> None:
    """Every message, as fast as paho takes them; then the publisher's loop is stopped.

    At QoS 1 paho holds what is past its in-flight window until the broker acknowledges, and its
    message ids wrap at 65,535, so at most ``WINDOW`` wait at once (the oldest is waited for)."""
    window: collections.deque[Any] = collections.deque()
    for topic, payload in messages:
        window.append(pub.publish(topic, payload, qos=qos))
        if qos and len(window) > WINDOW:
            window.popleft().wait_for_publish(60)
    for info in window if qos else ():
        info.wait_for_publish(60)
    pub.loop_stop()


def lift_messages(topics: int, gateway: bool) -> tuple[list[str], list[bytes], int]:
    """Each lift's JSON document on its own topic, or (``gateway``) ``GATEWAY_DEVICES`` lifts per
    ThingsBoard IoT Gateway message with millisecond stamps: (topics, payloads, points per message)."""
    from monitord.simulators.models import MODELS
    from monitord.simulators.mqtt_publisher import document

    elevator = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "elevator-gbt24476.yaml"))
    docs = [document(elevator, MODELS["elevator"](f"L{i}").values, time.time()) for i in range(topics)]
    points = len(elevator.json_fields())
    if not gateway:
        return (
            [f"bench/elevator/L{i}/status" for i in range(topics)],
            [json.dumps(d).encode() for d in docs],
            points,
        )
    for d in docs:
        d["ts"] = int(time.time() * 1000)
    payloads = [
        json.dumps({f"Lift-{j}": [docs[j]] for j in range(i, i + GATEWAY_DEVICES)}).encode()
        for i in range(0, topics, GATEWAY_DEVICES)
    ]
    return ["v1/gateway/telemetry"] * len(payloads), payloads, points * GATEWAY_DEVICES


def lift_assets(topics: int, gateway: bool) -> str:
    """``topics`` elevators as site.yaml's assets: on their own topics, or behind the gateway."""
    conn = "{{mqtt: {{gateway: thingsboard, device: Lift-{i}}}}}" if gateway else "{{mqtt: {{}}}}"
    return "".join(
        f"  - {{id: L{i}, type: elevator, profile: elevator-gbt24476, connection: {conn.format(i=i)}}}\n"
        for i in range(topics)
    )


def mqtt(
    messages: int, topics: int, qos: int, gateway: bool = False, worker: bool = True, warmup: int = 0
) -> None:
    """``messages`` timed, after ``warmup`` messages both subscribers take untimed (a running
    daemon's caches, allocations and connections are made; so are the bare subscriber's)."""
    import paho.mqtt.client as paho

    binary = mosquitto_binary()
    if binary is None:
        print("MQTT: skipped, no mosquitto")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Mosquitto(binary, folder, "max_queued_messages 0\nmax_queued_bytes 0\n")
        broker.start()
        metrics = free_port()
        assets = lift_assets(topics, gateway)
        url = f"mqtt://127.0.0.1:{broker.port}"
        how = "true" if worker else "false"
        mqtt_yaml = f"mqtt: {{url: '{url}', client_id: bench, qos: {qos}, worker: {how}}}\n"
        site = site_yaml(folder, assets, metrics, mqtt_yaml)
        topic_of, payloads, points = lift_messages(topics, gateway)
        daemon = subprocess.Popen([*MONITORD, "run", str(site)], stdout=subprocess.DEVNULL)
        bare = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BARE_MQTT,
                json.dumps(
                    [
                        broker.port,
                        messages,
                        topic_of[0] if gateway else "bench/elevator/+/+",
                        qos,
                        "stock",
                        warmup,
                    ]
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert bare.stdout is not None
            bare.stdout.readline()  # "ready"
            wait_metrics(metrics)
            time.sleep(2)  # the daemon's subscription is made once it is connected
            pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-pub")
            pub.connect("127.0.0.1", broker.port)
            if warmup:
                pub.loop_start()
                s_cold = samples_total(metrics)
                publish_all(
                    pub,
                    [(topic_of[n % len(payloads)], payloads[n % len(payloads)]) for n in range(warmup)],
                    qos,
                )
                assert bare.stdout.readline().strip() == "warm"
                deadline = time.time() + 120
                while samples_total(metrics) < s_cold + warmup * points and time.time() < deadline:
                    time.sleep(0.05)
            s0, c0, w0 = samples_total(metrics), cpu_seconds(daemon.pid), tree_cpu_seconds(daemon.pid)
            pub.loop_start()
            t0 = time.time()
            watcher = concurrent.futures.ThreadPoolExecutor(1)
            watching = watcher.submit(watch_samples, metrics, s0, s0 + messages * points)
            publish_all(
                pub,
                [(topic_of[n % len(payloads)], payloads[n % len(payloads)]) for n in range(messages)],
                qos,
            )
            base = json.loads(bare.stdout.readline())
            seen, last_change = watching.result()
            watcher.shutdown()
            ours_n = (seen - s0) / points
            ours_rate = ours_n / (last_change - t0)
            cpu = cpu_seconds(daemon.pid) - c0
            worker = tree_cpu_seconds(daemon.pid) - w0 - cpu  # the MQTT worker process, if one runs
            rss = peak_rss_mb(daemon.pid) + sum(peak_rss_mb(c) for c in child_pids(daemon.pid))
            given_up = samples_total(metrics, "monitord_mqtt_queue_dropped_messages_total")
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            bare.kill()
            broker.stop()
    base_rate = base["n"] / (base["last"] - t0)
    shape = f"{GATEWAY_DEVICES} lifts per gateway message" if gateway else f"over {topics} topics"
    how = "paho and the parse in a worker process" if worker else "in process"
    after = f", after {warmup:,} untimed" if warmup else ""
    print(f"MQTT, {messages:,} elevator JSON messages ({points} points) at QoS {qos}, {shape}, {how}{after}:")
    print(
        f"  monitord run: {ours_n:,.0f} taken, {ours_rate:,.0f} msg/s, {cpu + worker:.1f} CPU-s"
        f" ({(cpu + worker) / max(ours_n, 1) * 1e6:.0f} µs per message: {cpu / max(ours_n, 1) * 1e6:.0f} in"
        f" the daemon, {worker / max(ours_n, 1) * 1e6:.0f} in its worker), RSS {rss:.0f}MB;"
        f" {given_up:,.0f} given up with a full queue (QoS 0)"
    )
    bare_us = base["cpu_s"] / max(base["n"], 1) * 1e6
    print(
        f"  bare paho + json.loads: {base['n']:,} received, {base_rate:,.0f} msg/s"
        f" ({bare_us:.0f} CPU-µs per message)"
    )
    print(f"  ratio monitord/bare: {ours_rate / base_rate:.2f} (target ≥ 0.8)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--ports", type=int, default=25)
    ap.add_argument("--poll", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--only", choices=("modbus", "mqtt"))
    ap.add_argument("--pipeline", type=int, default=1, help="Modbus requests in flight per connection")
    ap.add_argument("--sims", type=int, default=1, help="Modbus simulator processes sharing the ports")
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0, help="MQTT: publish and subscribe at")
    ap.add_argument("--no-gateway", action="store_true", help="MQTT: single-lift topics only")
    ap.add_argument("--no-single", action="store_true", help="MQTT: gateway messages only")
    ap.add_argument("--in-process", action="store_true", help="MQTT: mqtt.worker false (paho in the daemon)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="MQTT: messages both subscribers take first, untimed (default 0)",
    )
    args = ap.parse_args()
    if args.only != "mqtt":
        modbus(args.devices, args.ports, args.poll, args.seconds, args.pipeline, args.sims)
    if args.only != "modbus":
        worker = not args.in_process
        if not args.no_single:
            mqtt(args.messages, args.topics, args.qos, worker=worker, warmup=args.warmup)
        if not args.no_gateway:
            mqtt(
                args.messages // GATEWAY_DEVICES,
                args.topics,
                args.qos,
                gateway=True,
                worker=worker,
                warmup=args.warmup // GATEWAY_DEVICES,
            )


if __name__ == "__main__":
    main()
