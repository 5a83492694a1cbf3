"""Register decoding: every data type and byte/word order, pure and over Modbus TCP."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice, plan_reads
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile, ModbusSettings
from monitord.ingest.registers import PointEncoding, RegisterCodec
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import Equipment
from tests.support import free_port, poll_once

ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**53), 2**53),
    "uint64": (0, 2**53),
}


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_every_type_and_order_round_trips(data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from([*INT_RANGES, "float32", "float64"]))
    order = data.draw(st.sampled_from(ORDERS))
    if dtype in INT_RANGES:
        lo, hi = INT_RANGES[dtype]
        value = float(data.draw(st.integers(lo, hi)))
    elif dtype == "float32":
        value = float(np.float32(data.draw(st.floats(allow_nan=False, allow_infinity=False, width=32))))
    else:
        value = data.draw(st.floats(-1e300, 1e300, allow_nan=False))
    address = data.draw(st.integers(0, 5))
    codec = RegisterCodec(0, 12, [PointEncoding("x", "holding", address, dtype, order)])  # type: ignore[arg-type]
    assert codec.decode(codec.encode([value]))[0] == value


@pytest.mark.parametrize("order", ORDERS)
def test_a_matrix_of_big_endian_rows_decodes_as_each_row_alone(order: str) -> None:
    """The TCP poller decodes many devices' replies at once, as big-endian words from the frames."""
    points = [
        PointEncoding(f"p{i}", "holding", 4 * i, dtype, order, scale=0.5 if i % 2 else 1.0)  # type: ignore[arg-type]
        for i, dtype in enumerate([*INT_RANGES, "float32", "float64"])
    ] + [
        PointEncoding("flag", "holding", 40, "bitfield", order, bit=9),
        PointEncoding("on", "holding", 41, "bool", order),
    ]  # type: ignore[arg-type]
    codec = RegisterCodec(0, 42, points)
    rows = np.random.default_rng(7).integers(0, 2**16, size=(6, 42)).astype(np.uint16)
    alone = np.array([codec.decode([int(w) for w in row]) for row in rows])
    wire = np.frombuffer(rows.astype(">u2").tobytes(), ">u2").reshape(6, 42)
    np.testing.assert_array_equal(codec.decode(wire), alone)
    np.testing.assert_array_equal(codec.decode(rows), alone)


def test_orders_put_words_and_bytes_where_the_field_expects() -> None:
    # 1.0f = 0x3F800000: ABCD -> 3F80 0000, CDAB -> 0000 3F80, BADC -> 803F 0000, DCBA -> 0000 803F
    expect = {"ABCD": [0x3F80, 0], "CDAB": [0, 0x3F80], "BADC": [0x803F, 0], "DCBA": [0, 0x803F]}
    for order, words in expect.items():
        codec = RegisterCodec(0, 2, [PointEncoding("x", "holding", 0, "float32", order)])  # type: ignore[arg-type]
        assert codec.encode([1.0]).tolist() == words, order


def test_scale_offset_bitfield_and_bool() -> None:
    pts = [
        PointEncoding("v", "holding", 0, "uint16", scale=0.1),
        PointEncoding("t", "holding", 1, "int16", scale=0.1, offset=-40.0),
        PointEncoding("b3", "holding", 2, "bitfield", bit=3),
        PointEncoding("b15", "holding", 2, "bitfield", bit=15),
        PointEncoding("b0", "holding", 2, "bitfield", bit=0),
        PointEncoding("on", "holding", 3, "bool"),
    ]
    codec = RegisterCodec(0, 4, pts)
    regs = codec.encode([230.4, 21.5, 1, 1, 0, 1])
    assert regs.tolist() == [2304, 615, 0x8008, 1]
    assert codec.decode(regs).tolist() == pytest.approx([230.4, 21.5, 1, 1, 0, 1])


def test_plan_merges_small_gaps_and_respects_sdm630_limits() -> None:
    pts = [PointEncoding(f"p{a}", "input", a, "float32") for a in (0, 2, 4, 0x46, 0x48, 0xC8, 0x156)]
    sdm = ModbusSettings(max_registers=80, even_count=True, max_gap=10)
    plan = plan_reads(pts, sdm)
    assert [(r.start, r.count) for r in plan] == [(0, 6), (0x46, 4), (0xC8, 2), (0x156, 2)]
    dense = [PointEncoding(f"p{a}", "input", a, "float32") for a in range(0, 200, 2)]
    plan = plan_reads(dense, sdm)
    assert all(r.count <= 80 and r.count % 2 == 0 for r in plan)
    assert sum(len(r.codec.names) for r in plan) == 100
    odd = plan_reads(
        [PointEncoding("a", "holding", 0, "uint16"), PointEncoding("b", "holding", 2, "uint16")],
        ModbusSettings(even_count=True),
    )
    assert [(r.start, r.count) for r in odd] == [(0, 4)]


class _Fixed(Equipment):
    def step(self, t: float, dt: float) -> None:
        pass


def _all_types_profile() -> tuple[DeviceProfile, dict[str, float]]:
    points: dict[str, dict[str, object]] = {}
    values: dict[str, float] = {}
    address = 0
    samples = {
        "int16": -12345,
        "uint16": 54321,
        "int32": -2_000_000_000,
        "uint32": 4_000_000_000,
        "int64": -(2**52) + 7,
        "uint64": 2**52 + 9,
        "float32": -1234.5,
        "float64": 6.02214076e23,
    }
    for dtype, value in samples.items():
        for order in ORDERS:
            name = f"{dtype}_{order}"
            points[name] = {"address": address, "type": dtype, "order": order}
            values[name] = float(value)
            address += {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}.get(dtype, 4)
    points["scaled"] = {"address": address, "type": "uint16", "scale": 0.01}
    values["scaled"] = 123.45
    points["flag3"] = {"address": address + 1, "type": "bitfield", "bit": 3}
    points["flag9"] = {"address": address + 1, "type": "bitfield", "bit": 9}
    values["flag3"], values["flag9"] = 1.0, 0.0
    points["coil5"] = {"address": 5, "kind": "coil", "type": "bool"}
    points["di2"] = {"address": 2, "kind": "discrete", "type": "bool"}
    values["coil5"], values["di2"] = 1.0, 1.0
    points["ir7"] = {"address": 7, "kind": "input", "type": "int16"}
    values["ir7"] = -7.0
    profile = DeviceProfile.model_validate(
        {"profile": "all-types", "asset_type": "sensor", "modbus": {"max_registers": 40}, "points": points}
    )
    return profile, values


def test_every_type_round_trips_through_the_simulator_over_modbus_tcp() -> None:
    profile, values = _all_types_profile()
    model = _Fixed("S1")
    model.values.update(values)
    port = free_port()
    server = ModbusSimServer("127.0.0.1", port, [SimulatedModbusDevice(3, profile, model)])
    bus = SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    device = ModbusDevice.from_profile("S1", 3, 1.0, profile)
    poller = GatewayPoller("127.0.0.1", port, [device], bus, SystemClock(), Metrics())

    poll_once(server, poller, device)
    batch = got[0]
    assert (batch.quality == Quality.GOOD).all(), dict(zip(batch.points, batch.quality, strict=True))
    decoded = dict(zip(batch.points, batch.values, strict=True))
    for name, value in values.items():
        assert math.isclose(decoded[name], value, rel_tol=1e-6), (name, decoded[name], value)
    assert len(device.requests) > 3  # holding split by the 40-register limit, plus coil/discrete/input
