"""Benchmark: the BACnet/IP and SNMP drivers on loopback, against the simulated chiller and UPS.

Prints p50, p99 and max over N trials of:

- a BACnet poll: one ReadPropertyMultiple of the chiller-bacnet profile (5 objects, 6 properties),
  decoded and published;
- a BACnet COV: from a present-value change on the simulated device to its one-point batch on the
  bus (no poll runs meanwhile);
- an SNMP poll: one v2c GetRequest of the ups-rfc1628 profile's 10 OIDs, decoded and published.

Both ends are this process (bacpypes3, pysnmp) over real UDP sockets on 127.0.0.1. Never part of
the test pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import socket
import statistics
import time
from collections.abc import Awaitable, Callable

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.bacnet import BacnetDevice, BacnetDriver
from monitord.drivers.snmp import SnmpDevice, SnmpDriver
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.simulators.bacnet_device import SimulatedBacnetDevice
from monitord.simulators.models import Chiller, Ups
from monitord.simulators.snmp_agent import SimulatedSnmpAgent

IDLE = 3600.0  # the drivers' own poll interval: only the bench's calls poll


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def profile(name: str) -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / f"{name}.yaml"))


def report(what: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    p50 = statistics.median(ms)
    print(f"{what:<34} n={len(ms):<4} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {ms[-1]:6.2f} ms")


async def serving(
    serve: Callable[[Callable[[], None]], Awaitable[None]], drive: Callable[[], Awaitable[None]]
) -> list[asyncio.Task[None]]:
    """The simulated device listening, then the driver running: their tasks."""
    up = asyncio.Event()
    tasks = [asyncio.create_task(serve(up.set))]
    await up.wait()
    return [*tasks, asyncio.create_task(drive())]


async def timed_polls(n: int, poll: Callable[[], Awaitable[None]], batches: list[SampleBatch]) -> list[float]:
    """Milliseconds of ``n`` polls, each checked to have read every point good."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await poll()
        out.append(1000 * (time.perf_counter() - t))
        assert (batches[-1].quality == Quality.GOOD).all()
    return out


async def bacnet(n: int) -> None:
    prof, model, port = profile("chiller-bacnet"), Chiller("CH1"), udp_port()
    sim = SimulatedBacnetDevice("127.0.0.1", port, prof, model, step=IDLE)
    bus, batches = SampleBus(), list[SampleBatch]()
    bus.subscribe(batches.append)
    dev = BacnetDevice.from_profile("CH1", "127.0.0.1", port, IDLE, 1.0, prof)
    driver = BacnetDriver(f"127.0.0.1:{udp_port()}", 4194000, [dev], bus, SystemClock(), Metrics())
    tasks = await serving(sim.run, driver.run)
    while not driver.app or not driver.app._cov_contexts or len(driver.app._cov_contexts) < 5:
        await asyncio.sleep(0.05)  # the first poll ran and the subscriptions are in place
    report(
        "bacnet poll (RPM, 6 properties)", await timed_polls(n, functools.partial(driver.poll, dev), batches)
    )
    covs = []
    target = sim.objects["analog-input:2"]  # discharge_temp, COV increment 1.3 K
    for i in range(n):
        seen = len(batches)
        t = time.perf_counter()
        target.presentValue = 65.0 + (10.0 if i % 2 == 0 else 0.0)
        while not any(len(b) == 1 for b in batches[seen:]):
            await asyncio.sleep(0)
        covs.append(1000 * (time.perf_counter() - t))
    report("bacnet COV change → batch", covs)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def snmp(n: int) -> None:
    prof, model, port = profile("ups-rfc1628"), Ups("UPS1"), udp_port()
    model.step(0.0, 0.2)
    agent = SimulatedSnmpAgent("127.0.0.1", port, "public", prof, model)
    bus, batches = SampleBus(), list[SampleBatch]()
    bus.subscribe(batches.append)
    dev = SnmpDevice.from_profile("UPS1", "127.0.0.1", port, "public", IDLE, 1.0, prof)
    driver = SnmpDriver([dev], bus, SystemClock(), Metrics())
    tasks = await serving(agent.run, driver.run)
    while not batches:
        await asyncio.sleep(0.05)
    report("snmp poll (GET, 10 OIDs)", await timed_polls(n, functools.partial(driver.poll, dev), batches))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="trials of each (default 200)")
    n = parser.parse_args().n
    asyncio.run(bacnet(n))
    asyncio.run(snmp(n))


if __name__ == "__main__":
    main()
