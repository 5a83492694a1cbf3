"""A device that answers with Modbus exceptions: counted, marked, survived."""

from __future__ import annotations

import numpy as np

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile, ModbusSettings
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import PowerMeter
from tests.support import free_port
from tests.support import poll_once as serve_and_poll


def sdm630() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))


def poll_once(
    device_profile: DeviceProfile,
    driver_profile: DeviceProfile,
    fault: str | None = None,
) -> tuple[SampleBatch, list[HealthChange], Metrics, ModbusDevice]:
    model = PowerMeter("M1")
    if fault:
        model.faults.add(fault)
    port = free_port()
    server = ModbusSimServer("127.0.0.1", port, [SimulatedModbusDevice(1, device_profile, model)])
    bus, metrics = SampleBus(), Metrics()
    batches: list[SampleBatch] = []
    health: list[HealthChange] = []
    bus.subscribe(batches.append)
    bus.subscribe_health(health.append)
    device = ModbusDevice.from_profile("M1", 1, 1.0, driver_profile)
    poller = GatewayPoller("127.0.0.1", port, [device], bus, SystemClock(), metrics)

    serve_and_poll(server, poller, device)
    return batches[0], health, metrics, device


def test_sdm630_profile_reads_cleanly_within_the_meters_limits() -> None:
    batch, health, metrics, device = poll_once(sdm630(), sdm630())
    assert (batch.quality == Quality.GOOD).all()
    assert all(r.count <= 80 and r.count % 2 == 0 for r in device.requests)
    assert metrics.driver_errors.labels("modbus", "exception")._value.get() == 0
    values = dict(zip(batch.points, batch.values, strict=True))
    assert 200 < values["voltage_l1"] < 240 and 49.9 < values["frequency"] < 50.1
    assert health == []


def test_exception_replies_mark_only_their_points_and_are_counted() -> None:
    # The real meter takes fewer registers per request than the profile we poll it with.
    real = sdm630()
    strict = real.model_copy(
        update={"modbus": ModbusSettings(max_registers=8, even_count=True, defaults=real.modbus.defaults)}
    )  # type: ignore[union-attr]
    batch, health, metrics, device = poll_once(strict, real)
    too_big = [r for r in device.requests if r.count > 8]
    assert too_big, "the plan must contain requests the device refuses"
    assert metrics.driver_errors.labels("modbus", "exception")._value.get() == len(too_big)
    refused = {n for r in too_big for n in r.codec.names}
    for name, q, v in zip(batch.points, batch.quality, batch.values, strict=True):
        if name in refused:
            assert q == Quality.COMM_ERROR and np.isnan(v), name
        else:
            assert q == Quality.GOOD, name
    assert health == [], "a device that answers with exceptions is still online"


def test_gateway_says_target_unreachable_device_goes_offline() -> None:
    batch, health, metrics, _device = poll_once(sdm630(), sdm630(), fault="offline")
    assert (batch.quality == Quality.COMM_ERROR).all() and np.isnan(batch.values).all()
    assert [h.online for h in health] == [False]
    assert metrics.driver_errors.labels("modbus", "exception")._value.get() >= 1
