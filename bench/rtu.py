"""Benchmark: polls per second one Modbus RTU line carries, against its physical limit.

The simulator serves four booster-pump controllers on one end of a socat pty pair; monitord's
poller (``drivers.modbus.GatewayPoller``, the daemon's own) polls them as fast as it may from the
other end, at 9600 and at 115200 baud (8N2: 11-bit characters, as the serial line spec asks).
A pty carries bytes at memory speed, so the simulator holds each reply for the time its frames,
the end-of-frame gap and a 10 ms device turnaround take on a real wire; the driver keeps the gap
before each request. The physical limit is computed from the read plan's frame sizes
(``drivers.modbus_line.budget``: request and reply bytes x 11 bits / baud + 2 gaps + turnaround);
the ratio measured / limit says how much of the wire the driver uses (1.0 = all of it).

Prints one line per baud rate. Needs ``socat`` (Debian package). Never part of the test pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice, plan_reads
from monitord.drivers.modbus_line import Demand, Line, budget
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile, ModbusSettings
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import PumpSet
from tests.support.socat import PtyPair

UNITS = (1, 2, 3, 4)


async def measure(pair: PtyPair, baud: int, seconds: float, profile: DeviceProfile) -> tuple[float, float]:
    """(measured polls/s, physical limit polls/s) for one line at ``baud``."""
    sim_line = Line("serial", pair.b, baudrate=baud, stopbits=2)
    sims = [SimulatedModbusDevice(u, profile, PumpSet(f"P{u}")) for u in UNITS]
    server = ModbusSimServer("", 0, sims, sim_line)
    ready = asyncio.Event()
    served = asyncio.create_task(server.run(ready.set))
    await ready.wait()
    bus = SampleBus()
    good = 0
    names = {f"P{u}" for u in UNITS}

    def count(batch: SampleBatch) -> None:
        nonlocal good  # device polls answered in full; not the line's own gateway batches
        good += batch.asset in names and bool((batch.quality == Quality.GOOD).all())

    bus.subscribe(count)
    devices = [ModbusDevice.from_profile(f"P{u}", u, 0.0, profile) for u in UNITS]  # always due
    line = Line("serial", pair.a, baudrate=baud, stopbits=2)
    poller = GatewayPoller("", 0, devices, bus, SystemClock(), Metrics(), timeout=1.0, line=line)
    polling = asyncio.create_task(poller.run())
    await asyncio.sleep(1.0)  # connect and settle
    start, before = time.perf_counter(), good
    await asyncio.sleep(seconds)
    rate = (good - before) / (time.perf_counter() - start)
    polling.cancel()
    served.cancel()
    await asyncio.gather(polling, served, return_exceptions=True)
    plan = plan_reads(profile.modbus_encodings(), profile.modbus or ModbusSettings())
    reads = [(r.kind, r.count) for r in plan]
    limit = budget(line, [Demand(d.asset, reads, 1.0) for d in devices]).capacity
    return rate, limit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per baud rate")
    args = parser.parse_args()
    socat = shutil.which("socat")
    if socat is None:
        print("bench/rtu.py: socat is not installed (Debian package 'socat'); skipped")
        return 0
    profile = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "pump-set.yaml"))
    reads = plan_reads(profile.modbus_encodings(), profile.modbus or ModbusSettings())
    plan = " + ".join(f"{r.kind} {r.count}" for r in reads)
    print(f"RTU line, {len(UNITS)} pump-set controllers (reads per poll: {plan}), 8N2, over a socat pty pair")
    for baud in (9600, 115200):
        with tempfile.TemporaryDirectory() as folder:
            pair = PtyPair(socat, Path(folder))
            try:
                rate, limit = asyncio.run(measure(pair, baud, args.seconds, profile))
            finally:
                pair.close()
        print(
            f"  {baud:>6} baud: {rate:6.1f} polls/s measured, physical limit {limit:6.1f} polls/s, "
            f"ratio {rate / limit:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
