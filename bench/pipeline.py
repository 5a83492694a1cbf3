"""Benchmark: Modbus points decoded, evaluated and stored per second.

Two figures, each next to a baseline measured in the same run:

1. Over real Modbus TCP against the SDM630 simulator: a bare pymodbus loop
   reading the same requests one at a time (baseline) vs monitord's poller
   (read, decode, quality-mark, bus, state table, SQLite store queue), with
   ``pipeline: 1`` and with ``pipeline: 4`` (a device's reads in flight
   together); the two take turns in short slices, so machine load hits both.
2. In process, no sockets: register blocks of 2,000 SDM630 meters decoded,
   applied to the state table, queued to the SQLite store and evaluated by the
   power and comms rule packs once per simulated second; CPU seconds per
   100,000 points, and peak memory. The baseline decodes the same blocks with
   ``struct.unpack`` per value, the plain-Python way.

Prints medians of several rounds. Never part of the test pass/fail.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.assets import Asset
from monitord.core.clock import ManualClock, SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice, plan_reads
from monitord.drivers.modbus_line import Line
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.ingest.state import AssetSlot, StateTable
from monitord.rules import PACKS_DIR
from monitord.rules.engine import RuleEngine
from monitord.rules.spec import RuleSpec
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import PowerMeter
from monitord.store.sqlite import SqliteStore
from monitord.tools.demo import free_port

ROUNDS = 5


def sdm630() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))


async def over_tcp(
    seconds: float = 2.0, units: int = 1, pipeline: int = 1, slices: int = 8
) -> tuple[float, float]:
    """(bare pymodbus, monitord) points/s. One unit: one client, one request at a time, against the
    poller with ``pipeline`` requests in flight (1: one at a time too; more: the device's reads
    together). Several units: as many bare clients (one connection each, polling concurrently)
    against one poller connection with ``pipeline`` requests in flight. The two take turns in
    ``slices`` short slices each, so that a machine shared with other work slows both alike."""
    from pymodbus.client import AsyncModbusTcpClient

    profile = sdm630()
    port = free_port()
    sims = [SimulatedModbusDevice(u, profile, PowerMeter(f"M{u}")) for u in range(1, units + 1)]
    server = ModbusSimServer("127.0.0.1", port, sims)
    ready = asyncio.Event()
    task = asyncio.create_task(server.run(ready.set))
    await ready.wait()
    assert profile.modbus is not None
    plan = plan_reads(profile.modbus_encodings(), profile.modbus)
    points_per_poll = sum(len(r.codec.names) for r in plan)
    clients = [AsyncModbusTcpClient("127.0.0.1", port=port) for _ in range(units)]
    for c in clients:
        await c.connect()

    async def bare(client: AsyncModbusTcpClient, unit: int, until: float) -> int:
        polls = 0
        while time.perf_counter() < until:
            for r in plan:
                await client.read_input_registers(r.start, count=r.count, device_id=unit)
            polls += 1
        return polls

    bus = SampleBus()
    totals = {"bare": [0, 0.0], "ours": [0, 0.0]}  # polls, seconds
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "b.db")
        state = StateTable([AssetSlot("M1", "power_meter", tuple(profile.points), 10.0)])
        bus.subscribe(state.apply)
        bus.subscribe(lambda b: store.write_samples((b,)))
        devices = [ModbusDevice.from_profile(f"M{u}", u, 1.0, profile) for u in range(1, units + 1)]
        line = Line.tcp("127.0.0.1", port, pipeline)
        poller = GatewayPoller("127.0.0.1", port, devices, bus, SystemClock(), Metrics(), line=line)
        for _ in range(slices):
            t0 = time.perf_counter()
            until = t0 + seconds / slices
            done = await asyncio.gather(*(bare(c, u, until) for u, c in enumerate(clients, start=1)))
            t1 = time.perf_counter()
            totals["bare"][0] += sum(done)
            totals["bare"][1] += t1 - t0
            until = t1 + seconds / slices
            while time.perf_counter() < until:
                await poller._poll_due(devices)  # every device, as a poll cycle does, batches handed over
                totals["ours"][0] += units
            totals["ours"][1] += time.perf_counter() - t1
        poller._close()
        store.close()
    for c in clients:
        c.close()
    task.cancel()
    raw, ours = (totals[k][0] * points_per_poll / totals[k][1] for k in ("bare", "ours"))
    return raw, ours


def in_process(meters: int = 2000, seconds_simulated: int = 10) -> tuple[float, float, float, int]:
    profile = sdm630()
    assert profile.modbus is not None
    plan = plan_reads(profile.modbus_encodings(), profile.modbus)
    names = tuple(n for r in plan for n in r.codec.names)
    model = PowerMeter("M")
    blocks = [r.codec.encode([model.values.get(n, 0.0) for n in r.codec.names]) for r in plan]
    specs = [
        RuleSpec.model_validate(r) for f in ("power.yaml", "comms.yaml") for r in load_yaml(PACKS_DIR / f)
    ]
    clock = ManualClock()
    ids = [f"M{i}" for i in range(meters)]
    # Every power_meter profile adds columns (the power pack reads fire-monitor channels too).
    fire = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "fire-monitor.yaml"))
    columns = {"power_meter": (*profile.points, *fire.points)}
    state = StateTable(
        [AssetSlot(a, "power_meter", tuple(profile.points), 10.0) for a in ids], clock.now(), columns
    )
    engine = RuleEngine(specs, state, [Asset(a, "power_meter", params=dict(profile.params)) for a in ids])
    points = 0
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "b.db", flush_interval=0.2)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _second in range(seconds_simulated):
            now = clock.advance(1.0)
            batch = []
            for a in ids:
                values = np.concatenate([r.codec.decode(b) for r, b in zip(plan, blocks, strict=True)])
                quality = np.zeros(len(values), dtype=np.int8)
                quality[~np.isfinite(values)] = Quality.DECODE_ERROR
                b = SampleBatch(now, a, names, values, quality)
                state.apply(b)
                batch.append(b)
                points += len(values)
            store.write_samples(batch)
            engine.evaluate(now)
        store.flush(timeout=120)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        store.close()

    # Baseline: the same work done per sample in plain Python: struct decode,
    # a dict as state, one narrow SQLite row per point.
    import sqlite3

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "base.db")
        db.execute("CREATE TABLE s (ts REAL, asset TEXT, point TEXT, value REAL, quality INTEGER)")
        latest: dict[tuple[str, str], float] = {}
        raws = [b.astype(">u2").tobytes() for b in blocks]
        base0, n = time.process_time(), 0
        for second in range(2):
            rows = []
            for a in ids:
                for r, raw in zip(plan, raws, strict=True):
                    for p in r.codec.points:
                        (v,) = struct.unpack_from(">f", raw, (p.address - r.start) * 2)
                        latest[(a, p.name)] = v
                        rows.append((float(second), a, p.name, v, 0))
                        n += 1
            with db:
                db.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?)", rows)
        base_per_cpu = n / (time.process_time() - base0)
        db.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return points / cpu, points / wall, base_per_cpu, peak_mb


def main() -> None:
    for pipeline, how in ((1, "one request at a time"), (4, "pipeline: 4, its four reads together")):
        tcp = [asyncio.run(over_tcp(pipeline=pipeline)) for _ in range(ROUNDS)]
        raw = statistics.median(t[0] for t in tcp)
        ours = statistics.median(t[1] for t in tcp)
        spread = sorted(round(t[1] / t[0], 2) for t in tcp)
        print(f"== over Modbus TCP, one SDM630 simulator, monitord {how} ==")
        print(f"bare pymodbus loop          {raw:12,.0f} points/s   (one request at a time)")
        print(
            f"monitord poller + store     {ours:12,.0f} points/s   ratio {ours / raw:.2f} (rounds: {spread})"
        )
    tcp = [asyncio.run(over_tcp(units=8, pipeline=8)) for _ in range(ROUNDS)]
    raw = statistics.median(t[0] for t in tcp)
    ours = statistics.median(t[1] for t in tcp)
    print("== over Modbus TCP, 8 SDM630 behind one simulator port, polled concurrently ==")
    print(f"bare pymodbus, 8 clients    {raw:12,.0f} points/s   (8 connections)")
    print(f"monitord, pipeline: 8       {ours:12,.0f} points/s   ratio {ours / raw:.2f} (one connection)")
    runs = [in_process() for _ in range(3)]
    per_cpu = statistics.median(r[0] for r in runs)
    per_wall = statistics.median(r[1] for r in runs)
    base = statistics.median(r[2] for r in runs)
    peak = max(r[3] for r in runs)
    print("== in process: 2,000 SDM630 meters x 42 points, 10 simulated seconds ==")
    print(f"decode+state+store+rules    {per_cpu:12,.0f} points per CPU-second ({per_wall:,.0f}/s wall)")
    print(f"  -> 100,000 points/s needs {100_000 / per_cpu:.2f} of one core")
    print(f"plain-Python per-sample     {base:12,.0f} points per CPU-second (baseline; no rules)")
    print(f"  ratio monitord / baseline {per_cpu / base:.1f}x")
    print(f"peak RSS                    {peak:12,d} MB")


if __name__ == "__main__":
    main()
