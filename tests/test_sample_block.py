"""A ``SampleBlock``'s fast paths (issue 13, the gateway at QoS 0) against the batch-by-batch path
for the same batches: the metrics' counters, the store writer's queue and stored rows, and the
MQTT driver's sequence numbers taken many at once, and batches made without the dataclass's
``__init__`` (``batches_of``). Pure logic, a real SQLite file for the store.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.core.metrics import Metrics
from monitord.core.model import SampleBatch, SampleBlock, batches_of
from monitord.drivers.mqtt import SequenceGaps
from monitord.drivers.mqtt_routes import TopicRoute, _time, _whole, gateway_block, lookup
from monitord.store.sqlite import SqliteStore

POINTS = ("load", "speed", "door")
TYPES = {"L0": "elevator", "L1": "elevator", "E0": "escalator"}  # L9: no type, counted as "unknown"
ASSETS = (*TYPES, "L9")


def block_of(assets: list[str], times: list[float]) -> SampleBlock:
    values = np.arange(len(assets) * len(POINTS), dtype=np.float64).reshape(len(assets), len(POINTS))
    good = np.zeros((len(assets), len(POINTS)), dtype=np.int8)
    rows = zip(assets, times, values, good, strict=True)
    batches = [SampleBatch(t, a, POINTS, v, q) for a, t, v, q in rows]
    return SampleBlock(batches, POINTS, values)


def counted(batches: list[SampleBatch]) -> dict[tuple[str, str], float]:
    metrics = Metrics()
    metrics.set_asset_types(TYPES)
    metrics.count_batches(batches)
    metrics.count_batches(batches)  # twice: the cached children count on
    return {
        (s.labels["asset_type"], s.labels["quality"]): s.value
        for family in metrics.registry.collect()
        if family.name == "monitord_bus_samples"
        for s in family.samples
        if s.name.endswith("_total")
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(ASSETS), max_size=40))
def test_metrics_count_a_block_as_they_count_its_batches_one_by_one(assets: list[str]) -> None:
    block = block_of(assets, [100.0 + i for i in range(len(assets))])
    fast = counted(block)
    assert fast == counted(list(block))
    assert sum(fast.values()) == 2 * len(assets) * len(POINTS)


Stored = tuple[int, list[tuple[float, str, tuple[str, ...], list[float], list[int]]], dict[str, float | None]]


def stored(tmp_path: Path, name: str, batches: list[SampleBatch], max_queued: int | None = None) -> Stored:
    """What was queued (points), the rows stored, and the points dropped by reason."""
    metrics = Metrics()
    kind = SqliteStore if max_queued is None else type("Bounded", (SqliteStore,), {"max_queued": max_queued})
    store = kind(tmp_path / f"{name}.db", flush_interval=0.05)
    store.attach_metrics(metrics)
    try:
        with store._lock:  # the writer's round waits: what was queued, before it takes it
            store.write_samples(batches)
            queued = store.queued
        store.flush()
        rows = [(b.ts, b.asset, b.points, b.values.tolist(), b.quality.tolist()) for b in store.samples()]
    finally:
        store.close()
    drops = {
        reason: metrics.registry.get_sample_value("monitord_store_points_dropped_total", {"reason": reason})
        for reason in ("bad_time", "queue_full")
    }
    return queued, rows, drops


def test_the_writer_queues_and_stores_a_block_as_its_batches(tmp_path: Path) -> None:
    block = block_of(["L0", "L1", "E0", "L9", "L0"], [100.0, 100.5, 101.0, 101.5, 102.0])
    fast = stored(tmp_path, "block", block)
    assert fast == stored(tmp_path, "list", list(block))
    assert fast[0] == 15 and len(fast[1]) == 5


def test_a_block_past_the_queue_bound_drops_the_same_oldest_rows(tmp_path: Path) -> None:
    block = block_of(["L0", "L1", "E0", "L9"], [100.0, 101.0, 102.0, 103.0])
    fast = stored(tmp_path, "block", block, max_queued=7)
    assert fast == stored(tmp_path, "list", list(block), max_queued=7)
    assert fast[0] == 6 and [r[0] for r in fast[1]] == [102.0, 103.0] and fast[2]["queue_full"] == 6


def test_a_block_with_a_row_without_a_time_loses_that_row_only(tmp_path: Path) -> None:
    block = block_of(["L0", "L1", "E0"], [100.0, math.nan, 102.0])
    fast = stored(tmp_path, "block", block)
    assert fast == stored(tmp_path, "list", list(block))
    assert [r[1] for r in fast[1]] == ["L0", "E0"] and fast[2]["bad_time"] == 3


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ASSETS), st.none() | st.integers(0, 12)), max_size=40))
def test_sequence_numbers_taken_many_at_once_find_the_gaps_one_by_one_does(
    seen: list[tuple[str, int | None]],
) -> None:
    one_by_one, many = SequenceGaps(), SequenceGaps()
    expected = [
        (asset, missing, seq)
        for asset, seq in seen
        if seq is not None and (missing := one_by_one.observe(asset, seq))
    ]
    half = len(seen) // 2  # two chunks: what the first leaves counts in the second
    assert many.observe_many(seen[:half]) + many.observe_many(seen[half:]) == expected


BOUNDARY = st.sampled_from([10**11, 10**11 + 1, 500_000_000_000, 1_700_000_000_000])  # s or ms
STAMPS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | BOUNDARY | st.floats() | st.text(max_size=3)
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(STAMPS, STAMPS), min_size=1, max_size=5), st.booleans())
def test_a_gateway_block_reads_times_and_sequence_numbers_as_the_entry_by_entry_parse(
    stamps: list[tuple[object, object]], deep: bool
) -> None:
    ts_field, seq_field = (("meta", "ts"), ("meta", "seq")) if deep else (("ts",), ("seq",))
    route = TopicRoute("L0", ("speed",), (("values", "speed"),), ts_field, seq_field)
    entries = [{"meta": {"ts": ts, "seq": seq}} if deep else {"ts": ts, "seq": seq} for ts, seq in stamps]
    for entry in entries:
        entry["values"] = {"speed": 1.0}
    block = gateway_block({"Lift-0": route}, {"Lift-0": entries})
    expected = [(_time(lookup(e, ts_field)), _whole(lookup(e, seq_field))) for e in entries]
    if not all(t is None or math.isfinite(t) for t, _ in expected):
        assert block is None  # a time that is no number: entry by entry, which says so
        return
    assert block is not None and list(zip(block.ts, block.seqs, strict=True)) == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ASSETS), st.floats(allow_nan=True)), max_size=20))
def test_batches_made_without_the_dataclass_init_are_what_it_makes(rows: list[tuple[str, float]]) -> None:
    values = np.arange(len(rows) * len(POINTS), dtype=np.float64).reshape(len(rows), len(POINTS))
    quality = np.zeros(values.shape, dtype=np.int8)
    made = batches_of([t for _a, t in rows], [a for a, _t in rows], POINTS, values, quality)
    inits = [SampleBatch(t, a, POINTS, v, q) for (a, t), v, q in zip(rows, values, quality, strict=True)]
    names = [f.name for f in dataclasses.fields(SampleBatch)]
    assert names == ["ts", "asset", "points", "values", "quality"]  # what batches_of sets, in order
    assert not hasattr(SampleBatch, "__post_init__")  # nothing the __init__ would run besides
    for fast, slow in zip(made, inits, strict=True):
        assert type(fast) is SampleBatch
        for name in ("ts", "asset", "points"):
            assert getattr(fast, name) is getattr(slow, name)
        assert np.shares_memory(fast.values, values) and np.shares_memory(fast.quality, quality)  # rows
        assert (
            fast.values.tobytes() == slow.values.tobytes()
            and fast.quality.tobytes() == slow.quality.tobytes()
        )
        try:
            fast.ts = 0.0  # type: ignore[misc]
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError("a batch made so is frozen as well")
    assert len(made) == len(rows)
