"""Modbus RTU end to end: the simulator on one end of a socat pty pair, the daemon on the other;
and RTU framing over TCP (a transparent serial server). A unit nobody answers for ends in
comm_error, never in a value, and holds up no other line."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from pymodbus.exceptions import ModbusException

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.daemon.app import Monitord
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.drivers.modbus_line import Line
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import PumpSet
from monitord.simulators.site import SimulatedSite
from tests.support.daemon import evaluated_past, good
from tests.support.net import eventually, free_port, run
from tests.support.socat import PtyPair, socat_or_skip

PROFILES = CONFIG_DIR / "profiles"


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(socat_or_skip(), tmp_path)
    try:
        yield pair
    finally:
        pair.close()


def rtu_site(tmp_path: Path, serial: str, rtu_port: int, baud: int = 19200) -> SiteConfig:
    """Two pumps and a meter nobody simulates on a serial line; one pump behind an RTU-over-TCP server."""
    text = f"""\
site: {{id: rtu}}
store: {{kind: sqlite, path: {tmp_path}/store.db}}
metrics: {{port: 0}}
api: {{port: 0}}
poll: 0.3s
profiles:
  - include: {PROFILES}/pump-set.yaml
assets:
  - {{id: P1, type: pump, profile: pump-set,
     connection: {{modbus: {{port: {serial}, baudrate: {baud}, stopbits: 2, unit: 1, timeout: 0.3s}}}}}}
  - {{id: P2, type: pump, profile: pump-set,
     connection: {{modbus: {{port: {serial}, baudrate: {baud}, stopbits: 2, unit: 2, timeout: 0.3s}}}}}}
  - {{id: P9, type: pump, profile: pump-set,
     connection: {{modbus: {{port: {serial}, baudrate: {baud}, stopbits: 2, unit: 9, timeout: 1s}}}}}}
  - {{id: T1, type: pump, profile: pump-set,
     connection: {{modbus: {{host: 127.0.0.1, port: {rtu_port}, framer: rtu, baudrate: 9600, unit: 4}}}}}}
