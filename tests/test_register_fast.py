"""The codec's fast decode (a block viewed as its type in place) against its general path, bit for bit.

``RegisterCodec.decode`` takes the fast path for number types, most significant word first, with
every point of a type on the same word alignment; ``_decode_general`` is the path every codec can
take. Both must give the same 64 bits for every input: NaN payloads and signs, infinities, -0.0,
scale and offset, every order and alignment, as one row, as a matrix, from native or big-endian
words, and written into the poller's columns.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.model import Quality
from monitord.drivers.modbus import plan_reads
from monitord.drivers.verdict import mark_quality
from monitord.ingest.profiles import DeviceProfile, ModbusSettings
from monitord.ingest.registers import WORDS, PointEncoding, RegisterCodec

# Every built-in profile with Modbus points (MQTT-only profiles have nothing to decode).
PROFILES = [
    p
    for p in sorted((CONFIG_DIR / "profiles").glob("*.yaml"))
    if DeviceProfile.model_validate(load_yaml(p)).modbus_encodings()
]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
NUMBERS = ["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"]
# Words that make the awkward values of float32 and float64 (and extreme integers) wherever they
# land: NaN (quiet, signalling, negative, with a payload), +-inf, -0.0, the largest and smallest.
SPECIAL = [0x7FC0, 0x7FA0, 0xFFC1, 0x7F80, 0xFF80, 0x8000, 0x0000, 0x7FF8, 0x7FF4, 0xFFF0, 0x7FF0]
SPECIAL += [0xFFFF, 0x0001, 0x7F7F, 0x0080]


def general(codec: RegisterCodec, regs: npt.NDArray[np.uint16]) -> npt.NDArray[np.float64]:
    """What the general path gives for ``regs``."""
    return codec._decode_general(regs, np.empty((*regs.shape[:-1], len(codec.points))))


def bits(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    return np.ascontiguousarray(values).view(np.uint64)


def blocks(count: int, seed: int) -> npt.NDArray[np.uint16]:
    """Rows of registers: random words, then every pair and quadruple of the special words."""
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, 2**16, size=count) for _ in range(8)]
    for k, first in enumerate(SPECIAL):
        for shift in range(4):  # each special word at each position of a 4-word value
            row = np.array([SPECIAL[(k + i) % len(SPECIAL)] for i in range(count)])
            row[shift::4] = first
            rows.append(row)
    return np.array(rows, dtype=np.uint16)


def assert_fast_is_general(codec: RegisterCodec, rows: npt.NDArray[np.uint16]) -> None:
    # A signalling NaN made quiet by the cast to float64 warns "invalid value" on either path.
    with np.errstate(invalid="ignore"):
        _assert_fast_is_general(codec, rows)


def _assert_fast_is_general(codec: RegisterCodec, rows: npt.NDArray[np.uint16]) -> None:
    expect = general(codec, rows)
    wire = np.frombuffer(rows.astype(">u2").tobytes(), ">u2").reshape(rows.shape)
    # As the poller hands a reply over: a view of the frame one byte in, so not aligned in memory.
    frames = [np.frombuffer(b"\x03" + row.astype(">u2").tobytes(), ">u2", len(row), 1) for row in rows]
    for got in (
        codec.decode(rows),
        codec.decode(wire),
        np.array([codec.decode(row.tolist()) for row in rows]),
        np.array([codec.decode(f[None])[0] for f in frames]),
        codec.decode(np.stack(frames)),
    ):
        np.testing.assert_array_equal(bits(got), bits(expect))
    # Into the poller's columns of a wider matrix (a view with a stride), the rest left alone.
    into = np.full((len(rows), len(codec.points) + 5), 7.0)
    codec.decode(wire, out=into[:, 2 : 2 + len(codec.points)])
    np.testing.assert_array_equal(bits(into[:, 2 : 2 + len(codec.points)]), bits(expect))
    assert (into[:, :2] == 7.0).all() and (into[:, 2 + len(codec.points) :] == 7.0).all()


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_builtin_profile_decodes_alike_on_both_paths(path: object) -> None:
    profile = DeviceProfile.model_validate(load_yaml(path))  # type: ignore[arg-type]
    for k, req in enumerate(plan_reads(profile.modbus_encodings(), profile.modbus or ModbusSettings())):
        assert_fast_is_general(req.codec, blocks(req.count, seed=k))


def test_the_common_meter_blocks_take_the_fast_path_whole() -> None:
    """Otherwise the tests above would hold nothing: an SDM630's blocks are one float32 group each."""
    profile = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))
    assert profile.modbus is not None
    codecs = [r.codec for r in plan_reads(profile.modbus_encodings(), profile.modbus)]
    assert codecs and all(c._fast and c._whole for c in codecs)


