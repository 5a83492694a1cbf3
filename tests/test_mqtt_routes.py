"""MQTT as the field uses it (issue 11), the pure logic: field paths with array indexes, topic
filters with wildcards, the ThingsBoard gateway envelope, status words, and what `monitord check`
refuses (two assets claiming one topic or one gateway device key, certificates that are not there).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.config.mqtt import publish_topic, router
from monitord.config.site import load_config
from monitord.core.clock import ManualClock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch
from monitord.drivers.mqtt import MqttDriver
from monitord.drivers.mqtt_routes import (
    Router,
    StatusRoute,
    TopicRoute,
    field_path,
    gateway_entries,
    lookup,
    overlap,
    parse_document,
    parse_payload,
    status_word,
    walk_fields,
)
from monitord.ingest.bus import SampleBus
from monitord.ingest.topics import topic_matches as matches
from tests.support.configs import PROFILES, problems, write
from tests.support.json_fuzz import json_docs


def lift(asset: str, mqtt: str) -> str:
    """One elevator asset of the built-in profile, on MQTT as ``mqtt`` says."""
    return f"  - {{id: {asset}, type: elevator, profile: elevator-gbt24476, connection: {{mqtt: {mqtt}}}}}\n"


LIFT = (
    f"site: {{id: t1}}\nmqtt: {{url: 'mqtt://127.0.0.1:1883'}}\n"
    f"profiles:\n  - include: {PROFILES}/elevator-gbt24476.yaml\nassets:\n"
    + lift("L7", "{gateway: thingsboard, device: Lift-7}")
    + lift("L8", "{gateway: thingsboard, device: Lift-8}")
    + lift("E1", "{topic: 't1/+/lift/{asset}/#'}")
    + lift("E2", "{status_topic: 'homie/{asset}/$state'}")
)


def test_field_paths_step_into_arrays() -> None:
    assert field_path("data.values[0].temp") == ("data", "values", 0, "temp")
    assert field_path("a[1][2]") == ("a", 1, 2)
    doc = {"data": {"values": [{"temp": 21.5}, {"temp": 30}]}}
    assert lookup(doc, field_path("data.values[1].temp")) == 30
    assert lookup(doc, field_path("data.values[2].temp")) is None  # past the end: missing, not an error
    assert lookup(doc, field_path("data[0]")) is None  # an index into an object: missing
    for bad in ("a..b", "[0]", "a[x]", "a."):
        with pytest.raises(ValueError, match="bad field path"):
            field_path(bad)


def test_a_bad_field_path_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    profile = write(
        tmp_path,
        "profile: box\nasset_type: sensor\nmqtt: {topic: '{site}/{asset}'}\n"
        "points:\n  temp: {field: 'data.values[x].temp'}\n",
        "box.yaml",
    )
    site = f"site: {{id: t1}}\nmqtt: {{}}\nprofiles:\n  - include: {profile}\nassets: []\n"
    (said,) = problems(tmp_path, site)
    assert said.startswith(f"{profile}:5 profiles[0].points.temp.field: 'data.values[x].temp' has characters")


def test_wildcards_match_and_overlap_as_mqtt_says() -> None:
    assert matches("a/+/c", "a/b/c") and not matches("a/+/c", "a/b/d") and not matches("a/+", "a/b/c")
    assert matches("a/#", "a") and matches("a/#", "a/b/c") and not matches("a/b", "a/b/c")
    assert not matches("#", "$SYS/broker/uptime") and matches("$SYS/#", "$SYS/broker/uptime")
    assert overlap("a/+/c", "a/b/#") and overlap("a/b", "a/b") and overlap("+/b", "a/+")
    assert not overlap("a/+/c", "a/b/d") and not overlap("a/b", "a/b/c")


def test_the_router_resolves_exact_wildcard_gateway_and_status_topics(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, LIFT))
    r = router(config)
    assert set(r.gateways["v1/gateway/telemetry"]) == {"Lift-7", "Lift-8"}
    assert r.status["v1/gateway/disconnect"].devices == {"Lift-7": "L7", "Lift-8": "L8"}
    found = r.resolve("t1/north/lift/E1/box/3")
    assert isinstance(found, TopicRoute) and found.asset == "E1"
    assert r.resolve("t1/north/lift/E1/box/3") is found  # remembered, not matched again
    assert r.resolve("t1/north/lift/E9/box") is None
    e2 = r.resolve("t1/elevator/E2/status")
    assert isinstance(e2, TopicRoute) and e2.asset == "E2"
    assert r.status["homie/E2/$state"].asset == "E2"
    # the simulator publishes where the daemon listens
    for a in config.assets:
        assert r.resolve(publish_topic(config, a)) is not None, a.id


def test_gateway_entries_each_land_and_a_bad_one_costs_itself() -> None:
    route = TopicRoute("L7", ("temp",), (field_path("values.temp"),), ("ts",))
    body = {
        "Lift-7": [
            {"ts": 1700000000000, "values": {"temp": 1}},
            {"ts": 1700000001000, "values": {"temp": 2}},
            5,
        ],
        "Lift-9": [{"ts": 1700000000000, "values": {"temp": 3}}],
    }
    out = list(gateway_entries({"Lift-7": route}, json.dumps(body).encode()))
    good = [p for _k, _r, p in out if not isinstance(p, Exception)]
    assert [(p.ts, float(p.values[0])) for p in good] == [(1700000000.0, 1.0), (1700000001.0, 2.0)]
    bad = [(k, str(p)) for k, _r, p in out if isinstance(p, Exception)]
    assert bad == [
        ("Lift-7", "device 'Lift-7': an entry is not an object"),
        ("Lift-9", "device 'Lift-9' is mapped to no asset"),
    ]
    with pytest.raises(ValueError):
        list(gateway_entries({}, b"[1, 2]"))


def test_status_words() -> None:
    assert [status_word(w) for w in (b"online", b"ready", b'"ONLINE"', b"1")] == [True] * 4
    assert [status_word(w) for w in (b"offline", b"lost", b"disconnected", b"0")] == [False] * 4
    assert status_word(b"init") is None and status_word(b"sleeping") is None
    assert status_word(b'{"state": "online"}') is True and status_word(b'{"status": "Offline"}') is False
    with pytest.raises(ValueError, match="unknown status"):
        status_word(b"maybe")


def test_plain_and_json_parse_unchanged() -> None:
    assert float(parse_payload(TopicRoute("A", ("t",), ()), b" 23.5 ").values[0]) == 23.5
    parsed = parse_payload(TopicRoute("A", ("t",), (field_path("d[0].t"),)), b'{"d": [{"t": 4}]}')
    assert parsed.quality[0] == Quality.GOOD and parsed.values[0] == 4


def _driver(metrics: Metrics, bus: SampleBus) -> MqttDriver:
    route = TopicRoute("L7", ("temp",), (field_path("values.temp"),), ("ts",))
    routes = Router(
        {"t1/E1": TopicRoute("E1", ("temp",), (field_path("values.temp"),))},
        {"v1/gateway/telemetry": {"Lift-7": route}},
        {"v1/gateway/disconnect": StatusRoute("disconnect", devices={"Lift-7": "L7"})},
    )
    return MqttDriver("127.0.0.1", 1, routes, bus, ManualClock(1700000000.0), metrics, client_id="t")


def test_malformed_messages_are_counted_per_asset_and_logged_once_per_topic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, bus = Metrics(), SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = _driver(metrics, bus)
    messages = [
        ("t1/E1", b"not json"),
        ("t1/E1", b'{"values": {"tmp": 3}}'),  # a field path that does not fit: no value, counted
        ("t1/E1", b'{"values": {"temp": 3}}'),
        ("v1/gateway/telemetry", b'{"Lift-9": [{"values": {"temp": 1}}]}'),  # a device mapped to nothing
        ("v1/gateway/telemetry", b'{"Lift-7": [{"ts": 1700000000000, "values": {"temp": 5}}]}'),
        ("v1/gateway/telemetry", b"{"),
    ]
    for topic, body in messages:
        driver._queue.append((1700000000.0, topic, body))
    with caplog.at_level(logging.WARNING, "monitord.drivers.mqtt"):
        driver.drain()

    def malformed(asset: str) -> float:
        return (
            metrics.registry.get_sample_value("monitord_mqtt_malformed_messages_total", {"asset": asset}) or 0
        )

    assert (malformed("E1"), malformed("L7"), malformed("")) == (2, 0, 2)
    said = [r.getMessage() for r in caplog.records]
    assert sum("on t1/E1 " in m for m in said) == 1, said  # once per topic, with the first reason
    assert any("'Lift-9' is mapped to no asset" in m for m in said)
    good = [(b.asset, float(b.values[0])) for b in got if (b.quality == Quality.GOOD).all()]
    assert good == [("E1", 3.0), ("L7", 5.0)]
    # The misfit path: "temp" is not in the message, so no batch (the point is left as it was), but
    # counted and logged; never a value.
    assert len(got) == 2


def test_a_status_says_offline_at_once_and_a_lost_broker_hands_back_to_silence() -> None:
    metrics, bus = Metrics(), SampleBus()
    health: list[HealthChange] = []
    batches: list[SampleBatch] = []
    bus.subscribe_health(health.append)
    bus.subscribe(batches.append)
    driver = _driver(metrics, bus)
    driver._queue.append((5.0, "v1/gateway/disconnect", b'{"device": "Lift-7"}'))
    driver.drain()
    assert [(h.asset, h.online, h.said) for h in health] == [("L7", False, True)]
    assert [(b.asset, int(b.quality[0])) for b in batches] == [("L7", int(Quality.COMM_ERROR))]
    assert metrics.registry.get_sample_value("monitord_driver_devices_offline", {"driver": "mqtt"}) == 1
    driver._mark_stale(6.0)
    assert [(h.asset, h.said) for h in health[1:]] == [("L7", False)]
    assert metrics.registry.get_sample_value("monitord_driver_devices_offline", {"driver": "mqtt"}) == 0


def test_check_refuses_two_assets_on_one_topic_or_device_naming_the_second(tmp_path: Path) -> None:
    text = (
        LIFT
        + lift("L9", "{gateway: thingsboard, device: Lift-7}")
        + lift("E3", "{topic: t1/x/lift/E1/a}")
        + lift("E4", "{device: E2}")
    )
    assert problems(tmp_path, text) == [
        "site.yaml:10 assets[4].connection.mqtt: device 'Lift-7' on topic 'v1/gateway/telemetry' is already "
        "claimed by asset 'L7' (one message, one asset)",
        "site.yaml:11 assets[5].connection.mqtt: topic 't1/x/lift/E1/a' is already claimed by asset 'E1' "
        "(one message, one asset)",
        "site.yaml:12 assets[6].connection.mqtt: topic 't1/elevator/E2/status' is already claimed by "
        "asset 'E2' (one message, one asset)",
    ]


def test_check_refuses_missing_certificates_and_a_plain_gateway(tmp_path: Path) -> None:
    text = LIFT.replace(
        "mqtt: {url: 'mqtt://127.0.0.1:1883'}",
        f'mqtt: {{url: "mqtts://broker:8883", ca: {tmp_path}/nope.pem, cert: {tmp_path}/site.yaml}}',
    )
    assert problems(tmp_path, text) == [
        f"site.yaml:2 mqtt.ca: no such file '{tmp_path}/nope.pem'",
        "site.yaml:2 mqtt.cert: give both cert and key, or neither",
    ]
    garbage = write(tmp_path, "not a certificate\n", "garbage.pem")
    text = LIFT.replace("mqtt: {url: 'mqtt://127.0.0.1:1883'}", f"mqtt: {{url: 'mqtts://b', ca: {garbage}}}")
    (said,) = problems(tmp_path, text)
    assert said.startswith("site.yaml:2 mqtt.ca: not a PEM CA certificate: ")
    config = load_config(write(tmp_path, LIFT.replace("mqtt://127.0.0.1:1883", "mqtts://broker")))
    assert config.mqtt is not None and config.mqtt.host_port == ("broker", 8883) and config.mqtt.tls


def test_the_example_in_the_device_docs_works(tmp_path: Path) -> None:
    """docs/devices.md#mqtt-payload-formats: the gateway lifts and the wildcard lift with a $state."""
    text = (Path(__file__).parents[1] / "docs" / "devices.md").read_text()
    example = text.split("## MQTT payload formats", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, f"site: {{id: tower-a}}\nmqtt: {{}}\n{example}"))
    r = router(config)
    assert set(r.gateways["v1/gateway/telemetry"]) == {"Lift-7", "Lift-8"}
    e3 = r.resolve("tower-a/north/lift/e3/box/1")
    assert isinstance(e3, TopicRoute) and e3.asset == "A-E3"
    assert r.status["homie/e3/$state"].asset == "A-E3"


