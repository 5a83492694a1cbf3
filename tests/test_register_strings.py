"""ASCII strings in registers: the codec, both byte orders, and device facts read through the
simulator when a device first answers and after an outage — never samples, so no rule can read them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.ingest.registers import decode_ascii, encode_ascii
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import MODELS
from tests.support.configs import GOOD, problems
from tests.support.net import free_port, run


def test_two_characters_per_register_high_byte_first_or_swapped() -> None:
    assert encode_ascii("SN-1", 3).tolist() == [0x534E, 0x2D31, 0x0000]
    assert encode_ascii("SN-1", 3, "BADC").tolist() == [0x4E53, 0x312D, 0x0000]
    assert decode_ascii([0x534E, 0x2D31, 0x0000]) == "SN-1"
    assert decode_ascii([0x4E53, 0x312D, 0x0000], "BADC") == "SN-1"


def test_trailing_nuls_and_spaces_are_padding_inner_spaces_are_text() -> None:
    assert decode_ascii([0x4142, 0x2043, 0x2020, 0x0000]) == "AB C"
    assert decode_ascii([0x0000, 0x0000]) == ""


@pytest.mark.parametrize(
    ("registers", "byte"),
    [([0x4142, 0x00FF], "0x00"), ([0x41E9, 0x0000], "0xe9"), ([0x410A], "0x0a")],
)
def test_a_byte_that_is_not_printable_ascii_is_an_error_not_a_string(registers: list[int], byte: str) -> None:
    with pytest.raises(ValueError, match=f"not printable ASCII: byte {byte}"):
        decode_ascii(registers)


def test_a_string_longer_than_its_registers_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 3 registers, has 2"):
        encode_ascii("ABCDE", 2)


def _profile() -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "meter-with-facts",
            "asset_type": "pump",
            "modbus": {"defaults": {"type": "uint16"}},
            "points": {"temperature": {"address": 0, "scale": 0.1}},
            "info": {
                "serial_number": {"address": 0x40, "registers": 8},
                "model": {"address": 0x50, "registers": 4, "order": "BADC"},
                "firmware": {"kind": "input", "address": 2, "registers": 3},
            },
        }
    )


def test_device_facts_round_trip_through_the_simulator_once_per_connection() -> None:
    profile = _profile()
    model = MODELS["pump"]("S1")
    model.values["temperature"] = 21.5
    facts = {"serial_number": "2412-0042 ", "model": "TH-9", "firmware": "v1.0.7"}
    port = free_port()
    sim_device = SimulatedModbusDevice(5, profile, model, info=facts)
    server = ModbusSimServer("127.0.0.1", port, [sim_device])
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    device = ModbusDevice.from_profile("S1", 5, 1.0, profile)
    poller = GatewayPoller("127.0.0.1", port, [device], bus, SystemClock(), metrics)

    async def polls(n: int) -> list[int]:
        """Requests the device saw in each of ``n`` polls."""
        seen = []
        for _ in range(n):
            before = sim_device.requests
            await poller.poll(device)
            seen.append(sim_device.requests - before)
        return seen

    async def scenario() -> list[int]:
        ready = asyncio.Event()
        task = asyncio.create_task(server.run(ready.set))
        await ready.wait()
        requests = await polls(3)
        # An outage, and the meter swapped during it: the facts are read again when it is back.
        model.faults.add("offline")
        requests += await polls(1)
        sim_device.images["holding"].strings[0] = (0x40, encode_ascii("2501-0007", 8))
        model.faults.discard("offline")
        requests += await polls(3)
        poller._close()
        task.cancel()
        return requests

    requests = run(scenario(), timeout=30)
    assert device.facts == {"serial_number": "2501-0007", "model": "TH-9", "firmware": "v1.0.7"}
    for key, value in device.facts.items():
        assert (
            metrics.registry.get_sample_value(
                "monitord_device_info", {"asset": "S1", "key": key, "value": value}
            )
            == 1.0
        )
    gone = {"asset": "S1", "key": "serial_number", "value": "2412-0042"}
    assert metrics.registry.get_sample_value("monitord_device_info", gone) is None  # the old meter's
    # Three facts and the point at first; the point only; offline (0x0B); the point, which answers and
    # marks it back; the facts read again with the point; then the point only.
    assert requests == [4, 1, 1, 1, 1, 4, 1], requests
    # Samples stay numbers: the batch holds the point, not the facts.
    assert got[-1].points == ("temperature",) and got[-1].quality[0] == Quality.GOOD
    assert got[-1].values[0] == pytest.approx(21.5)


def test_a_rule_cannot_read_a_device_fact(tmp_path: Path) -> None:
    profile = """\
  - profile: with-facts
    asset_type: pump
    modbus: {defaults: {type: uint16}}
    points: {running: {address: 0}}
    info: {serial_number: {address: 64, registers: 8}}
"""
    text = GOOD.replace("profiles:\n", "profiles:\n" + profile).replace(
        "profile: pump-set", "profile: with-facts"
    )
    text = text.replace("running == 1 and suction_pressure < param.suction_min", "serial_number == 1")
    found = problems(tmp_path, text)
    assert len(found) == 1 and "serial_number" in found[0] and found[0].startswith("site.yaml:"), found


def test_a_name_both_point_and_fact_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="running: both a point and an info string"):
        DeviceProfile.model_validate(
            {
                "profile": "p",
                "asset_type": "pump",
                "points": {"running": {"address": 0}},
                "info": {"running": {"address": 9, "registers": 2}},
            }
        )
