"""The worker's fast read of a ThingsBoard gateway message (``mqtt_routes.gateway_fast``) against
the careful ones it stands in for, on the same payloads: well-formed, and partly malformed (a field
missing, a wrong type, not finite, ints past 64 bits or past float's range, nested junk, a device
twice, bad times and sequence numbers, unmapped devices, routes of other shapes).

Three comparisons: the fast read gives nothing or exactly ``gateway_block``'s rows (bit for bit);
the worker's chunk frames are the same bytes with the fast read as without it; and drained by the
daemon they give the batches, counters and log lines of the in-process drain (``gateway_entries``
entry by entry). Pure logic, no socket.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from monitord.core.clock import ManualClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers import mqtt_wire
from monitord.drivers.mqtt import MqttDriver
from monitord.drivers.mqtt_routes import Router, TopicRoute, field_path, gateway_block, gateway_fast, loads
from monitord.drivers.mqtt_wire import Batcher, Chunk, chunk_frame, decode_frame
from monitord.ingest.bus import SampleBus
from tests.support.counters import driver_counts

FIELDS = ("speed", "floor", "load")
TOPIC = "v1/gateway/telemetry"


def lift(asset: str, ts: str = "ts", seq: str | None = "seq", fields: tuple[str, ...] = FIELDS) -> TopicRoute:
    return TopicRoute(
        asset,
        fields,
        tuple(field_path(f"values.{f}") for f in fields),
        field_path(ts),
        field_path(seq) if seq else (),
    )


def devices() -> dict[str, TopicRoute]:
    return {
        "A0": lift("L0"),
        "A1": lift("L1"),
        "A2": lift("L2"),  # three lifts mapped alike: the fast read's case
        "N0": lift("N0", seq=None),  # no sequence number mapped: its own shape
        "O0": lift("O0", fields=("temp",)),  # another point list
        "D0": lift("D0", ts="meta.ts"),  # a time that is no key of the entry: never the fast read
    }


def router() -> Router:
    return Router({"site/lift/E1/status": lift("E1")}, {TOPIC: devices()})


GOOD_TS, GOOD_SEQ = 1_700_000_000_000, 7

GOOD_VALUE = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.booleans())
ODD_NUMBER = st.sampled_from([2**63, 2**70, -(2**64), 10**308, 1e308, -1e308, 5e-324, -0.0])
JUNK = st.one_of(
    st.sampled_from([None, "1.5", "", 10**400, -(10**400), float("nan"), float("inf"), -float("inf")]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a", "speed"]), st.integers(0, 3), max_size=2),
)
BAD_TS = st.one_of(
    st.sampled_from([10**11, 10**11 + 1, 1_700_000_000, 1_700_000_000.5, 1.7e12, 2**63, 2**70, 10**400]),
    st.sampled_from([None, True, "1700000000000", [GOOD_TS], -GOOD_TS, float("nan")]),
)
BAD_SEQ = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**70, 3.0, 3.5, True, "3", None])
FLAWS = (
    "device",  # another route's device, or one mapped to nothing
    "twice",  # a device named twice (JSON keeps the last)
    "single",  # a device's entry as one object, not a list
    "empty",  # a device with no entries
    "junk device",
    "junk entry",
    "no holder",
    "junk holder",
    "missing field",
    "odd number",
    "junk value",
    "extra field",
    "bad ts",
    "no ts",
    "bad seq",
    "no seq",
    "not an object",
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A well-formed gateway message as text (three lifts mapped alike), with a few flaws or none."""
    members: list[list[Any]] = []
    for key in draw(st.lists(st.sampled_from(["A0", "A1", "A2"]), min_size=1, max_size=5)):
        entries = [
            {
                "ts": draw(st.integers(GOOD_TS - 10**6, GOOD_TS + 10**6)),
                "seq": draw(st.integers(0, 20)),
                "values": {f: draw(GOOD_VALUE) for f in draw(st.permutations(FIELDS))},
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
        members.append([key, entries])
    whole = False
    for flaw, where in draw(st.lists(st.tuples(st.sampled_from(FLAWS), st.integers(0, 99)), max_size=3)):
        member = members[where % len(members)]
        entries = member[1] if type(member[1]) is list else [member[1]]
        entry = entries[where % len(entries)] if entries else None
        holder = entry.get("values") if type(entry) is dict else None
        field = FIELDS[where % len(FIELDS)]
        if flaw == "device":
            member[0] = draw(st.sampled_from(["N0", "O0", "D0", "X9"]))
            if member[0] == "D0" and type(entry) is dict and "ts" in entry:
                entry["meta"] = {"ts": entry.pop("ts")}
        elif flaw == "twice":
            members.append([member[0], json.loads(json.dumps(member[1]))])
        elif flaw == "single" and type(member[1]) is list and member[1]:
            member[1] = member[1][0]
        elif flaw == "empty":
            member[1] = []
        elif flaw == "junk device":
            member[1] = draw(JUNK)
        elif flaw == "junk entry" and type(member[1]) is list and member[1]:
            member[1][where % len(member[1])] = draw(JUNK)
        elif flaw == "not an object":
            whole = True
        elif type(entry) is not dict:
            continue
        elif flaw == "no holder":
            entry.pop("values", None)
        elif flaw == "junk holder":
            entry["values"] = draw(JUNK)
        elif flaw == "bad ts":
            entry["ts"] = draw(BAD_TS)
        elif flaw == "no ts":
            entry.pop("ts", None)
        elif flaw == "bad seq":
            entry["seq"] = draw(BAD_SEQ)
        elif flaw == "no seq":
            entry.pop("seq", None)
        elif type(holder) is not dict:
            continue
        elif flaw == "missing field":
            holder.pop(field, None)
        elif flaw == "odd number":
            holder[field] = draw(ODD_NUMBER)
        elif flaw == "junk value":
            holder[field] = draw(JUNK)
        elif flaw == "extra field":
            holder["extra"] = draw(st.one_of(GOOD_VALUE, JUNK))
    if whole:
        return json.dumps([value for _key, value in members]).encode()
    # written out member by member: a device named twice stays twice in the text
    return ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in members) + "}").encode()