junk = json_docs(["Lift-7", "Lift-9", "ts", "values", "temp"], max_leaves=16)


@settings(max_examples=int(os.environ.get("MONITORD_FUZZ_EXAMPLES", "100")), deadline=None, database=None)
@given(st.lists(junk, min_size=1, max_size=6), st.floats(-100, 100))
def test_fuzz_gateway_messages(entries: list[object], temp: float) -> None:
    """Whatever else a gateway message holds, Lift-7's good entry lands exactly and nothing raises."""
    metrics, bus = Metrics(), SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = _driver(metrics, bus)
    good = {"ts": 1700000000000, "values": {"temp": temp}}
    body = {"Lift-7": [*entries, good], "Lift-9": entries}
    driver._queue.append((1700000000.0, "v1/gateway/telemetry", json.dumps(body).encode()))
    driver._queue.append((1700000000.0, "v1/gateway/telemetry", json.dumps(entries).encode()))
    driver.drain()
    assert all(b.asset == "L7" and np.isfinite(b.ts) for b in got)
    assert all(np.isfinite(b.values[b.quality == Quality.GOOD]).all() for b in got)
    assert float(got[-1].values[0]) == temp and got[-1].quality[0] == Quality.GOOD


ABC = TopicRoute("L1", ("a", "b", "c"), tuple(field_path(f"values.{k}") for k in "abc"), ("ts",), ("seq",))
values_of = json_docs(["a", "b", "c", "values", "ts", "seq"], max_leaves=12)


