"""The MQTT worker process (``mqtt.worker``, issue 13): paho and the parse in a child process.

First, pure logic: what the worker hands over (``mqtt_wire.Batcher``), drained by the daemon, gives
the same batches, counts and logs as the in-process drain, for good, bad, mixed and status messages.
Then over real Mosquitto: a killed worker is counted, its lifts go ``comm_error`` at once, a new one
is started and nothing is lost or forged at QoS 1; a QoS 1 message is acknowledged to the broker
only once the daemon holds it (a daemon that stops taking leaves the rest with the broker); and
the worker never outlives ``monitord run``, even a ``kill -9`` of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.clock import ManualClock, SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch, SampleBlock
from monitord.drivers.mqtt import MqttDriver, Router, StatusRoute, TopicRoute
from monitord.drivers.mqtt_client import stop_loop
from monitord.drivers.mqtt_keeper import WorkerDriver
from monitord.drivers.mqtt_routes import field_path
from monitord.drivers.mqtt_wire import Batcher, Chunk, chunk_frame, decode_frame
from monitord.ingest.bus import SampleBus
from monitord.ingest.state import AssetSlot, StateTable
from tests.support import eventually, run, site_yaml
from tests.support.counters import driver_counts
from tests.support.net import child_pids

FIELDS = ("speed", "floor")


def lift(asset: str) -> TopicRoute:
    return TopicRoute(asset, FIELDS, tuple(field_path(f"values.{f}") for f in FIELDS), ("ts",), ("seq",))


def router() -> Router:
    return Router(
        {"site/lift/E1/status": lift("E1"), "site/plain/T1": TopicRoute("T1", ("t",), ())},
        {"v1/gateway/telemetry": {"Lift-7": lift("L7"), "Lift-8": lift("L8")}},
        {"v1/gateway/disconnect": StatusRoute("disconnect", devices={"Lift-7": "L7"})},
    )


def entry(seq: int, speed: object, ts: object = 1_700_000_000_000) -> dict[str, object]:
    return {"ts": ts, "seq": seq, "values": {"speed": speed, "floor": seq}}


MESSAGES = [
    ("site/lift/E1/status", {"ts": 1_700_000_000.5, "seq": 1, "values": {"speed": 1.5, "floor": 3}}),
    ("v1/gateway/telemetry", {"Lift-7": [entry(1, 0.5), entry(2, 0.7)], "Lift-8": entry(1, 2)}),
    ("v1/gateway/telemetry", {"Lift-7": [entry(4, 1.0)], "Lift-8": [entry(2, "fast")]}),  # one bad entry
    ("v1/gateway/telemetry", {"Lift-9": [entry(1, 1.0)]}),  # a device mapped to nothing
    ("v1/gateway/telemetry", {"Lift-8": [entry(3, 1e999)]}),  # not finite
    ("v1/gateway/telemetry", {"Lift-8": [entry(4, 1.0, ts=1_000)]}),  # a clock far off: receive time
    ("site/lift/E1/status", {"ts": 1_700_000_001.5, "seq": 5, "values": {"speed": True}}),  # floor missing
    ("v1/gateway/disconnect", {"device": "Lift-7"}),
    ("v1/gateway/telemetry", {"Lift-7": [entry(5, 0.9)]}),  # back, after its word
    ("site/plain/T1", 21.5),
    ("site/lift/E1/status", "not json"),
]


def drained(via_worker: bool) -> tuple[list[tuple[object, ...]], dict[str, float]]:
    """The batches and counters of MESSAGES through the in-process drain, or through the worker's
    ``Batcher``, a frame and the daemon's drain."""
    metrics, bus = Metrics(), SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = MqttDriver("127.0.0.1", 1, router(), bus, ManualClock(1_700_000_000.0), metrics, client_id="t")
    raw = [
        (1_700_000_000.0, t, (json.dumps(b) if not isinstance(b, str) else b).encode()) for t, b in MESSAGES
    ]
    if via_worker:
        batcher = Batcher(router())  # the worker's own copy of the router, as after the setup frame
        for message in raw:
            batcher.add(*message)
        chunk = Chunk(tuple(batcher.take()))
        assert any(not isinstance(item, tuple) for item in chunk.items), "some rows parsed in the worker"
        handed = decode_frame(chunk_frame(chunk))
        assert isinstance(handed, Chunk)
        driver._queue.extend(handed.items)
    else:
        driver._queue.extend(raw)
    assert driver.drain() == len(MESSAGES)
    batches = [
        (b.ts, b.asset, b.points, [None if np.isnan(v) else v for v in b.values.tolist()], b.quality.tolist())
        for b in sorted(got, key=lambda b: b.asset)  # per asset in order (a stable sort)
    ]
    return batches, driver_counts(metrics)


