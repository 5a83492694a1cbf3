"""The frames between the daemon and its MQTT worker (``drivers/mqtt_wire.py``): no pickle.

A frame round-trips exactly (values, NaN, shapes, unknown sequence numbers, unicode topics, raw
payloads, the setup's router); every truncation of a frame, a wrong length, an unknown kind or tag
and rows that do not fit the daemon's routes are refused with a ``WireError`` saying what is wrong;
and over a real socket pair the daemon's side counts such a frame as a worker that ended, says why,
and marks its lift ``comm_error``, without crashing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import struct
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.core.clock import ManualClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers import mqtt_keeper
from monitord.drivers.mqtt import Router, StatusRoute, TopicRoute
from monitord.drivers.mqtt_keeper import WorkerDriver
from monitord.drivers.mqtt_routes import field_path
from monitord.drivers.mqtt_wire import (
    HEADER,
    Ack,
    Batcher,
    Chunk,
    Event,
    LogLine,
    RouteTable,
    Rows,
    WireError,
    ack_frame,
    chunk_frame,
    decode_frame,
    event_frame,
    log_frame,
    setup_frame,
)
from monitord.ingest.bus import SampleBus
from tests.support import eventually, run

LIFT = TopicRoute("L1", ("speed", "floor"), (("values", "speed"), ("values", "floor")), ("ts",), ("seq",))
METER = TopicRoute("M1", ("kw",), (field_path("data.values[0].kw"),))


def rows(n: int = 3, width: int = 2, seqs: tuple[int | None, ...] | None = None) -> Rows:
    values = np.arange(n * width, dtype=np.float64).reshape(n, width)
    values[0, -1] = math.nan
    quality = np.zeros((n, width), dtype=np.int8)
    quality[0, -1] = int(Quality.DECODE_ERROR)
    sent = np.full(n, math.nan)
    sent[-1] = 1_700_000_000.25
    return Rows(
        np.zeros(n, dtype=np.int32),
        values,
        quality,
        np.linspace(1.7e9, 1.7e9 + 1, n),
        sent,
        seqs,
        max(1, n - 1),
    )


def same_rows(a: Rows, b: Rows) -> bool:
    return (
        np.array_equal(a.routes, b.routes)
        and a.values.shape == b.values.shape
        and np.array_equal(a.values, b.values, equal_nan=True)
        and np.array_equal(a.quality, b.quality)
        and np.array_equal(a.received, b.received)
        and np.array_equal(a.sent, b.sent, equal_nan=True)
        and a.seqs == b.seqs
        and a.messages == b.messages
    )


def test_a_chunk_round_trips_exactly() -> None:
    items = (
        (1.5, "site/电梯/E1/状态", b"\x00\xff not json"),
        rows(3, 2, (7, None, -(2**63))),
        (2.25, "", b""),
        rows(1, 17),
        (3.0, "a/b😀", b"x" * 9),  # lengths that need padding
    )
    got = decode_frame(chunk_frame(Chunk(items, 2**40)))
    assert isinstance(got, Chunk) and got.ack == 2**40 and len(got.items) == len(items)
    for want, have in zip(items, got.items, strict=True):
        if isinstance(want, Rows):
            assert isinstance(have, Rows) and same_rows(want, have)
            assert have.values.flags.writeable and have.values.flags.aligned
        else:
            assert have == want and type(have[2]) is bytes
    assert decode_frame(chunk_frame(Chunk(()))) == Chunk(())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 5),
    st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=6, max_size=6),
    st.text(max_size=12),
    st.binary(max_size=20),
)
def test_any_rows_and_raw_round_trip(
    n: int, width: int, numbers: list[int | None], topic: str, payload: bytes
) -> None:
    item = rows(n, width, tuple(numbers[:n]))
    got = decode_frame(chunk_frame(Chunk(((0.5, topic, payload), item, (0.5, topic, payload)))))
    assert isinstance(got, Chunk)
    assert got.items[0] == got.items[2] == (0.5, topic, payload)
    assert isinstance(got.items[1], Rows) and same_rows(item, got.items[1])


def test_the_other_frames_round_trip() -> None:
    assert decode_frame(event_frame("disconnected")) == Event("disconnected")
    assert decode_frame(log_frame(30, "monitord.drivers.mqtt", "mqtt: 断开 ✓")) == LogLine(
        30, "monitord.drivers.mqtt", "mqtt: 断开 ✓"
    )
    assert decode_frame(ack_frame(12)) == Ack(12)
    router = Router(
        {
            "site/lift/E1/status": LIFT,
            "site/meter/+/data": METER,
            "site/lift/E2/status": dataclasses.replace(LIFT, asset="E2", changes=True),  # reports changes
        },
        {"v1/gateway/telemetry": {"Lift-7": LIFT}},
        {
            "v1/gateway/connect": StatusRoute("connect", devices={"Lift-7": "L1"}),
            "s/E1": StatusRoute("word", "E1"),
        },
    )
    setup = {"host": "h", "port": 1883, "router": router, "tls": {"ca": "ca.pem", "cert": None, "key": None}}
    got = decode_frame(setup_frame(setup))
    assert isinstance(got, dict) and got["tls"] == setup["tls"] and got["port"] == 1883
    back = got["router"]
    assert (back.assets, back.gateways, back.status) == (router.assets, router.gateways, router.status)
    assert list(back.routes()) == list(router.routes()), "row numbers index the same routes"
    assert METER.fields[0][2] == 0 and back.assets["site/meter/+/data"].fields == METER.fields  # an index


def test_every_truncation_of_a_frame_is_refused_with_what_is_wrong() -> None:
    frame = chunk_frame(Chunk(((1.0, "t/ü", b"payload"), rows(2, 3, (1, None))), 5))
    for cut in range(len(frame)):
        with pytest.raises(WireError):
            decode_frame(frame[:cut])
    body = frame[HEADER.size :]
    for cut in range(len(body)):  # a header that agrees with a short body: the items say it
        with pytest.raises(WireError, match=r"truncated|after the chunk|header"):
            decode_frame(HEADER.pack(frame[0], cut) + body[:cut])


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        (HEADER.pack(ord("Z"), 0), "unknown frame kind"),
        (HEADER.pack(ord("C"), 16) + struct.pack("=qI4x", -1, 1), "truncated"),
        (HEADER.pack(ord("C"), 24) + struct.pack("=qI4x", -1, 1) + b"Q" + bytes(7), "unknown part tag"),
        (HEADER.pack(ord("C"), 17) + struct.pack("=qI4x", -1, 0) + b"\x00", "after the chunk"),
        (HEADER.pack(ord("C"), 16) + struct.pack("=qI4x", -7, 0), "acknowledgement number"),
        (HEADER.pack(ord("E"), 4) + b"boom", "unknown worker event"),
        (HEADER.pack(ord("E"), 2) + b"\xff\xfe", "not UTF-8"),
        (HEADER.pack(ord("A"), 3) + b"abc", "acknowledgement of 3 bytes"),
        (HEADER.pack(ord("L"), 8) + struct.pack("=iI", 20, 99), "the logger's name"),
        (HEADER.pack(ord("S"), 2) + b"{}", "setup that does not read"),
        (HEADER.pack(ord("S"), 6) + b"\x80)(oS'", "setup that does not read"),  # a pickle is not a setup
    ],
)
def test_a_malformed_frame_is_refused_with_a_clear_error(frame: bytes, said: str) -> None:
    with pytest.raises(WireError, match=said):
        decode_frame(frame)


def rows_frame(item: Rows) -> bytes:
    return chunk_frame(Chunk((item,)))


def test_rows_that_do_not_fit_the_daemons_routes_are_refused() -> None:
    table = RouteTable.of([LIFT, METER, LIFT])
    assert isinstance(decode_frame(rows_frame(rows(2, 2)), table), Chunk)
    bad = [
        (replace(rows(2, 2), routes=np.array([0, 3], dtype=np.int32)), "route number outside"),
        (replace(rows(2, 2), routes=np.array([-1, 0], dtype=np.int32)), "route number outside"),
        (replace(rows(2, 2), routes=np.array([0, 1], dtype=np.int32)), "not all of one such point list"),
        (rows(2, 3), "not all of one such point list"),  # three points, the lift has two
        (replace(rows(2, 2), received=np.array([1.0, math.nan])), "receive time"),
        (replace(rows(2, 2), sent=np.array([math.inf, 1.0])), "infinite"),
    ]
    for item, said in bad:
        with pytest.raises(WireError, match=said):
            decode_frame(rows_frame(item), table)
    empty = bytearray(rows_frame(rows(1, 2)))
    struct.pack_into("=I", empty, HEADER.size + 16 + 4, 0)  # the rows' count: none
    with pytest.raises(WireError, match="rows of 0"):
        decode_frame(bytes(empty), table)


def test_a_sequence_number_past_64_bits_travels_raw() -> None:
    batcher = Batcher(Router({"site/lift/E1/status": LIFT}))
    batcher.add(1.0, "site/lift/E1/status", b'{"seq": 1, "values": {"speed": 1, "floor": 2}}')
    batcher.add(2.0, "site/lift/E1/status", b'{"seq": %d, "values": {"speed": 1, "floor": 2}}' % 2**70)
    items = batcher.take()
    assert isinstance(items[0], Rows) and items[1] == (
        2.0,
        "site/lift/E1/status",
        b'{"seq": %d, "values": {"speed": 1, "floor": 2}}' % 2**70,
    )
    got = decode_frame(chunk_frame(Chunk(tuple(items))))
    assert isinstance(got, Chunk) and got.items[1] == items[1]


def test_the_daemon_counts_a_malformed_frame_as_a_worker_that_ended(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker (here a stand-in script on the socket pair) that sends a bad frame after a good one:
    the good one is drained, the bad one refused; the end is counted, said with the frame's error,
    and the lift marked ``comm_error`` after what was handed over. The daemon goes on."""
    script = (
        "import socket, sys\n"
        "from monitord.drivers.mqtt_wire import Chunk, chunk_frame, read_frame\n"
        "sock = socket.socket(fileno=int(sys.argv[1]))\n"
        "read_frame(sock)\n"
        'good = b\'{"values": {"speed": 3, "floor": 4}}\'\n'
        "sock.sendall(chunk_frame(Chunk(((1.0, 'site/lift/E1/status', good),))))\n"
        "sock.sendall(b'C' + (16).to_bytes(4, sys.byteorder) + (-1).to_bytes(8, sys.byteorder, signed=True)"
        " + (5).to_bytes(4, sys.byteorder) + bytes(4))\n"
        "sock.recv(1)\n"
    )
    monkeypatch.setattr(mqtt_keeper, "WORKER", [mqtt_keeper.sys.executable, "-c", script])
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = WorkerDriver(
        "127.0.0.1", 1, {"site/lift/E1/status": LIFT}, bus, ManualClock(5.0), metrics, client_id="t"
    )

    async def scenario() -> None:
        task = asyncio.create_task(driver.run())
        try:
            await eventually(lambda: metrics.driver_errors.labels("mqtt", "worker")._value.get() >= 1, 15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.ERROR, "monitord.drivers.mqtt"):
        run(scenario(), timeout=30)
    ended = [r.getMessage() for r in caplog.records if "worker process ended" in r.getMessage()]
    assert ended and "a malformed frame from it: truncated frame" in ended[0], ended
    assert got[0].values.tolist() == [3.0, 4.0] and (got[0].quality == Quality.GOOD).all()
    assert (got[1].quality == Quality.COMM_ERROR).all(), "marked after what it handed over"
