"""Benchmark: paho's own cost per message, stock against reading through a buffer (``BufferedClient``).

Two bare subscribers, each its own process and each doing only ``json.loads`` per message, subscribe
side by side to one Mosquitto: one with ``paho.Client``, one with ``drivers/mqtt_client.BufferedClient``
(what the MQTT driver uses). One publisher sends ``--messages`` lift-sized JSON documents to 100
topics at ``--qos``. Printed: each subscriber's CPU-µs per message (its process's CPU from the
subscription to the last message, over the count) and messages/s. The publisher is usually the
slower party, so the rates are alike and the CPU is the figure. Never part of the test pass/fail.
Needs ``mosquitto``.

``--worker``: the MQTT worker's own path in this process, no broker: PUBLISH packets of ThingsBoard
gateway messages (as ``bench/daemon.py`` makes them) written into a socket pair, all at once at QoS 0,
at QoS 1 no more than 20 unacknowledged (as Mosquitto sends them), read by the worker's
``BufferedClient`` as paho's thread does (its ``_loop``: ``select``, read, write), through the
worker's hand-over → ``Batcher`` → ``chunk_frame`` → ``sendall`` to a thread standing for the
daemon, which answers QoS 1 chunks; the worker's main thread acknowledges them (``take_acks``).
Printed: the CPU of paho's thread and of the acknowledging thread (``thread_time``) per message,
best and median of ``--rounds``; ``--profile`` adds a cProfile of paho's thread for one round.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from bench.daemon import BARE_MQTT, lift_assets, lift_messages, publish_all, site_yaml
from monitord.config.mqtt import router
from monitord.config.site import load_config
from monitord.drivers.mqtt_client import BufferedSocket
from monitord.drivers.mqtt_wire import Chunk, Rows, ack_frame, read_frame
from monitord.drivers.mqtt_worker import Worker
from tests.support.mosquitto import Mosquitto, mosquitto_binary
from tests.support.mqtt_packets import publish_packet

TOPICS = "bench/+/status"
INFLIGHT = 20  # --worker at QoS 1: Mosquitto's max_inflight_messages, its default
BROKER = "mqtt: {url: 'mqtt://127.0.0.1:1', client_id: bench}\n"  # --worker: never connected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    ap.add_argument("--worker", action="store_true", help="the worker's path in process (see above)")
    ap.add_argument("--rounds", type=int, default=7, help="--worker: rounds timed")
    ap.add_argument("--profile", action="store_true", help="--worker: a cProfile of paho's thread")
    args = ap.parse_args()
    if args.worker:
        worker_bench(min(args.messages, 10_000), args.qos, args.rounds, args.profile)
        return
    binary = mosquitto_binary()
    if binary is None:
        print("skipped: no mosquitto")
        return
    document = json.dumps({"ts": 1.7e9, "seq": 1, "values": {f"f{i}": i * 1.5 for i in range(17)}}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(binary, Path(tmp), "max_queued_messages 0\nmax_queued_bytes 0\n")
        broker.start()
        try:
            subscribers = {
                kind: subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        BARE_MQTT,
                        json.dumps([broker.port, args.messages, TOPICS, args.qos, kind]),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for kind in ("stock", "buffered")
            }
            for sub in subscribers.values():
                assert sub.stdout is not None
                sub.stdout.readline()  # "ready"
            time.sleep(0.5)  # both subscriptions made
            pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-pub")
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            t0 = time.time()
            publish_all(pub, [(f"bench/L{n % 100}/status", document) for n in range(args.messages)], args.qos)
            print(f"paho alone (+ json.loads), {args.messages:,} lift documents at QoS {args.qos}:")
            for kind, sub in subscribers.items():
                assert sub.stdout is not None
                got = json.loads(sub.stdout.readline())
                rate = got["n"] / max(got["last"] - t0, 1e-9)
                per = got["cpu_since_ready"] / max(got["n"], 1) * 1e6
                said = f"{got['n']:,} received, {rate:,.0f} msg/s, {per:.1f} CPU-µs per message"
                print(f"  {kind:>8} paho client: {said}")
        finally:
            broker.stop()


def worker_bench(messages: int, qos: int, rounds: int, profile: bool) -> None:
    """``--worker``: see the module's docstring."""
    lifts = 100
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(site_yaml(Path(tmp), lift_assets(lifts, gateway=True), 0, BROKER))
    topics, payloads, _points = lift_messages(lifts, gateway=True)
    packets = [
        publish_packet(topics[n % len(topics)].encode(), payloads[n % len(payloads)], qos, n % 65_535 + 1)
        for n in range(messages)
    ]
    times = [worker_round(router(config), packets, qos) for _ in range(rounds)]
    print(
        f"the MQTT worker in process, {messages:,} gateway messages (10 lifts, {len(payloads[0]):,} bytes) at"
        f" QoS {qos}, {rounds} rounds, CPU-µs per message:"
    )
    for name, got in (("paho's thread", [t[0] for t in times]), ("acknowledging", [t[1] for t in times])):
        per = sorted(t / messages * 1e6 for t in got)
        each = ", ".join(f"{p:.1f}" for p in per)
        print(f"  {name}: best {per[0]:.1f}, median {statistics.median(per):.1f} ({each})")
    rate = statistics.median(t[2] for t in times)
    print(f"  messages/s of wall time (QoS 1: paced by the acknowledgements): median {rate:,.0f}")
    if profile:
        stats = cProfile.Profile(time.thread_time)  # not the time it waits for the GIL or the daemon
        worker_round(router(config), packets, qos, stats)
        pstats.Stats(stats).sort_stats("tottime").print_stats(18)


