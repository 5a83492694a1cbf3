"""The poller's quick ways through ``settle`` against its general one, on the same readings.

A lone device that answered every read is settled without the matrices (``_settle_one``), and
``mark_quality`` is skipped when ``unmarked`` says it would mark nothing. Both must give the
batch the general path gives: the same value bits, the same qualities.
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
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice, _Reading
from monitord.drivers.verdict import fences, mark_quality, unmarked
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.simulators.models import PowerMeter

MODBUS_PROFILES = [
    p
    for p in sorted((CONFIG_DIR / "profiles").glob("*.yaml"))
    if DeviceProfile.model_validate(load_yaml(p)).modbus_encodings()
]
# Words that make NaN, +-inf, -0.0 and huge values where they land, and small plain ones.
WORDS = [0x7FC0, 0xFF80, 0x7F80, 0x8000, 0x0000, 0x7F7F, 0xFFFF, 0x4000, 0x3F80, 0xC2C8, 0x0001]


def frame_words(block: npt.NDArray[np.uint16]) -> npt.NDArray[np.uint16]:
    """A block as the TCP poller hands it over: big-endian words in a reply frame, one byte in."""
    return np.frombuffer(b"\x04" + block.astype(">u2").tobytes(), ">u2", len(block), 1)  # type: ignore[return-value]


def readings(profile: DeviceProfile, seed: int) -> list[_Reading]:
    """One reading per kind of block content: random words, the awkward words, and zeros."""
    dev = ModbusDevice.from_profile("A1", 1, 1.0, profile)
    rng = np.random.default_rng(seed)
    out = []
    for fill in ("random", "awkward", "zeros"):
        blocks = []
        for req in dev.requests:
            if fill == "random":
                words = rng.integers(0, 2**16, size=req.count)
            elif fill == "awkward":
                words = rng.choice(WORDS, size=req.count)
            else:
                words = np.zeros(req.count)
            block = words.astype(np.uint16)
            if req.kind in ("coil", "discrete"):
                block = (block & 1).astype(np.uint16)
            blocks.append(frame_words(block) if req.kind not in ("coil", "discrete") else block)
        out.append(_Reading(dev, 1000.0 + seed, 0.0, blocks, answered=True))  # type: ignore[arg-type]
    return out


def assert_same_batch(one: object, many: object) -> None:
    a, b = one, many
    assert a.asset == b.asset and a.ts == b.ts and a.points == b.points  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a.values.view(np.uint64), np.ascontiguousarray(b.values).view(np.uint64))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a.quality, b.quality)  # type: ignore[attr-defined]
    assert a.quality.dtype == b.quality.dtype == np.int8  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", MODBUS_PROFILES, ids=lambda p: p.stem)
def test_a_lone_reading_settles_as_in_a_matrix(path: object) -> None:
    profile = DeviceProfile.model_validate(load_yaml(path))  # type: ignore[arg-type]
    with np.errstate(invalid="ignore"):  # a signalling NaN made quiet warns, on either path
        for seed in range(4):
            for r in readings(profile, seed):
                assert_same_batch(GatewayPoller._settle_one(r), GatewayPoller._settle_many([r])[0])


def test_a_meters_usual_read_takes_the_quick_checks() -> None:
    """The SDM630's model values: every block on the fast decode, and nothing to mark."""
    profile = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))
    dev = ModbusDevice.from_profile("M1", 1, 1.0, profile)
    model = PowerMeter("M1")
    blocks = [
        frame_words(r.codec.encode([model.values.get(n, 0.0) for n in r.codec.names])) for r in dev.requests
    ]
    r = _Reading(dev, 5.0, 0.0, blocks, answered=True)  # type: ignore[arg-type]
    batch = GatewayPoller._settle_one(r)
    assert all(req.codec._whole for req in dev.requests)
    assert unmarked(batch.values, dev.plan.floor, dev.plan.ceiling)
    assert (batch.quality == Quality.GOOD).all()
    assert_same_batch(batch, GatewayPoller._settle_many([r])[0])


def test_settle_takes_the_lone_way_only_for_a_whole_reading() -> None:
    """Through ``settle`` itself: a lone whole reading, a lone partial one (a block not answered:
    ``comm_error`` there), and two readings together, each as the general path settles them."""
    profile = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))
    got: list[SampleBatch] = []
    bus = SampleBus()
    bus.subscribe(got.append)
    poller = GatewayPoller("127.0.0.1", 1, [], bus, SystemClock(), Metrics())
    whole, awkward, _zeros = readings(profile, 1)
    partial = _Reading(whole.dev, 7.0, 0.0, [None, *whole.blocks[1:]], answered=True)
    with np.errstate(invalid="ignore"):
        for chunk in ([whole], [partial], [whole, awkward]):
            got.clear()
            poller.settle(chunk)
            expect = GatewayPoller._settle_many(chunk)
            assert len(got) == len(expect)
            for a, b in zip(got, expect, strict=True):
                assert_same_batch(a, b)
    poller.settle([partial])
    assert (got[-1].quality[: len(whole.dev.requests[0].codec.names)] == Quality.COMM_ERROR).all()


LIMIT = st.sampled_from([-math.inf, math.inf, math.nan, -1.0, 0.0, 1.0, 500.0])
VALUE = st.one_of(
    st.sampled_from(
        [math.nan, -math.inf, math.inf, -0.0, 0.0, 1.7976931348623157e308, -1.7976931348623157e308]
    ),
    st.floats(-1000, 1000),
)


@given(st.lists(st.tuples(VALUE, LIMIT, LIMIT, st.sampled_from(list(Quality))), min_size=1, max_size=12))
@settings(max_examples=500, deadline=None)
def test_unmarked_only_when_mark_quality_marks_nothing(
    rows: list[tuple[float, float, float, Quality]],
) -> None:
    values = np.array([r[0] for r in rows])
    low, high = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    quality = np.array([int(r[3]) for r in rows], dtype=np.int8)
    marked = quality.copy()
    mark_quality(values, marked, low, high)
    if unmarked(values, *fences(low, high)):
        np.testing.assert_array_equal(marked, quality)
    # And the other way round for a good read: nothing to mark means unmarked, so the quick
    # check is taken whenever it could be.
    good = np.zeros(len(rows), dtype=np.int8)
    mark_quality(values, good, low, high)
    if (good == Quality.GOOD).all() and not np.isnan(low).any() and not np.isnan(high).any():
        assert unmarked(values, *fences(low, high))