def test_the_workers_hand_over_drains_to_what_the_in_process_drain_gives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "monitord.drivers.mqtt"):
        ours, counts = drained(True)
        said = [r.getMessage() for r in caplog.records]
        caplog.clear()
        theirs, their_counts = drained(False)
    assert ours == theirs
    assert counts == their_counts
    assert said == [r.getMessage() for r in caplog.records] and len(said) == 7
    assert counts["monitord_mqtt_missing_fields_total[('asset', 'E1')]"] == 1  # a message without floor
    assert counts["monitord_mqtt_sequence_gaps_total[('asset', 'L7')]"] == 1  # 2 → 4
    assert counts["monitord_clock_skew_total[('asset', 'L8')]"] == 1
    decode_error = int(Quality.DECODE_ERROR)
    l8 = [(b[3], b[4]) for b in ours if b[1] == "L8"]
    assert l8[1:3] == [([None, 2.0], [decode_error, 0]), ([None, 3.0], [decode_error, 0])]  # "fast", 1e999
    comm_error = int(Quality.COMM_ERROR)
    l7 = [(b[3], b[4]) for b in ours if b[1] == "L7"]
    assert l7[-2:] == [([None, None], [comm_error] * 2), ([0.9, 5.0], [0, 0])]  # its word, then back


# -- over real Mosquitto ---------------------------------------------------------------------------

TOPIC = "site/lift/E1/status"


