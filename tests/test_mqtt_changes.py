"""Devices that report only what changed (MQTT ``publishes: changes``): what a message leaves out is
left as it was, never made a decode error; the values it does not repeat hold while the device is
online; a trapped passenger reported once is paged after the rule's ``for``, which is longer than the
stale limit (docs/devices.md#what-a-message-leaves-out).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from monitord.config.site import CONFIG_DIR, load_config
from monitord.core.clock import ManualClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.mqtt import MqttDriver
from monitord.drivers.mqtt_routes import ABSENT, TopicRoute, parse_payload
from monitord.ingest.bus import SampleBus
from monitord.ingest.state import AssetSlot, StateTable, TypeTable
from monitord.simulators.models import MODELS
from monitord.simulators.mqtt_publisher import SimulatedMqttDevice
from monitord.store.sqlite import SqliteStore
from tests.support import WebhookReceiver, demo_site, eventually, good, run, running, with_people
from tests.support.configs import check, problems, write

TOPIC = "site/lift/E1/status"
POINTS = ("floor", "door", "speed")
ROUTE = TopicRoute("E1", POINTS, tuple(("values", p) for p in POINTS), ("ts",))
CHANGES = TopicRoute("E1", POINTS, ROUTE.fields, ("ts",), changes=True)
T0 = 1700000000.0


def test_a_field_left_out_is_absent_and_one_that_is_no_number_is_a_decode_error() -> None:
    parsed = parse_payload(ROUTE, b'{"values": {"floor": 3, "speed": null}}')
    assert parsed.values[0] == 3.0 and np.isnan(parsed.values[1:]).all()
    assert parsed.quality.tolist() == [Quality.GOOD, ABSENT, Quality.DECODE_ERROR]
    assert (parsed.any_good, parsed.complete) == (True, False)
    whole = parse_payload(ROUTE, b'{"values": {"floor": 3, "door": 1, "speed": 0.5}}')
    assert whole.complete and whole.quality.tolist() == [Quality.GOOD] * 3
    # The holding object missing: nothing said; there but not an object: not the profile's shape.
    assert parse_payload(ROUTE, b'{"ts": 1}').quality.tolist() == [ABSENT] * 3
    assert parse_payload(ROUTE, b'{"values": 7}').quality.tolist() == [Quality.DECODE_ERROR] * 3


def _drained(route: TopicRoute, bodies: list[bytes]) -> tuple[list[SampleBatch], Metrics]:
    metrics, bus = Metrics(), SampleBus()
    got: list[SampleBatch] = []
    bus.subscribe(got.append)
    driver = MqttDriver("127.0.0.1", 1, {TOPIC: route}, bus, ManualClock(T0), metrics, client_id="t")
    for body in bodies:
        driver._queue.append((T0, TOPIC, body))
    assert driver.drain() == len(bodies)
    return got, metrics


def missing(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("monitord_mqtt_missing_fields_total", {"asset": "E1"}) or 0


def malformed(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("monitord_mqtt_malformed_messages_total", {"asset": "E1"}) or 0


def test_the_driver_batches_what_a_message_carries_and_a_keep_alive_is_no_error() -> None:
    bodies = [
        b'{"ts": 1700000000, "values": {"floor": 3, "door": 0, "speed": 0.0}}',
        b'{"ts": 1700000001, "values": {"door": 1}}',
        b'{"ts": 1700000002, "values": {"door": 0}}',
        b'{"ts": 1700000003, "values": {"floor": 4, "speed": "fast"}}',
        b'{"ts": 1700000004}',  # a keep-alive: nothing changed
    ]
    got, metrics = _drained(CHANGES, bodies)
    assert [b.points for b in got] == [POINTS, ("door",), ("door",), ("floor", "speed"), ()]
    assert got[1].points is got[2].points, "one tuple per combination: sinks cache their columns by it"
    assert (got[4].ts, len(got[4].values), len(got[4].quality)) == (T0 + 4, 0, 0), "the keep-alive: contact"
    assert [b.values.tolist() for b in got[1:3]] == [[1.0], [0.0]]
    assert got[3].quality.tolist() == [Quality.GOOD, Quality.DECODE_ERROR]  # "fast" is no reading
    assert malformed(metrics) == 0
    assert missing(metrics) == 0, "leaving fields out is what a device that reports changes does"
    # A device that sends everything and sent nothing the profile maps: a mapping mistake, counted.
    got, metrics = _drained(ROUTE, bodies[-1:])
    assert got == [] and malformed(metrics) == 1


def test_a_field_a_whole_message_leaves_out_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The point is left as it was, so a field path that does not fit must be said, not only look quiet."""
    bodies = [b'{"values": {"floor": 3, "dor": 1, "speed": 0.5}}'] * 3  # "door" misspelled by the device
    with caplog.at_level(logging.WARNING, "monitord.drivers.mqtt"):
        got, metrics = _drained(ROUTE, bodies)
    assert [b.points for b in got] == [("floor", "speed")] * 3
    assert missing(metrics) == 3 and malformed(metrics) == 0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("mqtt: E1 values.door: a message leaves out"), said