"""
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


@contextlib.asynccontextmanager
async def on_the_line(
    config: SiteConfig, pair: PtyPair, on_the_bus: SiteConfig | None = None
) -> AsyncIterator[tuple[SimulatedSite, Monitord]]:
    """The simulator (of ``on_the_bus``, default the whole config) on the pty's far end, the daemon
    on its near end; both on this event loop."""
    site = SimulatedSite(on_the_bus or config, serial_ports={pair.a: pair.b})
    sim = asyncio.create_task(site.run())
    await site.ready.wait()
    app = Monitord(config)
    daemon = asyncio.create_task(app.run())
    try:
        await app.started.wait()
        yield site, app
    finally:
        app.stop()
        await daemon
        sim.cancel()


def unanswered(app: Monitord) -> float:
    """Requests no device answered (pymodbus reports a serial timeout as an I/O error)."""
    errors = app.metrics.registry.get_sample_value
    io = errors("monitord_driver_errors_total", {"driver": "modbus", "kind": "io"}) or 0.0
    return io + (errors("monitord_driver_errors_total", {"driver": "modbus", "kind": "timeout"}) or 0.0)


def line_utilisation(app: Monitord, line: str) -> float:
    return app.metrics.registry.get_sample_value("monitord_modbus_line_utilisation", {"line": line}) or 0.0


def test_rtu_on_a_pty_and_over_tcp_land_good_samples_and_a_silent_unit_ends_in_comm_error(
    tmp_path: Path, pty_pair: PtyPair
) -> None:
    config = rtu_site(tmp_path, pty_pair.a, free_port())
    # P9 is on the line but no device answers for unit 9: the simulator serves everything else.
    on_the_bus = config.model_copy(update={"assets": [a for a in config.assets if a.id != "P9"]})

    async def scenario() -> None:
        async with on_the_line(config, pty_pair, on_the_bus) as (site, app):
            t1_polls: list[float] = []  # when each T1 batch arrived (its own line, RTU over TCP)
            app.bus.subscribe(lambda b: t1_polls.append(time.monotonic()) if b.asset == "T1" else None)
            await eventually(
                lambda: all(good(app, a, "suction_pressure") for a in ("P1", "P2", "T1")), timeout=20
            )
            for asset in ("P1", "P2", "T1"):
                value, _ts, _q = app.core.state.latest(asset)["suction_pressure"]
                expected = site.models[asset].values["suction_pressure"]
                assert math.isclose(value, expected, abs_tol=0.05), (asset, value, expected)
            # Three unanswered polls of P9 later, still no value and comm_error: never a made-up reading.
            start, timeouts = app.clock.now(), unanswered(app)
            await eventually(lambda: unanswered(app) >= timeouts + 3, timeout=20)
            await evaluated_past(app, app.clock.now(), fresh=[("P1", "suction_pressure")])
            # A dead unit holds its own line 1 s per poll; T1, on another line, kept its 0.3 s pace
            # (under 0.8 s between polls: a shared line would show the 1 s timeouts).
            recent = [t for t in t1_polls if t > t1_polls[-1] - 2.0]
            assert len(recent) >= 5 and max(b - a for a, b in itertools.pairwise(recent)) < 0.8, recent
            for point, (value, _ts, quality) in app.core.state.latest("P9").items():
                assert quality == Quality.COMM_ERROR, (point, quality)
                assert math.isnan(value), (point, value)
            # ...while its neighbours on the same line kept answering.
            assert all(good(app, a, "suction_pressure") for a in ("P1", "P2"))
            assert app.core.state.latest("P1")["suction_pressure"][1] > start
            # The gauge covers 5 s windows; P9's timeouts alone hold the line most of the time.
            busy = await eventually(lambda: line_utilisation(app, pty_pair.a), timeout=15)
            assert 0.5 < busy <= 1.0

    run(scenario(), timeout=60)


def test_monitord_sim_serves_a_serial_line_on_the_other_end_of_the_cable(
    tmp_path: Path, pty_pair: PtyPair
) -> None:
    config = rtu_site(tmp_path, "/dev/ttyUSB7", free_port())  # the daemon's port, not this machine's
    with subprocess.Popen(
        [sys.executable, "-m", "monitord", "sim", config.source, "--serial", f"/dev/ttyUSB7={pty_pair.b}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as sim:
        try:
            assert sim.stdout is not None
            ready = sim.stdout.readline()
            assert f"modbus {pty_pair.b}" in ready, ready

            async def read() -> None:
                client = Line("serial", pty_pair.a, baudrate=19200, stopbits=2).client(1.0, "test")
                assert await client.connect()
                try:
                    rr = await client.read_holding_registers(0, count=1, device_id=2)
                    assert not rr.isError() and rr.registers[0] in (0, 1)  # P2's `running`
                    with pytest.raises(ModbusException, match="No response"):  # no unit 5 on this bus
                        await client.read_holding_registers(0, count=1, device_id=5)
                finally:
                    client.close()

            run(read(), timeout=30)
        finally:
            sim.terminate()
            sim.wait(timeout=10)


def test_a_port_that_refuses_its_settings_is_a_line_that_cannot_connect_not_a_crash(
    pty_pair: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    # A Linux pty refuses parity: pyserial raises termios.error (not OSError) from inside pymodbus.
    line = Line("serial", pty_pair.a, baudrate=9600, parity="E")
    profile = DeviceProfile.model_validate(load_yaml(PROFILES / "pump-set.yaml"))
    device = ModbusDevice.from_profile("P1", 1, 1.0, profile)
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    poller = GatewayPoller("", 0, [device], bus, SystemClock(), metrics, line=line)
    run(poller.poll(device), timeout=30)
    assert (got[0].quality == Quality.COMM_ERROR).all() and np.isnan(got[0].values).all()
    assert (
        metrics.registry.get_sample_value(
            "monitord_driver_errors_total", {"driver": "modbus", "kind": "connect"}
        )
        == 1.0
    )
    assert any("cannot connect ((22, 'Invalid argument'))" in r.getMessage() for r in caplog.records)


def test_a_unit_that_falls_silent_is_comm_error_alone_and_good_again_when_it_answers(
    tmp_path: Path, pty_pair: PtyPair
) -> None:
    config = rtu_site(tmp_path, pty_pair.a, free_port())
    config = config.model_copy(update={"assets": [a for a in config.assets if a.id in ("P1", "P2")]})

    async def scenario() -> None:
        async with on_the_line(config, pty_pair) as (site, app):
            p2: list[SampleBatch] = []
            app.bus.subscribe(lambda b: p2.append(b) if b.asset == "P2" else None)
            await eventually(lambda: good(app, "P1", "flow") and good(app, "P2", "flow"), timeout=20)
            site.inject("P2", "silent")
            await eventually(lambda: app.core.state.latest("P2")["flow"][2] == Quality.COMM_ERROR, timeout=20)
            start = app.clock.now()
            await evaluated_past(app, start, fresh=[("P1", "flow")])
            assert good(app, "P1", "flow")  # its neighbour on the line still answers
            silent = [b for b in p2 if (b.quality == Quality.COMM_ERROR).all()]
            assert silent and all(np.isnan(b.values).all() for b in silent)  # never a value
            site.clear("P2", "silent")
            await eventually(lambda: good(app, "P2", "flow"), timeout=20)  # the port was reopened in step

    run(scenario(), timeout=90)


def test_the_poller_keeps_the_line_silent_for_three_and_a_half_characters_between_frames(
    pty_pair: PtyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1200 baud 8N2: a character is 9.2 ms, the gap 32 ms — far above scheduling noise.
    line = Line("serial", pty_pair.a, baudrate=1200, stopbits=2)
    profile = DeviceProfile.model_validate(load_yaml(PROFILES / "pump-set.yaml"))
    sim = SimulatedModbusDevice(1, profile, PumpSet("P1"))
    server = ModbusSimServer("", 0, [sim], Line("serial", pty_pair.b, baudrate=1200, stopbits=2))
    seen: list[tuple[float, float]] = []  # (request in, reply out) as the device sees them
    wire = SimulatedModbusDevice._on_the_wire

    async def timed(self: SimulatedModbusDevice, kind: str, count: int) -> None:
        started = time.monotonic()
        await wire(self, kind, count)
        seen.append((started, time.monotonic()))

    monkeypatch.setattr(SimulatedModbusDevice, "_on_the_wire", timed)
    device = ModbusDevice.from_profile("P1", 1, 1.0, profile)
    poller = GatewayPoller("", 0, [device], SampleBus(), SystemClock(), Metrics(), timeout=2.0, line=line)

    async def scenario() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(server.run(ready.set))
        await ready.wait()
        for _ in range(3):
            await poller.poll(device)
        poller._close()
        task.cancel()

    run(scenario(), timeout=60)
    assert len(seen) == 6  # two reads per poll
    silences = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(seen)]
    assert min(silences) >= 0.9 * line.gap, (line.gap, silences)
