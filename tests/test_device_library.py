"""The vendor profiles of the device library, from the wire to an alert.

- Round trip: each model served through ``SimulatedModbusDevice`` (which enforces the profile's
  request limits) on a free port, polled once by monitord's Modbus driver: every point decodes to
  the model's value within the register's resolution.
- Wire layout: the registers themselves against the vendor's table (scale, word order, address),
  which a round trip through one shared profile cannot check.
- Faults: the models' faults raise the packs' rules, over a night on the manual clock and in the
  running daemon against the simulators over real sockets.
"""

from __future__ import annotations

import math
import struct
from datetime import datetime
from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, load_config
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.daemon.app import Monitord
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.ingest.registers import PointEncoding
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import Drive, Equipment, PowerMeter, WaterMeter
from tests.support import Timeline, evaluated_past, eventually, free_port, good, poll_once, run, running

NOON = 12 * 3600.0  # local seconds of day: the models follow the building's daily load
NIGHT = 3 * 3600.0


def profile(name: str) -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / f"{name}.yaml"))


def read(prof: DeviceProfile, model: Equipment) -> tuple[dict[str, float], ModbusDevice]:
    """One poll of ``model`` served under ``prof``: decoded values by point, and the device's plan."""
    port = free_port()
    server = ModbusSimServer("127.0.0.1", port, [SimulatedModbusDevice(7, prof, model)])
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    device = ModbusDevice.from_profile(model.asset, 7, 1.0, prof)
    poll_once(server, GatewayPoller("127.0.0.1", port, [device], bus, SystemClock(), metrics), device)
    [batch] = got
    bad = {n: Quality(q).name for n, q in zip(batch.points, batch.quality, strict=True) if q != Quality.GOOD}
    assert bad == {}, "every point reads cleanly within the device's limits"
    assert metrics.driver_errors.labels("modbus", "exception")._value.get() == 0
    return dict(zip(batch.points, batch.values, strict=True)), device


def resolution(p: PointEncoding, value: float) -> float:
    """How far a decoded value may sit from the model's: one step of the register."""
    if p.dtype in ("float32",):
        return abs(value) * 2.0**-23 * 2 + abs(p.scale) * 1e-9  # float32 keeps 24 significant bits
    if p.dtype == "bitfield":
        return 0.0
    return abs(p.scale) / 2  # an integer register holds the value rounded to one step of `scale`


def assert_round_trip(prof: DeviceProfile, model: Equipment) -> dict[str, float]:
    decoded, _ = read(prof, model)
    encodings = prof.modbus_encodings()
    assert set(decoded) == {p.name for p in encodings}
    for p in encodings:
        want = model.values[p.name]
        assert math.isclose(decoded[p.name], want, rel_tol=0, abs_tol=resolution(p, want)), (
            p.name,
            decoded[p.name],
            want,
        )
    return decoded


@pytest.mark.parametrize("name", ["eastron-sdm120", "chint-dtsu666"])
def test_meter_profiles_decode_the_models_values(name: str) -> None:
    prof = profile(name)
    meter = PowerMeter.for_asset("M1", prof.params)  # the SDM120's `phases: 1` makes a one-phase model
    meter.step(NOON, 1.0)
    decoded = assert_round_trip(prof, meter)
    assert 200 < decoded["voltage_l1"] < 240 and 49.9 < decoded["frequency"] < 50.1
    assert decoded["active_power_total"] > 1000 and 0.9 < decoded["power_factor_total"] <= 1
    if name == "eastron-sdm120":  # one phase carries the whole load: P = U I cos(phi)
        ui = decoded["voltage_l1"] * decoded["current_l1"] * decoded["power_factor_total"]
        assert ui == pytest.approx(decoded["active_power_total"], rel=0.01)
        assert decoded["current_l1"] < prof.params["rated_current"]


def test_sdm120_reads_keep_the_meters_limits() -> None:
    meter = PowerMeter("M1")
    meter.step(NOON, 1.0)
    _, device = read(profile("eastron-sdm120"), meter)
    assert all(r.count <= 80 and r.count % 2 == 0 for r in device.requests)


def served(prof: DeviceProfile, model: Equipment, kind: str) -> list[int]:
    """The registers of one kind as the simulated device puts them on the wire."""
    return [int(w) for w in SimulatedModbusDevice(1, prof, model).images[kind].encode(model.values)]


def float_at(words: list[int], address: int, low_word_first: bool = False) -> float:
    hi, lo = (words[address + 1], words[address]) if low_word_first else (words[address], words[address + 1])
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


