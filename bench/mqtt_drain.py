"""Benchmark: the MQTT driver's own work per message, in process, with the real stages behind the bus.

``MqttDriver.drain`` over queued messages as paho would hand them over: 100 lifts' JSON documents
(17 points) on their own topics, or (``--gateway``) ten lifts per ThingsBoard gateway message; the
bus feeds the real state table, SQLite store (its writer thread counted) and metrics. Prints CPU
microseconds per message, best of five rounds; ``--profile`` adds a cProfile of one round (with
``--worker``, of the worker's parse too); ``--sinks`` times only the metrics' and the store writer's
share, a ``SampleBlock`` against its batches as a list. No socket and no paho: what
``bench/daemon.py`` measures on top is the client's network loop.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from monitord.config.mqtt import router
from monitord.config.site import CONFIG_DIR, load_config
from monitord.config.yamlio import load_yaml
from monitord.core.clock import ManualClock
from monitord.core.metrics import Metrics
from monitord.core.model import SampleBatch, SampleBlock
from monitord.daemon.core import build_core
from monitord.drivers.mqtt import MqttDriver
from monitord.drivers.mqtt_client import READ_SIZE
from monitord.drivers.mqtt_wire import Batcher, Chunk, chunk_frame, decode_frame
from monitord.ingest.profiles import DeviceProfile
from monitord.simulators.models import MODELS
from monitord.simulators.mqtt_publisher import document
from monitord.store.sqlite import SqliteStore

LIFTS = 100
PER_GATEWAY_MESSAGE = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--gateway", action="store_true", help="ten lifts per ThingsBoard gateway message")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one round")
    ap.add_argument(
        "--worker",
        action="store_true",
        help="the daemon's side of mqtt.worker: chunks as a worker parses them (read by paho: 64 KiB) "
        "decoded and drained; the worker's own parse printed beside it",
    )
    ap.add_argument(
        "--sinks",
        action="store_true",
        help="only the metrics' and the store writer's share: a SampleBlock against the same batches as a "
        "plain list (the batch-by-batch path), alternating in this process",
    )
    args = ap.parse_args()
    if args.sinks:
        sinks_ab()
        return
    tmp = Path(tempfile.mkdtemp())
    conn = "{{mqtt: {{gateway: thingsboard, device: Lift-{i}}}}}" if args.gateway else "{{mqtt: {{}}}}"
    assets = "".join(
        f"  - {{id: L{i}, type: elevator, profile: elevator-gbt24476, connection: {conn.format(i=i)}}}\n"
        for i in range(LIFTS)
    )
    (tmp / "site.yaml").write_text(
        "site: {id: bench}\n"
        f"store: {{kind: sqlite, path: {tmp / 'store.db'}}}\n"
        "mqtt: {url: 'mqtt://127.0.0.1:1', client_id: bench}\n"
        f"profiles:\n  - include: {CONFIG_DIR / 'profiles' / 'elevator-gbt24476.yaml'}\n"
        "rules:\n  - include: rules/packs/elevator.yaml\n  - include: rules/packs/comms.yaml\n"
        f"assets:\n{assets}"
    )
    config = load_config(tmp / "site.yaml")
    clock = ManualClock(1.7e9)
    metrics = Metrics()
    core = build_core(config, clock, SqliteStore(tmp / "store.db"), metrics=metrics)
    lift = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "elevator-gbt24476.yaml"))
    docs = [document(lift, MODELS["elevator"](f"L{i}").values, 1.7e9) for i in range(LIFTS)]
    if args.gateway:
        for d in docs:
            d["ts"] = 1_700_000_000_000  # the gateway's milliseconds
        step = PER_GATEWAY_MESSAGE
        payloads = [
            json.dumps({f"Lift-{j}": [docs[j]] for j in range(i, i + step)}) for i in range(0, LIFTS, step)
        ]
        topics = ["v1/gateway/telemetry"] * len(payloads)
        n = 5_000
    else:
        payloads = [json.dumps(d) for d in docs]
        topics = [f"bench/elevator/L{i}/status" for i in range(LIFTS)]
        n = 50_000
    messages = [(1.7e9, topics[k % len(topics)], payloads[k % len(payloads)].encode()) for k in range(n)]
    driver = MqttDriver("127.0.0.1", 1, router(config), core.bus, clock, metrics, client_id="bench")

    def one_round() -> float:
        driver._queue.extend(messages)  # as paho's thread leaves them
        began = time.process_time()
        driver.drain()
        return time.process_time() - began

    if args.worker:
        one_round = worker_round(driver, messages, args.profile)

    best = min(one_round() for _ in range(5))
    what = f"gateway messages of {PER_GATEWAY_MESSAGE} lifts" if args.gateway else "single-lift messages"
    print(f"MQTT drain, {n:,} {what}: {best / n * 1e6:.1f} CPU-µs per message ({n / best:,.0f}/CPU-s)")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(one_round)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


def worker_round(
    driver: MqttDriver, messages: list[tuple[float, str, bytes]], profile: bool = False
) -> Callable[[], float]:
    """A round of the daemon's side with a worker: the chunks' frames decoded and drained
    (``profile``: a cProfile of the worker's parse printed first)."""
    batcher = Batcher(driver.router)
    frames: list[bytes] = []

    def parse() -> None:
        size = 0
        for ts, topic, payload in messages:
            batcher.add(ts, topic, payload)
            size += len(payload)
            if size >= READ_SIZE:  # what one read of the socket holds
                frames.append(chunk_frame(Chunk(tuple(batcher.take()))))
                size = 0
        frames.append(chunk_frame(Chunk(tuple(batcher.take()))))

    began = time.process_time()
    if profile:
        worker_profile = cProfile.Profile()
        worker_profile.runcall(parse)
        pstats.Stats(worker_profile).sort_stats("tottime").print_stats(15)
    else:
        parse()
    spent = time.process_time() - began
    print(f"  the worker's parse: {spent / len(messages) * 1e6:.1f} CPU-µs per message")

    def one_round() -> float:
        began = time.process_time()
        for data in frames:
            chunk = decode_frame(data)
            assert isinstance(chunk, Chunk)
            driver._queue.extend(chunk.items)
            driver.drain()
        return time.process_time() - began

    return one_round


def sinks_ab(rows: int = 190, rounds: int = 300) -> None:
    """``Metrics.count_batches`` and ``write_samples`` per row: a block (one 64 KiB chunk of gateway
    messages: ~190 lifts) against its batches as a list; best of seven, thread CPU (not the writer's)."""
    points = tuple(f"p{i}" for i in range(17))
    values, good = np.ones((rows, 17)), np.zeros((rows, 17), dtype=np.int8)
    batches = [SampleBatch(1.7e9 + i, f"L{i % LIFTS}", points, values[i], good[i]) for i in range(rows)]
    metrics = Metrics()
    metrics.set_asset_types({f"L{i}": "elevator" for i in range(LIFTS)})
    unbounded = type("Unbounded", (SqliteStore,), {"max_queued": 10**12})  # no drops within the rounds
    store = unbounded(Path(tempfile.mkdtemp()) / "s.db", flush_interval=3600.0)

    def per_row(sink: Callable[[Sequence[SampleBatch]], None], arg: Sequence[SampleBatch]) -> float:
        best = math.inf
        for _ in range(7):
            began = time.thread_time()
            for _ in range(rounds):
                sink(arg)
            best = min(best, time.thread_time() - began)
        return best / rounds / rows * 1e6

    try:
        for name, sink in (
            ("Metrics.count_batches", metrics.count_batches),
            ("write_samples", store.write_samples),
        ):
            plain, block = per_row(sink, list(batches)), per_row(sink, SampleBlock(batches, points, values))
            said = f"batch by batch {plain:.3f} µs per row, SampleBlock {block:.3f} ({block / plain:.2f}×)"
            print(f"{name}: {said}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