@settings(max_examples=int(os.environ.get("MONITORD_FUZZ_EXAMPLES", "100")), deadline=None, database=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]), values_of | st.floats() | st.integers(), max_size=4
    ),
    st.sampled_from([None, 1700000000123, 1.7e9, "x"]),
)
def test_the_one_object_fast_path_reads_what_the_field_walk_reads(
    values: dict[str, object], ts: object
) -> None:
    """A document whose mapped fields are all numbers in one object takes one getter and one array;
    any other document (a field missing, text, inf, a list) the field-by-field walk. Both must say the
    same: values, qualities (an inf is one decode_error, never a value), time and sequence."""
    doc = {"values": values, "ts": ts, "seq": 7}
    try:
        want = walk_fields(ABC, doc)
    except OverflowError:  # an int past float's range: the whole message is malformed, both ways
        with pytest.raises(OverflowError):
            parse_document(ABC, doc)
        return
    got = parse_document(ABC, doc)
    assert np.array_equal(got.values, want.values, equal_nan=True)
    assert got.values.dtype == np.float64 and got.quality.dtype == np.int8
    assert got.quality.tolist() == want.quality.tolist()
    assert (got.ts, got.seq, got.any_good) == (want.ts, want.seq, want.any_good)


def test_json_that_orjson_refuses_reads_as_before() -> None:
    """orjson parses; what it refuses but the standard parser took (NaN, 1e999) is read as it was:
    that field a decode_error, the others good."""
    route = TopicRoute("L1", ("a", "b"), (("a",), ("b",)))
    parsed = parse_payload(route, b'{"a": NaN, "b": 2}')
    assert parsed.quality.tolist() == [Quality.DECODE_ERROR, Quality.GOOD] and parsed.values[1] == 2
    assert parse_payload(route, b'{"a": 1e999, "b": 1}').quality.tolist() == [
        Quality.DECODE_ERROR,
        Quality.GOOD,
    ]
    with pytest.raises(ValueError):
        parse_payload(route, b'{"a": 1')