def test_wire_layout_is_the_vendors() -> None:
    # Both ends share the profile, so the round trip alone cannot catch a wrong scale or word
    # order: these check the registers themselves against the vendor's table.
    meter = PowerMeter("M1")
    meter.step(NOON, 1.0)
    v = meter.values
    sdm = served(profile("eastron-sdm120"), meter, "input")
    assert float_at(sdm, 0x0000) == pytest.approx(v["voltage_l1"], rel=1e-6)
    assert float_at(sdm, 0x000C) == pytest.approx(v["active_power_total"], rel=1e-6)
    # DTSU666: floats in the manual's units, 0.1 V, 0.001 A, 0.1 W, 0.001, 0.01 Hz; energy in kWh
    dtsu = served(profile("chint-dtsu666"), meter, "holding")
    assert float_at(dtsu, 0x2006) == pytest.approx(v["voltage_l1"] * 10, rel=1e-6)
    assert float_at(dtsu, 0x200C) == pytest.approx(v["current_l1"] * 1000, rel=1e-6)
    assert float_at(dtsu, 0x2012) == pytest.approx(v["active_power_total"] * 10, rel=1e-6)
    assert float_at(dtsu, 0x202A) == pytest.approx(v["power_factor_total"] * 1000, rel=1e-6)
    assert float_at(dtsu, 0x2044) == pytest.approx(v["frequency"] * 100, rel=1e-6)
    assert float_at(dtsu, 0x101E) == pytest.approx(v["import_energy_kwh"], rel=1e-6)  # ImpEp, primary side
    # TUF-2000M: REG 0001 is address 0, 32-bit values low word first
    water = WaterMeter("W1")
    water.step(NOON, 3600.0)
    tuf = served(profile("tuf-2000m"), water, "holding")
    assert float_at(tuf, 0, low_word_first=True) == pytest.approx(water.values["flow_rate"], rel=1e-6)
    assert tuf[8] + (tuf[9] << 16) == water.values["total_volume"]
    # FC 102: 16-13 output frequency at 16129 in 0.1 Hz; 16-03 bit 11 "in operation"
    drive = Drive("D1")
    drive.step(NOON, 1.0)
    fc = served(profile("danfoss-fc102"), drive, "holding")
    assert fc[16129] == round(drive.values["output_frequency"] * 10)
    assert fc[16029] & (1 << 11) and not fc[16029] & (1 << 3)


def test_fc102_running_then_tripped_on_overcurrent() -> None:
    drive = Drive("D1")
    drive.step(NOON, 1.0)
    prof = profile("danfoss-fc102")
    running = assert_round_trip(prof, drive)
    assert running["running"] == 1 and running["tripped"] == 0 and running["alarm_word"] == 0
    assert 30 <= running["output_frequency"] <= 50 and running["motor_current"] > 5
    _, device = read(prof, drive)
    # one request per parameter, each at 10 x parameter number - 1
    assert sorted((r.start, r.count) for r in device.requests) == [
        (16029, 1), (16119, 1), (16129, 1), (16139, 2), (16299, 1), (16339, 1), (16899, 2), (16919, 2),
    ]  # fmt: skip
    drive.faults.add("overcurrent_trip")
    drive.step(NOON + 1, 1.0)
    tripped = assert_round_trip(prof, drive)
    assert tripped["tripped"] == 1 and tripped["running"] == 0
    assert prof.points["alarm_word"].states[int(tripped["alarm_word"])] == "overcurrent"  # type: ignore[index]


def test_tuf2000m_flow_totaliser_and_error_bits() -> None:
    meter = WaterMeter("W1")
    meter.step(NOON, 3600.0)
    prof = profile("tuf-2000m")
    day = assert_round_trip(prof, meter)
    assert day["flow_rate"] > 1 and day["total_volume"] >= 52_000 and day["no_signal"] == 0
    meter.faults.add("leak")
    meter.step(NIGHT, 1.0)
    night = assert_round_trip(prof, meter)
    assert night["flow_rate"] > 0.5  # the leak's 0.6 m3/h on top of ~0.02 m3/h night use
    meter.faults.add("no_signal")
    meter.step(NIGHT + 1, 1.0)
    blind = assert_round_trip(prof, meter)
    assert blind["no_signal"] == 1 and blind["flow_rate"] == 0


# -- the models' faults, caught by the packs ------------------------------------------------------

PROFILE_OF = {"M": "eastron-sdm120", "N": "chint-dtsu666", "D": "danfoss-fc102", "W": "tuf-2000m"}
TYPE_OF = {"M": "power_meter", "N": "power_meter", "D": "drive", "W": "water_meter"}