def test_a_held_value_stays_valid_while_its_device_is_online_and_not_once_it_is_silent() -> None:
    slots = [AssetSlot("E1", "elevator", POINTS, 3.0), AssetSlot("E2", "elevator", POINTS, 3.0, held=True)]
    table = TypeTable("elevator", slots, started=T0)
    for row in (0, 1):
        table.apply(row, SampleBatch(T0, "EX", POINTS, np.array([3.0, 0.0, 0.0]), np.zeros(3, np.int8)))
    # Ten seconds on, each has sent only its floor every second (the door and speed unchanged).
    for t in range(1, 11):
        for row in (0, 1):
            table.apply(row, SampleBatch(T0 + t, "EX", ("floor",), np.array([3.0]), np.zeros(1, np.int8)))
    valid = table.valid(T0 + 10.5)
    assert valid[0].tolist() == [True, False, False], "sends everything: what it did not repeat is stale"
    assert valid[1].tolist() == [True, True, True], "reports changes: the door is still what it said"
    assert table.fresh(T0 + 10.5)[1].all()
    # Silent past the stale limit: offline, and nothing of it holds any more.
    assert not table.valid(T0 + 14.0)[1].any()
    table.said[1] = 1  # unless it says it is online (a status topic, a gateway's connect)
    assert table.valid(T0 + 60.0)[1].all()
    table.said[1] = -1  # says it is offline: only what it sent within the stale limit stands
    assert table.valid(T0 + 10.5)[1].tolist() == [True, False, False]


def test_a_keep_alive_keeps_a_device_that_reports_changes_online_and_is_not_stored(tmp_path: Path) -> None:
    """A keep-alive carries no mapped field: nothing changed, but the device was heard, so it is not
    offline and what it said before still holds; the store has nothing to keep of it."""
    first = b'{"ts": 1700000000, "values": {"floor": 3, "door": 0, "speed": 0.0}}'
    keep_alives = [b'{"ts": %d}' % (T0 + t) for t in range(2, 20, 2)]  # every 2 s, nothing changed
    got, _metrics = _drained(CHANGES, [first, *keep_alives])
    state = StateTable([AssetSlot("E1", "elevator", POINTS, 3.0, held=True)], started=T0)
    table = state.tables["elevator"]
    for batch in got:  # each at its own time, as the daemon's clock would have it
        state.apply_many([batch])
        assert not table.offline(batch.ts + 2.9)[0], batch.ts
    assert table.valid(T0 + 20.0)[0].tolist() == [True, True, True], "18 s on, the door is still closed"
    assert table.offline(T0 + 21.5)[0] and not table.valid(T0 + 21.5)[0].any(), "then silent: offline"
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    try:
        store.write_samples(got)
        store.flush()
        assert store.count_batches() == 1, "only the message that carried values is data"
    finally:
        store.close()


def test_the_simulator_reports_everything_first_and_then_what_changed() -> None:
    profile = load_config(CONFIG_DIR / "sites" / "demo.yaml").profile("elevator-gbt24476")
    model = MODELS["elevator"]("E1")
    dev = SimulatedMqttDevice(TOPIC, profile, model, changes=True)
    first = dev.to_report()
    assert first is not None and set(first) == set(profile.points)
    model.step(1.0, 1.0)
    second = dev.to_report()
    assert second is not None and "heartbeat" in second and len(second) < len(profile.points)
    assert SimulatedMqttDevice(TOPIC, profile, model).to_report() is None  # sends everything


