"""Benchmark: paho's own cost per message, stock against reading through a buffer (``BufferedClient``).

Two bare subscribers, each its own process and each doing only ``json.loads`` per message, subscribe
side by side to one Mosquitto: one with ``paho.Client``, one with ``drivers/mqtt_client.BufferedClient``
(what the MQTT driver uses). One publisher sends ``--messages`` lift-sized JSON documents to 100
topics at ``--qos``. Printed: each subscriber's CPU-µs per message (its process's CPU from the
subscription to the last message, over the count) and messages/s. The publisher is usually the
slower party, so the rates are alike and the CPU is the figure. Never part of the test pass/fail.
Needs ``mosquitto``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho

from bench.daemon import BARE_MQTT, publish_all
from tests.support.mosquitto import Mosquitto, mosquitto_binary

TOPICS = "bench/+/status"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