def worker_round(
    routes: object, packets: list[bytes], qos: int, profile: cProfile.Profile | None = None
) -> tuple[float, float, float]:
    """One pass of ``packets`` through a fresh worker: (paho's thread, the acknowledging thread) CPU-s
    and messages per second of wall time.
    At QoS 0 the "broker" writes them all at once; at QoS 1 at most ``INFLIGHT`` unacknowledged."""
    messages = len(packets)
    paho_end, broker_end = socket.socketpair()
    worker_end, daemon_end = socket.socketpair()
    setup = {
        "host": "127.0.0.1",
        "port": 1,
        "router": routes,
        "client_id": "bench",
        "qos": qos,
        "username": None,
        "password": None,
        "persistent": False,
        "tls": None,
    }
    worker = Worker(worker_end, setup)
    client = worker.driver.client
    paho_end.setblocking(False)
    client._sock = BufferedSocket(paho_end)  # as connected: paho reads PUBLISH packets from it
    # as loop_start leaves it: a pair to wake paho's select (an acknowledgement queued), and a thread
    client._sockpairR, client._sockpairW = paho._socketpair_compat()
    client._thread = threading.current_thread()
    done = threading.Event()
    acking = [0.0]

    def daemon() -> None:  # chunks counted, QoS 1 ones answered as the daemon's reader thread does
        got = 0
        while got < messages and (frame := read_frame(daemon_end)) is not None:
            assert isinstance(frame, Chunk)
            got += sum(item.messages if isinstance(item, Rows) else 1 for item in frame.items)
            if frame.ack is not None:
                daemon_end.sendall(ack_frame(frame.ack))
        done.set()
        daemon_end.close()  # the worker's acknowledging loop ends

    def acks() -> None:
        began = time.thread_time()
        worker.take_acks()
        acking[0] = time.thread_time() - began

    def broker() -> None:  # the packets in (QoS 1: a window of them); the worker's PUBACKs counted
        sent, inflight, left = 0, 0, b""
        while not done.is_set():
            if qos == 0 and sent == 0:
                broker_end.sendall(b"".join(packets))
                sent = messages
            elif qos and inflight < INFLIGHT and sent < messages:
                more = packets[sent : sent + INFLIGHT - inflight]
                broker_end.sendall(b"".join(more))
                sent, inflight = sent + len(more), inflight + len(more)
            if select.select([broker_end], [], [], 0.05)[0]:
                left += broker_end.recv(1 << 16)
                inflight -= len(left) // 4  # PUBACKs, 4 bytes each
                left = left[len(left) // 4 * 4 :]

    threads = [threading.Thread(target=f, daemon=True) for f in (daemon, acks, broker)]
    for t in threads:
        t.start()

    def read() -> None:  # paho's thread, as loop_forever runs it
        while not done.is_set():
            client._loop(0.05)

    began, wall = time.thread_time(), time.perf_counter()
    if profile is not None:
        profile.runcall(read)
    else:
        read()
    spent, wall = time.thread_time() - began, time.perf_counter() - wall
    for t in threads:
        t.join(10)
    client._reset_sockets()
    for s in (broker_end, worker_end):
        s.close()
    return spent, acking[0], messages / wall


if __name__ == "__main__":
    main()