def well_formed(*keys: str, seq: int = GOOD_SEQ) -> dict[str, Any]:
    return {
        k: [{"ts": GOOD_TS + i, "seq": seq + i, "values": {"speed": 1.5, "floor": i, "load": True}}]
        for i, k in enumerate(keys)
    }


FAST = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def same_as_block(doc: Any) -> bool:
    """Whether ``gateway_fast`` gave nothing, or exactly ``gateway_block``'s rows; True: it gave rows."""
    table = devices()
    fast = gateway_fast(table, doc)
    try:
        block = gateway_block(table, doc)
    except (OverflowError, TypeError, ValueError):  # the worker then hands the message over raw
        block = None
        assert fast is None
    if fast is None:
        return False
    assert block is not None
    values = np.array(fast.values, dtype=np.float64).reshape(-1, fast.width)
    assert values.tobytes() == block.values.tobytes() and values.shape == block.values.shape
    assert [id(r) for r in fast.routes] == [id(r) for r in block.routes]
    assert fast.ts == block.ts and [type(t) for t in fast.ts] == [type(t) for t in block.ts]
    assert fast.seqs == block.seqs and [type(s) for s in fast.seqs] == [type(s) for s in block.seqs]
    return True


@FAST
@given(payloads())
def test_the_fast_read_gives_nothing_or_exactly_the_careful_blocks_rows(payload: bytes) -> None:
    try:
        doc = loads(payload)
    except ValueError:
        return
    event("read fast" if same_as_block(doc) else "not read fast")


def test_a_well_formed_message_is_read_fast_and_each_flaw_sends_it_to_the_careful_read() -> None:
    assert same_as_block(well_formed("A0", "A1", "A2"))
    assert same_as_block({"A0": well_formed("A0")["A0"][0]})  # a single object, not a list
    assert same_as_block({"N0": [{"ts": GOOD_TS, "values": {"speed": 1, "floor": 2, "load": 3}}]})
    assert same_as_block({"A0": [], "A1": well_formed("A1")["A1"]})  # a device with no entries
    flawed: list[tuple[str, Any]] = [
        ("unmapped device", "X9"),
        ("another point list", "O0"),
        ("another shape (no seq)", "N0"),
        ("time under its own object", "D0"),
    ]
    for _why, key in flawed:
        doc = well_formed("A0", key)
        assert gateway_fast(devices(), doc) is None
        same_as_block(doc)
    for change in (
        lambda e: e["values"].pop("load"),
        lambda e: e["values"].update(speed="1.5"),
        lambda e: e["values"].update(speed=None),
        lambda e: e["values"].update(speed=[1]),
        lambda e: e["values"].update(speed=float("nan")),
        lambda e: e["values"].update(speed=float("inf")),
        lambda e: e["values"].update(speed=10**400, floor=-(10**400)),  # a sum that hides them
        lambda e: e["values"].update(speed=1e308, floor=1e308, load=-1e308),  # the sum alone overflows
        lambda e: e.update(values=[1, 2, 3]),
        lambda e: e.pop("values"),
        lambda e: e.pop("ts"),
        lambda e: e.update(ts=1_700_000_000),  # seconds
        lambda e: e.update(ts=1.7e12),  # a float
        lambda e: e.update(ts=True),
        lambda e: e.update(ts=10**400),
        lambda e: e.pop("seq"),
        lambda e: e.update(seq=3.0),
        lambda e: e.update(seq=2**63),
        lambda e: e.update(seq=-(2**63) - 1),
        lambda e: e.update(seq=True),
    ):
        doc = well_formed("A0", "A1")
        change(doc["A1"][0])
        assert gateway_fast(devices(), doc) is None, doc
        same_as_block(doc)
    hidden = well_formed("A0", "A1")  # ints only up to them: their sum, 0, is finite
    hidden["A0"][0]["values"].update(speed=10**400, floor=-(10**400))
    assert gateway_fast(devices(), hidden) is None
    same_as_block(hidden)
    edge = well_formed("A0", "A1")
    edge["A0"][0]["seq"], edge["A1"][0]["seq"] = 2**63 - 1, -(2**63)  # the widest that fit
    edge["A0"][0]["values"]["speed"] = 2**70  # an int past 64 bits, within float's range
    assert same_as_block(edge)