class Box:
    """A field device publishing QoS 1, each message's speed its sequence number (the value says which)."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq = 0

    def send(self, n: int) -> None:
        for _ in range(n):
            self.seq += 1
            body = json.dumps({"seq": self.seq, "values": {"speed": self.seq, "floor": 1}})
            self.client.publish(TOPIC, body, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


def worker_driver(port: int, bus: SampleBus, metrics: Metrics, max_queued: int = 50_000) -> WorkerDriver:
    routes = {TOPIC: TopicRoute("E1", FIELDS, tuple(field_path(f"values.{f}") for f in FIELDS), (), ("seq",))}
    return WorkerDriver(
        "127.0.0.1",
        port,
        routes,
        bus,
        SystemClock(),
        metrics,
        client_id="monitord-worker-test",
        qos=1,
        max_queued=max_queued,
    )


def speeds(batches: list[SampleBatch]) -> list[int]:
    return [int(b.values[0]) for b in batches if (b.quality == Quality.GOOD).all()]


def test_a_killed_worker_is_counted_restarted_and_its_lift_comm_error_with_nothing_lost(
    mosquitto: int,
) -> None:
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = worker_driver(mosquitto, bus, metrics)

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        box = Box(mosquitto)
        try:
            await eventually(driver._connected.is_set, 15)
            box.send(5)
            await eventually(lambda: set(speeds(got)) >= set(range(1, 6)), 10)
            first = driver._process
            assert first is not None and first.returncode is None
            os.kill(first.pid, signal.SIGKILL)
            await eventually(lambda: metrics.driver_errors.labels("mqtt", "worker")._value.get() == 1, 10)
            marked = [b for b in got if b.asset == "E1" and (b.quality == Quality.COMM_ERROR).all()]
            assert marked and np.isnan(marked[-1].values).all(), "its lift is comm_error, never a value"
            assert got[-1] is marked[-1], "nothing it handed over lands after the mark"
            box.send(10)  # while no worker runs: the persistent session keeps them
            await eventually(lambda: set(speeds(got)) >= set(range(1, 16)), 20)
            assert driver._process is not first and driver._process.returncode is None
            assert driver._connected.is_set()
        finally:
            box.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario(), timeout=60)
    assert set(speeds(got)) == set(range(1, 16)), "every message, and none made up"
    after = got.index(next(b for b in got if (b.quality == Quality.COMM_ERROR).all()))
    assert min(speeds(got[after:])) > 5, "what came before the kill does not come back as fresh"
    assert driver._process is not None and driver._process.returncode is not None, "ended with the driver"


def test_qos1_is_acknowledged_only_once_the_daemon_holds_the_message(mosquitto: int) -> None:
    bound = 10
    first_got: list[SampleBatch] = []
    second_got: list[SampleBatch] = []

    async def scenario() -> None:
        bus = SampleBus()
        bus.subscribe(first_got.append)
        first = worker_driver(mosquitto, bus, Metrics(), max_queued=bound)
        # The worker reads and hands over, but nothing drains the daemon's queue: once it holds
        # ``bound`` messages the worker's chunks are neither taken nor acknowledged.
        keeper = asyncio.create_task(first._keep_worker())
        box = Box(mosquitto)
        try:
            await eventually(first._connected.is_set, 15)
            box.send(60)  # the broker has them all (the publisher's own acknowledgements)
            await eventually(lambda: first.held >= bound, 10)
        finally:
            keeper.cancel()  # the daemon stops: its worker disconnects, acknowledging nothing more
            await asyncio.gather(keeper, return_exceptions=True)
        first.drain()  # what the first daemon held
        bus2 = SampleBus()
        bus2.subscribe(second_got.append)
        second = worker_driver(mosquitto, bus2, Metrics())
        task = asyncio.create_task(second.run())
        try:
            await eventually(lambda: set(speeds(first_got) + speeds(second_got)) >= set(range(1, 61)), 20)
        finally:
            box.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario(), timeout=60)
    held, again = set(speeds(first_got)), set(speeds(second_got))
    assert held and max(held) < 60, f"the first daemon held {sorted(held)}: it took everything"
    assert held | again == set(range(1, 61)), "nothing lost"
    assert again >= set(range(max(held) + 1, 61)), "what it did not hold came again from the broker"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_worker_never_outlives_monitord_run(tmp_path: Path, mosquitto: int) -> None:
    path = site_yaml(tmp_path, mosquitto, None)

    def start() -> tuple[subprocess.Popen[bytes], int]:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitord", "run", str(path)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (pids := child_pids(daemon.pid)):
            assert time.monotonic() < deadline and daemon.poll() is None, "no worker started"
            time.sleep(0.1)
        return daemon, pids[0]

    daemon, worker = start()
    daemon.send_signal(signal.SIGTERM)  # a clean stop: the worker ends with it
    assert daemon.wait(30) == 0
    run(eventually(lambda: not alive(worker), 10), timeout=15)
    assert not alive(worker)

    daemon, worker = start()
    daemon.kill()  # kill -9: the kernel tells the worker
    daemon.wait(10)
    run(eventually(lambda: not alive(worker), 10), timeout=15)
    assert not alive(worker), "an orphaned worker"


# -- the state table takes a worker's rows as one matrix -----------------------------------------

POINTS = ("a", "b")


def lifts_table() -> StateTable:
    slots = [AssetSlot(a, "elevator", POINTS, 3.0) for a in ("L1", "L2", "L3")]
    state = StateTable(slots, started=0.0, columns={"elevator": POINTS})
    state.apply_health(HealthChange(0.0, "L2", False, "status topic", said=True))  # said offline
    return state


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(("L1", "L2", "L3", "X9")), st.integers(1, 100), st.floats(-1e6, 1e6)),
        min_size=1,
        max_size=10,
    )
)
def test_a_block_of_rows_lands_as_its_batches_one_by_one(rows: list[tuple[str, int, float]]) -> None:
    values = np.array([[v, -v] for _a, _t, v in rows], dtype=np.float64)
    good = np.zeros(values.shape, dtype=np.int8)
    batches = [SampleBatch(float(t), a, POINTS, values[i], good[i]) for i, (a, t, _v) in enumerate(rows)]
    one_by_one, as_block = lifts_table(), lifts_table()
    for b in batches:
        one_by_one.apply(b)
    as_block.apply_many(SampleBlock(batches, POINTS, values))
    want, got = one_by_one.tables["elevator"], as_block.tables["elevator"]
    for name in ("value", "quality", "ts", "last_good", "said"):
        w, g = getattr(want, name), getattr(got, name)
        assert np.array_equal(w, g, equal_nan=w.dtype.kind == "f"), name
