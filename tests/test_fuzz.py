"""Fuzz targets, one per input surface: MQTT payloads, Modbus replies, config files, API bodies.

Each runs ``MONITORD_FUZZ_EXAMPLES`` generated inputs (hypothesis): a bounded few inside ``make
test`` (default 100 each, seconds), many in ``make fuzz`` (which also prints how many each ran). The
properties are the issue's: nothing crashes, nothing is forged (a value is good only when it came
from a reply to the question asked), every bad config is a ``file:line`` error, every bad request a
4xx. Modbus replies and API bodies go over real sockets; the MQTT target drives the driver's own
drain (the broker adds nothing to parsing and would cap the rate).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitord.config.site import load_config
from monitord.core.clock import ManualClock
from monitord.core.errors import ConfigError
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.daemon.core import build_core
from monitord.daemon.web import WebServer
from monitord.daemon.web.context import Web
from monitord.drivers.mqtt import MqttDriver, TopicRoute
from monitord.ingest.bus import SampleBus
from monitord.people.identity import Identities, Signer
from monitord.store.sqlite import SqliteStore
from tests.support import TOKEN
from tests.support.configs import GOOD
from tests.support.json_fuzz import json_docs, json_leaf
from tests.support.modbus_raw import adu, poll_raw, registers

EXAMPLES = int(os.environ.get("MONITORD_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# -- MQTT payloads -----------------------------------------------------------------------------------

TOPIC = "site/lift/E1/status"
ROUTE = TopicRoute("E1", ("speed", "floor"), (("values", "speed"), ("values", "floor")), ("ts",))
json_doc = json_docs(["ts", "values", "speed", "floor", "x"])
payloads = st.one_of(
    st.binary(max_size=200),
    json_doc.map(lambda d: json.dumps(d).encode()),
    st.builds(
        lambda ts, speed, floor: json.dumps({"ts": ts, "values": {"speed": speed, "floor": floor}}).encode(),
        json_leaf,
        json_leaf,
        json_leaf,
    ),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
)


good_speeds = st.floats(min_value=-100, max_value=100, allow_nan=False)


@FUZZ
@given(st.lists(st.one_of(payloads, good_speeds), min_size=1, max_size=20))
def test_fuzz_mqtt_payloads(messages: list[bytes | float]) -> None:
    """Bad payloads cost nothing but themselves; every good message among them is kept, exactly."""
    bus = SampleBus()
    out: list[SampleBatch] = []
    bus.subscribe(out.append)
    driver = MqttDriver("127.0.0.1", 1, {TOPIC: ROUTE}, bus, ManualClock(1000.0), Metrics(), client_id="fuzz")
    marker = 1.0e9  # a floor no fuzzed payload carries, to find the good messages again
    for m in messages:
        good_one = (
            json.dumps({"values": {"speed": m, "floor": marker}}).encode() if isinstance(m, float) else m
        )
        driver._queue.append((1000.0, TOPIC, good_one))
    assert driver.drain() == len(messages)
    for b in out:
        assert math.isfinite(b.ts), "no batch without a finite time"
        good = b.quality == Quality.GOOD
        assert np.isfinite(b.values[good]).all(), "a good value is a number"
        # A message leaves out what it does not carry: the batch holds the rest, in the route's order.
        assert len(b.points) == len(b.values) == len(b.quality) > 0
        assert [p for p in ROUTE.points if p in b.points] == list(b.points)
        assert set(b.quality.tolist()) <= {int(q) for q in Quality}, "no quality but the known ones"
    kept = [
        float(b.values[0])
        for b in out
        if b.points == ROUTE.points and b.values[1] == marker and (b.quality == Quality.GOOD).all()
    ]
    assert kept == [m for m in messages if isinstance(m, float)]


# -- Modbus replies ----------------------------------------------------------------------------------

VALUE = 0x4120  # what every register of the device holds
OTHER = 0x4348  # what an answer to another question carries: taken as good, it would be forged


def _mutate(request: bytes, kind: str, data: bytes, n: int) -> bytes:
    right = registers(request, value=VALUE) if request[7] in (3, 4) else b""
    if kind == "garbage":
        return data
    if kind == "wrong_tid":
        other = registers(request, value=OTHER)
        return adu(request, other[7:], tid=(struct.unpack(">H", request[:2])[0] + 1 + n) % 65536)
    if kind == "wrong_fc":
        return registers(request, function=(request[7] % 4) + 1, value=OTHER)
    if kind == "short":
        return right[: max(8, len(right) - 1 - n % max(1, len(right) - 8))]
    if kind == "long":
        return right + data
    if kind == "exception":
        return adu(request, bytes([request[7] | 0x80, n % 256]))
    if kind == "bad_length":
        return right[:4] + struct.pack(">H", n % 65536) + right[6:]
    if kind == "silent":
        return b""
    return right


replies = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "garbage",
                "wrong_tid",
                "wrong_fc",
                "short",
                "long",
                "exception",
                "bad_length",
                "silent",
                "right",
            ]
        ),
        st.binary(max_size=40),
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=6,
)


def _poll(reply: Any) -> SampleBatch:
    [batch], _metrics = poll_raw(reply, timeout=0.05)
    return batch


@pytest.fixture(scope="module")
def honest() -> SampleBatch:
    """What the device holds, read with every reply right: the only values a poll may call good."""
    batch = _poll(lambda request: registers(request, value=VALUE) if request[7] in (3, 4) else b"")
    assert (batch.quality[:-1] == Quality.GOOD).any()
    return batch


@FUZZ
@given(replies)
def test_fuzz_modbus_replies(honest: SampleBatch, script: list[tuple[str, bytes, int]]) -> None:
    """Whatever the device answers, a value is good only if it is what the device holds."""
    plan = list(script)

    def reply(request: bytes) -> bytes:
        if request[7] not in (3, 4):
            return b""  # the sump float (discrete input) stays silent: its points are never good
        kind, data, n = plan.pop(0) if plan else ("right", b"", 0)
        return _mutate(request, kind, data, n)

    batch = _poll(reply)
    good = batch.quality == Quality.GOOD
    assert (batch.values[good] == honest.values[good]).all(), "a good value that the device does not hold"


# -- config files ------------------------------------------------------------------------------------

TOKENS = [
    "&a ",
    "*a",
    "!!float ",
    "!!binary ",
    "<<: *a",
    "\0",
    "[" * 50,
    "{",
    "}",
    "- ",
    ": ",
    "'",
    '"',
    "2024-13-45",
    "${NOPE}",
    "\t",
    "? ",
    "|\n",
    "include: /etc/passwd",
    "1e999",
    "-0x1",
]
LINE = re.compile(r"^\S+:\d+ \S")


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    lines = GOOD.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["insert", "delete", "dup", "token", "chars"]))
        if op == "delete":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "token":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(TOKENS)) + lines[i][at:]
        elif op == "chars":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.text(max_size=8)) + lines[i][at:]
        else:
            lines.insert(i, draw(st.text(max_size=30)))
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@FUZZ
@given(mutated_configs())
def test_fuzz_config_files(scratch: Path, text: str) -> None:
    path = scratch / "site.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.problems
        for line in exc.problems:
            assert LINE.match(line), line


# -- API bodies --------------------------------------------------------------------------------------


class _ApiUnderTest:
    """The real web app (uvicorn) over a real core (no drivers) on its own event loop thread."""

    def __init__(self, folder: Path) -> None:
        config = load_config(folder / "site.yaml")
        self.store = SqliteStore(folder / "api.db", flush_interval=0.05)
        self.core = build_core(config, ManualClock(1_795_000_000.0), self.store)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        web = Web(self.core, Identities([], TOKEN), Signer(b"fuzz"))
        self.api = WebServer(web, "127.0.0.1", 0)
        self.serving = asyncio.run_coroutine_threadsafe(self.api.serve(), self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.api.stop)
        self.serving.result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
        self.store.close()


@pytest.fixture(scope="module")
def api(scratch: Path) -> Iterator[_ApiUnderTest]:
    (scratch / "site.yaml").write_text(GOOD)
    under = _ApiUnderTest(scratch)
    yield under
    under.close()


bodies = st.one_of(
    st.binary(max_size=300),
    json_doc.map(lambda d: json.dumps(d).encode()),
    st.dictionaries(
        st.sampled_from(["actor", "note", "assignee", "matcher", "author", "reason", "expires_in"]),
        json_doc,
        max_size=5,
    ).map(lambda d: json.dumps(d).encode()),
)
paths = st.sampled_from(
    [
        "/tickets/WO-1/comment",
        "/tickets/WO-1/ack",
        "/silences",
        "/silences/x/expire",
        "/tickets/%00/ack",
        "/nope",
    ]
)


@FUZZ
@given(paths, bodies)
def test_fuzz_api_bodies(api: _ApiUnderTest, path: str, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.api.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        answer: Any = json.loads(r.read())
    finally:
        conn.close()
    # 422: a JSON object with a field of the wrong type, named in the answer
    assert r.status in (200, 201, 400, 404, 409, 413, 422), (r.status, answer)
    assert isinstance(answer, dict)