Message = tuple[str, bytes]  # topic, payload


def gateway(payloads: list[bytes]) -> list[Message]:
    return [(TOPIC, p) for p in payloads]


def chunks(messages: list[Message], fast: bool, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(mqtt_wire, "gateway_fast", lambda devices, doc: None)
        batcher = Batcher(router())
        for topic, payload in messages:
            batcher.add(1_700_000_000.0, topic, payload)
        return chunk_frame(Chunk(tuple(batcher.take())))


def drained(messages: list[Message], via_worker: bool) -> tuple[list[tuple[object, ...]], dict[str, float]]:
    """The batches and counters of a stream of messages, in process or through the worker."""
    metrics, bus = Metrics(), SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = MqttDriver("127.0.0.1", 1, router(), bus, ManualClock(1_700_000_000.0), metrics, client_id="t")
    raw = [(1_700_000_000.0, topic, p) for topic, p in messages]
    if via_worker:
        batcher = Batcher(router())
        for message in raw:
            batcher.add(*message)
        handed = decode_frame(chunk_frame(Chunk(tuple(batcher.take()))))
        assert isinstance(handed, Chunk)
        driver._queue.extend(handed.items)
    else:
        driver._queue.extend(raw)
    assert driver.drain() == len(messages)
    batches = [
        (b.ts, b.asset, b.points, b.values.tobytes(), b.quality.tolist())
        for b in sorted(got, key=lambda b: b.asset)  # per asset in order (a stable sort)
    ]
    return batches, driver_counts(metrics)


SINGLE = "site/lift/E1/status"  # a lift of the same point list on its own topic: rows of the same run
MESSAGES = st.one_of(
    st.tuples(st.just(TOPIC), payloads()),
    st.just((TOPIC, json.dumps(well_formed("A0", "A1", "A2")).encode())),
    st.tuples(
        st.just(SINGLE),
        st.builds(lambda seq: json.dumps(well_formed("E1", seq=seq)["E1"][0]).encode(), st.integers(0, 20)),
    ),
)


@FAST
@given(st.lists(MESSAGES))
def test_the_worker_frames_the_same_bytes_with_the_fast_read_and_drains_as_in_process(
    messages: list[Message],
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert chunks(messages, True, monkeypatch) == chunks(messages, False, monkeypatch)
    logger = logging.getLogger("monitord.drivers.mqtt")
    said: list[list[str]] = []
    results = []
    for via_worker in (True, False):
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        logger.addHandler(handler)
        try:
            results.append(drained(messages, via_worker))
        finally:
            logger.removeHandler(handler)
        said.append([r.getMessage() for r in records])
    assert results[0] == results[1]
    # The same lines; their order may differ, and did before this fast read: the daemon logs a
    # chunk's clock skews before its sequence gaps, in process they alternate message by message.
    # The worker's own hand-over is compared byte for byte above.
    assert sorted(said[0]) == sorted(said[1])


def test_a_stream_of_well_formed_and_flawed_messages_is_judged_the_same_either_way(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    flawed = well_formed("A0", "A1")
    flawed["A1"][0]["values"]["speed"] = "fast"
    gap = well_formed("A0", "A1", seq=GOOD_SEQ + 5)  # A0: 7 → 12, A1: 8 → 13: two gaps
    stream = gateway([json.dumps(d).encode() for d in (well_formed("A0", "A1"), flawed, gap, {"X9": [{}]})])
    assert chunks(stream, True, monkeypatch) == chunks(stream, False, monkeypatch)
    assert gateway_fast(devices(), loads(stream[0][1])) is not None  # the fast read is what ran
    with caplog.at_level(logging.INFO, "monitord.drivers.mqtt"):
        ours, counts = drained(stream, True)
        said = [r.getMessage() for r in caplog.records]
        caplog.clear()
        theirs, their_counts = drained(stream, False)
    assert ours == theirs and counts == their_counts
    assert said == [r.getMessage() for r in caplog.records] and len(said) == 3  # two gaps, X9
    assert counts["monitord_mqtt_sequence_gaps_total[('asset', 'L0')]"] == 4  # 7, 7, 12
    assert counts["monitord_mqtt_sequence_gaps_total[('asset', 'L1')]"] == 4  # 8, 8 (partly bad), 13
    decode_error = int(Quality.DECODE_ERROR)
    l1 = [b[4] for b in ours if b[1] == "L1"]
    assert l1 == [[0, 0, 0], [decode_error, 0, 0], [0, 0, 0]]  # "fast": that point alone