SITE = """\
site: {{id: t, name: T}}
mqtt: {{url: "mqtt://127.0.0.1:1883"}}
profiles:
  - include: {profiles}/elevator-gbt24476.yaml
assets:
  - id: E1
    type: elevator
    profile: elevator-gbt24476
    connection: {{mqtt: {{publishes: {publishes}}}}}
"""


def test_publishes_is_checked_and_a_connection_overrides_the_profile(tmp_path: Path) -> None:
    from monitord.config.mqtt import publishes_changes

    profiles = CONFIG_DIR / "profiles"
    config = load_config(write(tmp_path, SITE.format(profiles=profiles, publishes="changes")))
    assert config.profile("elevator-gbt24476").mqtt.publishes == "whole"  # type: ignore[union-attr]
    assert publishes_changes(config, config.asset("E1"))
    said = problems(tmp_path, SITE.format(profiles=profiles, publishes="sometimes"))
    assert len(said) == 1 and said[0].startswith("site.yaml:9") and "publishes" in said[0], said


RULE_POINTS = {"fault_code", "run_status", "occupancy", "leveling", "speed", "door"}


def test_a_lift_reporting_changes_pages_a_trapped_passenger_it_reported_once(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Real Mosquitto, the simulated lift publishing only what changed, the daemon with its MQTT
    worker: the entrapment's points are sent once, then only the heartbeat moves; the rule's 30 s
    ``for`` runs out on values last heard long past the 3 s stale limit, and the page goes out."""
    base = demo_site(tmp_path, mosquitto)
    lift = base.asset("A-E1")
    conn = lift.connection.model_copy(
        update={"mqtt": lift.connection.mqtt.model_copy(update={"publishes": "changes"})}  # type: ignore[union-attr]
    )
    assets = [a.model_copy(update={"connection": conn}) if a.id == "A-E1" else a for a in base.assets]
    config = with_people(base.model_copy(update={"assets": assets}), webhooks, tmp_path, ack=300.0)
    carried: list[tuple[float, tuple[str, ...]]] = []

    async def scenario() -> None:
        async with running(config) as (site, app):
            app.bus.subscribe(lambda b: carried.append((b.ts, b.points)) if b.asset == "A-E1" else None)
            await eventually(lambda: good(app, "A-E1", "floor") and good(app, "A-E1", "door"), 15)
            site.inject("A-E1", "entrapment")
            desk = app.core.desk
            trapped = await eventually(
                lambda: desk.open_ticket_for_rule("elevator.entrapment_between_floors", "A-E1"), 60
            )
            await eventually(lambda: webhooks.to("elevator-tech"), 5)
            fired_at = app.clock.now()
            assert (trapped.priority, trapped.category) == ("P1", "elevator")
            # What proves the hold: the rule's points were last carried long before the page.
            told = [ts for ts, points in carried if RULE_POINTS & set(points)]
            assert told, "the lift reported the entrapment"
            assert fired_at - told[-1] > 3 * config.poll_of(lift) + 10, (fired_at, told[-3:])
            assert any(len(points) < len(carried[0][1]) for _ts, points in carried), "messages were partial"
            site.clear("A-E1", "entrapment")
            await eventually(
                lambda: desk.open_ticket_for_rule("elevator.entrapment_between_floors", "A-E1") is None, 60
            )

    with caplog.at_level(logging.WARNING, "monitord.drivers.mqtt"):
        run(scenario(), timeout=180)
    assert not [r for r in caplog.records if "malformed" in r.getMessage()], "a partial message is no error"
    assert len(webhooks.to("elevator-tech")) == 1


def test_check_warns_of_a_device_reporting_changes_that_nothing_says_is_online(tmp_path: Path) -> None:
    text = SITE.format(profiles=CONFIG_DIR / "profiles", publishes="changes") + (
        "  - id: E2\n    type: elevator\n    profile: elevator-gbt24476\n"
        "    connection: {mqtt: {gateway: thingsboard, publishes: changes}}\n"
        "  - id: E3\n    type: elevator\n    profile: elevator-gbt24476\n"
        "    connection: {mqtt: {status_topic: 'homie/{asset}/$state', publishes: changes}}\n"
    )
    out = check(write(tmp_path, text))
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stdout.splitlines() if line.startswith("warning:")]
    assert warned == [
        "warning: E1 reports only changes and has no status topic: unless it sends a message at least every"
        " 6 s (a changed field or a keep-alive), it is judged offline between changes"  # 3 polls of 2 s
    ], out.stdout