def test_scale_offset_and_negative_zero_on_the_fast_path() -> None:
    codec = RegisterCodec(
        0,
        8,
        [
            PointEncoding("f", "holding", 0, "float32"),
            PointEncoding("g", "holding", 2, "float32", scale=0.5, offset=-1.0),
            PointEncoding("h", "holding", 4, "float32"),
            PointEncoding("i", "holding", 6, "float32", scale=-2.0),
        ],
    )
    assert codec._fast and codec._whole
    raw = np.array([-0.0, 3.0, float("inf"), 1.5], ">f4")
    regs = np.frombuffer(raw.tobytes(), ">u2").astype(np.uint16)
    assert regs[:2].tolist() == [0x8000, 0]
    got = codec.decode(regs)
    # -0.0 * 1 + 0 is +0.0 on the general path, and so it must be on the fast one.
    assert bits(got)[0] == bits(np.array([0.0]))[0]
    assert got.tolist() == [0.0, 0.5, float("inf"), -3.0]
    np.testing.assert_array_equal(bits(got), bits(general(codec, regs)))


def test_a_scaled_reading_that_overflows_is_inf_without_a_warning_and_then_a_decode_error() -> None:
    """A float64 near its largest value times a scale is ±inf on both paths (pytest makes any
    RuntimeWarning an error), and the poller's marks make it a decode_error, never a value."""
    big = np.finfo(np.float64).max / 1.5
    for order, layout in (("ABCD", ">f8"), ("DCBA", "<f8")):  # the fast path, then the general one
        codec = RegisterCodec(0, 4, [PointEncoding("e", "holding", 0, "float64", order, scale=-2.0)])
        assert codec._fast == (order == "ABCD")
        regs = np.frombuffer(np.array([big], layout).tobytes(), ">u2").astype(np.uint16)
        got = codec.decode(regs)
        assert got.tolist() == [-math.inf]
        quality = np.zeros(1, dtype=np.int8)
        mark_quality(got, quality, np.array([-math.inf]), np.array([math.inf]))
        assert quality.tolist() == [int(Quality.DECODE_ERROR)]


def test_mixed_alignment_and_swapped_orders_keep_the_general_path() -> None:
    odd = RegisterCodec(
        0, 6, [PointEncoding("a", "holding", 0, "float32"), PointEncoding("b", "holding", 3, "float32")]
    )
    swapped = RegisterCodec(0, 2, [PointEncoding("a", "holding", 0, "float32", "CDAB")])
    bitfield = RegisterCodec(0, 1, [PointEncoding("a", "holding", 0, "bitfield", bit=3)])
    assert not odd._fast and not swapped._fast and not bitfield._fast
    for codec in (odd, swapped, bitfield):
        assert_fast_is_general(codec, blocks(codec.count, seed=3))


@st.composite
def codecs(draw: st.DrawFn) -> RegisterCodec:
    """A block of 1 to 8 points of any type, order, scale and offset, at any address; bits beside."""
    points, address = [], draw(st.integers(0, 3))
    for i in range(draw(st.integers(1, 8))):
        dtype = draw(st.sampled_from([*NUMBERS, "bitfield", "bool"]))
        order = draw(st.sampled_from(ORDERS))
        scale = draw(st.sampled_from([1.0, 0.1, -2.0, 1e-3]))
        offset = draw(st.sampled_from([0.0, -40.0, 0.5]))
        bit = draw(st.integers(0, 15))
        points.append(PointEncoding(f"p{i}", "holding", address, dtype, order, scale, offset, bit))  # type: ignore[arg-type]
        address += WORDS[dtype] + draw(st.sampled_from([0, 0, 1, 2]))
    if draw(st.booleans()):
        points.reverse()  # out of address order: the scatter is needed
    if draw(st.booleans()):  # an alias of the first point, at the same address
        p = points[0]
        points.append(PointEncoding("alias", p.kind, p.address, p.dtype, p.order, p.scale, p.offset, p.bit))
    return RegisterCodec(0, address + draw(st.integers(0, 3)), points)


@given(codecs(), st.integers(0, 2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_any_block_decodes_alike_on_both_paths(codec: RegisterCodec, seed: int) -> None:
    assert_fast_is_general(codec, blocks(codec.count, seed))


def test_bits_decode_alike() -> None:
    codec = RegisterCodec(0, 9, [PointEncoding(f"c{i}", "coil", i, "bool") for i in range(0, 9, 2)])
    rows = np.random.default_rng(1).integers(0, 2, size=(4, 9)).astype(np.uint16)
    np.testing.assert_array_equal(bits(codec.decode(rows)), bits(general(codec, rows)))