def library_site(
    tmp_path: Path, assets: dict[str, int], poll: str = "1s", packs: str = "drive water comms"
) -> str:
    """A site of the library's devices: asset id (its letter picks the profile) → Modbus TCP port."""
    profiles = sorted({PROFILE_OF[a[0]] for a in assets})
    if "power" in packs.split():  # the power pack also reads the fire-monitor channels
        profiles.append("fire-monitor")
    lines = [
        "site: {id: library}",
        f"store: {{kind: sqlite, path: '{tmp_path}/store.db'}}",
        "metrics: {host: 127.0.0.1, port: 0}",
        "api: {host: 127.0.0.1, port: 0, token: t0ken}",
        f"poll: {poll}",
        "profiles:",
        *(f"  - include: {CONFIG_DIR}/profiles/{p}.yaml" for p in profiles),
        "assets:",
    ]
    for unit, (asset, port) in enumerate(assets.items(), start=1):
        kind = asset[0]
        where = f"{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
        lines.append(
            f"  - {{id: {asset}, type: {TYPE_OF[kind]}, profile: {PROFILE_OF[kind]}, connection: {where}}}"
        )
    lines += [
        "rules:",
        *(f"  - include: {CONFIG_DIR}/../rules/packs/{p}.yaml" for p in packs.split()),
    ]
    lines += [
        "roster:",
        "  teams: {ops: {skills: [electrical, energy, plumbing, it], members: [{name: ops, console: true}]}}",
    ]
    return "\n".join(lines) + "\n"


# The daemon's rule engine reads time of day in the machine's local zone (build_core passes no
# zone), so the night starts at this machine's local midnight.
MIDNIGHT = datetime(2026, 11, 22).timestamp()


def test_the_models_faults_raise_the_packs_rules(tmp_path: Path) -> None:
    # From local midnight, a minute a step: W1 leaks 0.6 m3/h all night, W2 is a healthy building,
    # and the drive trips on overcurrent at 05:00.
    models: dict[str, Equipment] = {"D1": Drive("D1"), "W1": WaterMeter("W1"), "W2": WaterMeter("W2")}
    models["W1"].faults.add("leak")
    # polled each minute, and without the comms pack: the pushes are the only reads there are
    site = library_site(tmp_path, dict.fromkeys(models, 502), poll="1m", packs="drive water")
    tl = Timeline(site, tmp_path, start=MIDNIGHT)
    for minute in range(0, 6 * 60 + 1):
        t = minute * 60.0
        if minute == 5 * 60:
            models["D1"].faults.add("overcurrent_trip")
        for asset, model in models.items():
            model.step(t, 60.0)  # the models take local seconds of the day
            tl.at(t).push(asset, **model.values)
    tl.expect_nothing(until=2.5 * 3600 - 1)  # the night minimum has to hold from 01:00 for 90 min
    tl.expect_alerts(between=(2.5 * 3600 - 1, 2.5 * 3600 + 60), firing=[("water.night_flow", "W1")])
    tl.expect_nothing(until=5 * 3600)  # the leak holds (no resolve at 04:00); W2 never fires
    tl.expect_alerts(between=(5 * 3600, 5 * 3600 + 180), firing=[("drive.tripped", "D1")])
    assert tl.firing() == {("water.night_flow", "W1"), ("drive.tripped", "D1")}
    tl.close()


# -- the daemon, over real sockets ----------------------------------------------------------------


def test_the_daemon_reads_every_point_and_catches_each_devices_fault(tmp_path: Path) -> None:
    meters, plant = free_port(), free_port()  # two simulated gateways
    path = tmp_path / "library.yaml"
    assets = {"M1": meters, "N1": meters, "D1": plant, "W1": plant}
    path.write_text(library_site(tmp_path, assets, packs="power drive water comms"))
    config = load_config(path)
    profiles = {a.id: config.profile(a.profile) for a in config.assets}

    def all_good(app: Monitord) -> bool:
        return all(good(app, a, p.name) for a, prof in profiles.items() for p in prof.modbus_encodings())

    def firing(app: Monitord) -> set[tuple[object, object]]:
        return {(a["rule"], a["asset"]) for a in app.core.firing_alerts()}

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: all_good(app), 20)
            since = app.clock.now()
            # nothing fires on healthy devices: decided by an evaluation of samples newer than `since`
            await evaluated_past(app, since, fresh=[(a, next(iter(p.points))) for a, p in profiles.items()])
            assert firing(app) == set(), "healthy devices raise nothing"
            site.inject("D1", "overcurrent_trip")
            for meter in ("M1", "N1"):  # 49.5 Hz: through the SDM120's floats and the DTSU666's 0.01 Hz
                site.inject(meter, "frequency_drift")
            want = {("drive.tripped", "D1"), ("power.frequency", "M1"), ("power.frequency", "N1")}
            await eventually(lambda: firing(app) == want, 30)
            trip = [t for t in app.core.desk.tickets.values() if t.asset == "D1"]
            assert len(trip) == 1 and "drive tripped: overcurrent" in trip[0].summary

    run(scenario())
