"""The four vendor maps checked on 2026-12-02 (docs/devices.md), point by point, against the vendors' tables.

Each test writes a value the way the vendor's table puts it on the wire, by hand (register kind,
address, type, word order and unit taken from the table, not from the profile), and decodes it
through the profile's encoding of that point. A round trip through the simulator cannot catch a
wrong address or word order, since both ends share the profile; this can.
"""

from __future__ import annotations

import struct

import pytest

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.ingest.profiles import DeviceProfile
from monitord.ingest.registers import PointEncoding, RegisterCodec


def profile(name: str) -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / f"{name}.yaml"))


def encoding(prof: DeviceProfile, point: str) -> PointEncoding:
    [p] = [p for p in prof.modbus_encodings() if p.name == point]
    return p


def decode(p: PointEncoding, words: list[int]) -> float:
    """The profile's reading of ``words``, the registers from ``p.address`` on."""
    return float(RegisterCodec(p.address, len(words), [p]).decode(words)[0])


def float_words(value: float, low_word_first: bool = False) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [lo, hi] if low_word_first else [hi, lo]


def long_words(value: int, signed: bool = True, low_word_first: bool = False) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">i" if signed else ">I", value))
    return [lo, hi] if low_word_first else [hi, lo]


# Eastron SDM120-Modbus protocol: input registers (30001 = 0x0000), float32, high word first.
SDM120 = {
    "voltage_l1": (0x0000, 231.4),  # 30001 voltage, V
    "current_l1": (0x0006, 12.5),  # 30007 current, A
    "active_power_total": (0x000C, 2790.0),  # 30013 active power, W
    "apparent_power_total": (0x0012, 2892.5),  # 30019 apparent power, VA
    "reactive_power_total": (0x0018, -410.0),  # 30025 reactive power, VAr
    "power_factor_total": (0x001E, -0.965),  # 30031 power factor
    "frequency": (0x0046, 49.98),  # 30071 frequency, Hz
    "import_energy_kwh": (0x0048, 15_123.4),  # 30073 import active energy, kWh
    "export_energy_kwh": (0x004A, 12.5),  # 30075 export active energy, kWh
    "import_reactive_kvarh": (0x004C, 812.25),  # 30077 import reactive energy, kVArh
    "export_reactive_kvarh": (0x004E, 3.5),  # 30079 export reactive energy, kVArh
    "total_energy_kwh": (0x0156, 15_135.9),  # 30343 total active energy, kWh
    "total_reactive_kvarh": (0x0158, 815.75),  # 30345 total reactive energy, kVArh
}


@pytest.mark.parametrize("point", sorted(SDM120))
def test_sdm120_points_are_the_protocols(point: str) -> None:
    address, value = SDM120[point]
    p = encoding(profile("eastron-sdm120"), point)
    assert (p.kind, p.address, p.dtype, p.order) == ("input", address, "float32", "ABCD")
    assert decode(p, float_words(value)) == pytest.approx(value, rel=1e-6)


# CHINT DTSU666 manual, Modbus address table: holding registers (read with 03H), float32 high word
# first, in the manual's units: 0.1 V, 0.001 A, 0.1 W, 0.1 var, 0.001, 0.01 Hz; energy in kWh.
DTSU666 = {
    "voltage_l1_l2": (0x2000, 4012.0, 401.2),  # Uab
    "voltage_l3_l1": (0x2004, 3998.0, 399.8),  # Uca
    "voltage_l1": (0x2006, 2315.0, 231.5),  # Ua
    "voltage_l3": (0x200A, 2290.0, 229.0),  # Uc
    "current_l1": (0x200C, 12_345.0, 12.345),  # Ia
    "current_l3": (0x2010, 500.0, 0.5),  # Ic
    "active_power_total": (0x2012, 81_234.0, 8123.4),  # Pt
    "active_power_l2": (0x2016, 27_000.0, 2700.0),  # Pb
    "reactive_power_total": (0x201A, -5_000.0, -500.0),  # Qt
    "reactive_power_l3": (0x2020, 1_234.0, 123.4),  # Qc
    "power_factor_total": (0x202A, 985.0, 0.985),  # PFt
    "power_factor_l3": (0x2030, -870.0, -0.87),  # PFc (negative: capacitive)
    "frequency": (0x2044, 5_001.0, 50.01),  # Freq
    "import_energy_kwh": (0x101E, 123_456.5, 123_456.5),  # ImpEp, primary side, kWh
    "export_energy_kwh": (0x1028, 789.25, 789.25),  # ExpEp, primary side, kWh
}


@pytest.mark.parametrize("point", sorted(DTSU666))
def test_dtsu666_points_are_the_manuals(point: str) -> None:
    address, raw, value = DTSU666[point]
    p = encoding(profile("chint-dtsu666"), point)
    assert (p.kind, p.address, p.dtype, p.order) == ("holding", address, "float32", "ABCD")
    assert decode(p, float_words(raw)) == pytest.approx(value, rel=1e-6)


