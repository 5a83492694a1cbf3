"""Nothing lost, nothing forged, in the store: a poisoned sample, a full disk, a full spool, and two
samples in one millisecond, against a real InfluxDB, a real SQLite file, real Mosquitto and a real
(small, full) tmpfs for the spool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitord.config.site import load_config
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.mqtt import publish_once
from monitord.store.influx import InfluxStore, InfluxTarget
from monitord.store.spool import Spool, SpoolName
from monitord.store.sqlite import SqliteStore
from tests.support import (
    InfluxServer,
    V2WriteProxy,
    demo_site,
    evaluated_past,
    eventually,
    good,
    run,
    running,
    sample_time,
    site_yaml,
)

POINTS = ("flow", "inlet_pressure")


def batch(ts: float, asset: str = "A-P1") -> SampleBatch:
    return SampleBatch(ts, asset, POINTS, np.array([1.0, 2.0]), np.zeros(2, dtype=np.int8))


def dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("monitord_store_points_dropped_total", {"reason": reason})
    return value or 0.0


def healthz(app_api_port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{app_api_port}/healthz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- 1. one poisoned timestamp ------------------------------------------------------------------


def test_a_nan_timestamp_over_mqtt_costs_one_sample_not_the_writer(tmp_path: Path, mosquitto: int) -> None:
    config = demo_site(tmp_path, mosquitto)

    async def scenario() -> None:
        async with running(config) as (_site, app):
            await eventually(lambda: good(app, "A-E1", "floor") and good(app, "A-P1", "flow"), 20)
            poison = app.clock.now()
            body = '{"ts": NaN, "values": {"run_status": 0, "floor": 3, "speed": 0.0}}'
            publish_once("127.0.0.1", mosquitto, "tower-a/elevator/A-E1/status", body)
            await evaluated_past(app, poison + 2, fresh=[("A-P1", "flow"), ("A-E1", "floor")])
            store = app.store
            assert isinstance(store, SqliteStore)
            store.flush(timeout=10)  # before the fix: the round with the NaN frame never commits
            bad = [
                b
                for b in store.samples("A-E1", since=poison)
                if (b.quality == Quality.DECODE_ERROR).all() and math.isfinite(b.ts)
            ]
            assert len(bad) == 1, "the poisoned message is one decode_error sample at its receive time"
            later = [b for b in store.samples("A-P1", since=poison + 1)]
            assert later, "samples after the poisoned one are stored"
            assert store.health() == []

    run(scenario(), timeout=90)


def test_the_writer_survives_a_batch_without_a_time_and_a_round_that_cannot_be_written(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    store.attach_metrics(metrics)
    try:
        store.write_samples([batch(100.0), batch(math.nan), batch(101.0)])
        store.flush()
        assert [b.ts for b in store.samples()] == [100.0, 101.0]
        assert dropped(metrics, "bad_time") == 2  # one batch of two points
        assert store.health() == []
    finally:
        store.close()


# -- 2. a full disk under the spool ---------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled to its last few KiB: a spool folder on a disk that is about to be full."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
    try:
        stat = os.statvfs(mount)
        free = stat.f_bavail * stat.f_frsize
        (mount / "filler").write_bytes(b"\0" * max(0, free - 12 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_survived_counted_and_reported(
    tmp_path: Path, mosquitto: int, influxdb: tuple[InfluxServer, V2WriteProxy], full_disk: Path
) -> None:
    server, proxy = influxdb
    path = site_yaml(tmp_path, mosquitto, proxy.url)
    path.write_text(path.read_text().replace(f"spool: '{tmp_path}/spool'", f"spool: '{full_disk}/spool'"))
    config = load_config(path)
    # Only the spool's disk is full: the notification log (by default beside the spool) lives elsewhere.
    config = config.model_copy(
        update={"notify": config.notify.model_copy(update={"log": str(tmp_path / "notifications.db")})}
    )

    async def scenario() -> None:
        async with running(config) as (_site, app):
            store = app.store
            assert isinstance(store, InfluxStore)
            assert app.api is not None
            await eventually(lambda: good(app, "A-P1", "flow"), 20)
            server.kill()
            # The store is down and the disk fills: the writer drops the oldest, counts it, says so.
            await eventually(lambda: store.health(), 30)
            await eventually(lambda: dropped(app.metrics, "disk_full") > 0, 60)
            assert store._thread.is_alive()
            # off the loop: the API is served on the daemon's own event loop, this one
            status, body = await asyncio.to_thread(healthz, app.api.port)
            assert status == 503 and "cannot spool" in json.dumps(body)
            server.start()
            back = app.clock.now()
            await eventually(lambda: sample_time(app, "A-P1", "flow") > back + 2, 20)
            await eventually(lambda: not store.spill.waiting, 60)
            store.flush()
            landed = server.query(f"SELECT * FROM pump WHERE asset = 'A-P1' AND time > {round(back * 1e9)}")
            assert len(landed) >= 2, "after the store returns, new samples are written again"
            assert store.queued < 1000, "nothing piles up in memory"
            deadline = app.clock.now() + 20
            while (await asyncio.to_thread(healthz, app.api.port))[0] != 200:
                assert app.clock.now() < deadline, "healthz not 200 again within 20 s"
                await asyncio.sleep(0.2)

    run(scenario(), timeout=180)


# -- 3. spool drops are counted and logged --------------------------------------------------------


def test_every_line_the_spool_drops_is_counted_and_logged(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy], caplog: pytest.LogCaptureFixture
) -> None:
    server, proxy = influxdb
    metrics = Metrics()
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / SpoolName(0, 7, "us").format()).with_suffix(".batch.tmp").write_bytes(b"cut")
    server.kill()
    store = InfluxStore(
        InfluxTarget(proxy.url, "monitord"),
        "tower-a",
        {f"P{i}": ("pump", "A") for i in range(50)},
        tmp_path / "spool",
        spool_max_bytes=4096,
        flush_interval=0.05,
        metrics=metrics,
    )
    produced = 0
    try:
        with caplog.at_level(logging.WARNING, logger="monitord.store.losses"):
            for k in range(60):
                store.write_samples([batch(1_795_000_000 + k + i / 100, f"P{i}") for i in range(50)])
                produced += 50
                store.flush()
        assert dropped(metrics, "spool_full") > 0
        assert dropped(metrics, "crash_leftover") == 7  # a half-written batch found at start-up
        assert any("spool_full" in r.getMessage() for r in caplog.records), "a drop is logged"
        server.start()
        server.query("CREATE DATABASE monitord")
        run(eventually(lambda: len(store.spool) == 0, 60), timeout=90)
        store.flush()
    finally:
        store.close()
    landed = len(server.query("SELECT * FROM pump"))
    assert landed + dropped(metrics, "spool_full") == produced, "each line landed or was counted"


def test_dropped_points_are_a_total_counter() -> None:
    metrics = Metrics()
    metrics.points_dropped.labels("spool_full").inc(3)
    text = [m.name for m in metrics.registry.collect()]
    assert "monitord_store_points_dropped" in text  # exposed as monitord_store_points_dropped_total
    assert (
        metrics.registry.get_sample_value("monitord_store_points_dropped_total", {"reason": "spool_full"})
        == 3
    )


def test_a_spool_on_a_full_disk_says_so_and_leaves_nothing_half_written(full_disk: Path) -> None:
    spool = Spool(full_disk / "spool", 2**20)
    assert spool.append(b"x" * 1024, 1)
    assert not spool.append(os.urandom(64 * 1024), 10)
    assert spool.failing is not None and "No space" in spool.failing
    assert not list((full_disk / "spool").glob("*.tmp"))
    assert len(spool) == 1


# -- 4. samples within one millisecond ------------------------------------------------------------


def test_samples_within_a_millisecond_are_all_stored_and_collisions_counted(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    server, proxy = influxdb
    metrics = Metrics()
    store = InfluxStore(
        InfluxTarget(proxy.url, "monitord"),
        "tower-a",
        {"A-P1": ("pump", "A")},
        tmp_path / "spool",
        flush_interval=0.05,
        metrics=metrics,
    )
    t0 = 1_795_000_000.0
    try:
        store.write_samples([batch(t0 + i * 0.0004) for i in range(20)])
        store.write_samples([batch(t0 + 1.0), batch(t0 + 1.0)])  # one microsecond: a collision
        store.flush()
    finally:
        store.close()
    assert len(server.query("SELECT * FROM pump")) == 21
    assert metrics.registry.get_sample_value("monitord_store_sample_collisions_total") == 1