def test_dtsu666_energy_is_read_where_the_current_manual_puts_it() -> None:
    # The correction of 2026-12-02: CHINT's operation manuals put ImpEp/ExpEp (primary side, kWh)
    # at 0x101E/0x1028; only an older quick guide gives 0x401E/0x4028.
    prof = profile("chint-dtsu666")
    assert {p.name: p.address for p in prof.modbus_encodings() if p.name.endswith("energy_kwh")} == {
        "import_energy_kwh": 0x101E,
        "export_energy_kwh": 0x1028,
    }


# Danfoss FC 102, Modbus RTU: parameter P at holding register 10 x P (address 10 x P - 1); values
# are integers in the conversion index's unit; 32-bit parameters high word first.
def test_fc102_parameters_are_the_programming_guides() -> None:
    prof = profile("danfoss-fc102")
    cases = {
        "motor_voltage": (16119, "uint16", [4003], 400.3),  # 16-12, Uint16, index -1
        "output_frequency": (16129, "uint16", [503], 50.3),  # 16-13, Uint16, index -1
        "motor_current": (16139, "int32", long_words(1234), 12.34),  # 16-14, Int32, index -2
        "dc_link_voltage": (16299, "uint16", [565], 565.0),  # 16-30, Uint16, index 0
        "heatsink_temp": (16339, "uint16", [45], 45.0),  # 16-34, °C (index 100: factor 1)
        "alarm_word": (16899, "uint32", long_words(0x20, signed=False), 0x20),  # 16-90, Uint32
        "warning_word": (16919, "uint32", long_words(0x1_0000, signed=False), 0x1_0000),  # 16-92
    }
    for point, (address, dtype, words, value) in cases.items():
        p = encoding(prof, point)
        assert (p.kind, p.address, p.dtype, p.order) == ("holding", address, dtype, "ABCD"), point
        assert decode(p, words) == pytest.approx(value), point
    assert prof.points["alarm_word"].states[0x20] == "overcurrent"  # type: ignore[index]  # bit 5, A13


def test_fc102_status_word_bits_are_the_fc_profiles() -> None:
    # 16-03 (address 16029), FC profile: bit 1 drive ready, 3 trip, 6 trip lock, 7 warning,
    # 11 in operation. Drive ready and running, with a warning: 0x0802 | 0x0080.
    prof = profile("danfoss-fc102")
    word = [(1 << 1) | (1 << 7) | (1 << 11)]
    got = {
        n: decode(encoding(prof, n), word)
        for n in ("drive_ready", "tripped", "trip_lock", "warning", "running")
    }
    assert got == {"drive_ready": 1, "tripped": 0, "trip_lock": 0, "warning": 1, "running": 1}
    assert {encoding(prof, n).address for n in got} == {16029}


# TUF-2000 MODBUS register table: holding registers, REG n at address n - 1; REAL4 and LONG come low
# word first.
def test_tuf2000m_registers_are_the_tables() -> None:
    prof = profile("tuf-2000m")
    cases = {
        "flow_rate": (0, "float32", float_words(12.75, low_word_first=True), 12.75),  # REG 0001
        "velocity": (4, "float32", float_words(1.5, low_word_first=True), 1.5),  # REG 0005
        "total_volume": (8, "int32", long_words(123_456, low_word_first=True), 123_456),  # REG 0009
        "total_volume_fraction": (10, "float32", float_words(0.25, low_word_first=True), 0.25),  # 0011
        "reverse_volume": (12, "int32", long_words(-7, low_word_first=True), -7),  # REG 0013
        "net_volume": (24, "int32", long_words(123_449, low_word_first=True), 123_449),  # REG 0025
    }
    for point, (address, dtype, words, value) in cases.items():
        p = encoding(prof, point)
        assert (p.kind, p.address, p.dtype, p.order) == ("holding", address, dtype, "CDAB"), point
        assert decode(p, words) == pytest.approx(value, rel=1e-6), point


def test_tuf2000m_error_code_bits_are_the_tables() -> None:
    # REG 0072 (address 71): bit 0 no received signal, 1 low, 2 poor received signal, 3 pipe empty,
    # 4 hardware failure. Poor signal and an empty pipe: 0b01100.
    prof = profile("tuf-2000m")
    word = [(1 << 2) | (1 << 3)]
    got = {
        n: decode(encoding(prof, n), word)
        for n in ("no_signal", "poor_signal", "pipe_empty", "hardware_fault")
    }
    assert got == {"no_signal": 0, "poor_signal": 1, "pipe_empty": 1, "hardware_fault": 0}
    assert {encoding(prof, n).address for n in got} == {71}
