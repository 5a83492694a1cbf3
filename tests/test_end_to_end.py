"""End to end over real sockets: simulators (Modbus TCP + MQTT via Mosquitto) → daemon → store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.model import Quality
from monitord.drivers.mqtt_client import stop_loop
from monitord.store.sqlite import SqliteStore
from tests.support import demo_site, evaluated_past, eventually, good, run, running


def test_dry_run_opens_one_ticket_that_resolves_and_samples_land_good(tmp_path: Path, mosquitto: int) -> None:
    config = demo_site(tmp_path, mosquitto)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "suction_pressure") and good(app, "A-E1", "floor"), 15)
            site.inject("A-P1", "dry_run")
            tickets = await eventually(lambda: list(app.core.desk.tickets.values()), 20)
            site.clear("A-P1", "dry_run")
            await eventually(lambda: tickets[0].state == "resolved", 40)
            # nothing new may open: the daemon has evaluated a fresh reading of the pump 1.5 s on
            await evaluated_past(app, app.clock.now() + 1.5, fresh=[("A-P1", "suction_pressure")])
            assert len(app.core.desk.tickets) == 1

    run(scenario())
    store = SqliteStore(tmp_path / "store.db")
    try:
        events = store.ticket_events()
        assert {e.ticket for e in events} == {events[0].ticket}, "exactly one ticket"
        assert [e.event for e in events] == [
            "opened",
            "assigned",
            "resolved",
        ]  # the roster assigns the on-call plumber
        opened = events[0]
        assert (opened.asset, opened.rule, opened.priority, opened.category) == (
            "A-P1",
            "pump.dry_run",
            "P1",
            "plumbing",
        )
        assert "running dry" in opened.summary and "B2 pump room" in opened.location
        alerts = store.alert_events()
        assert [(a.rule, a.asset, a.state) for a in alerts] == [
            ("pump.dry_run", "A-P1", "firing"),
            ("pump.dry_run", "A-P1", "resolved"),
        ]
        pump = list(store.samples("A-P1"))
        lift = list(store.samples("A-E1"))  # published by the simulator to Mosquitto, read back by the daemon
        assert len(pump) > 10 and len(lift) > 10
        assert all((b.quality == Quality.GOOD).all() for b in pump)
        assert all((b.quality == Quality.GOOD).all() for b in lift)
        suction = np.array([b.values[b.points.index("suction_pressure")] for b in pump])
        assert suction.min() < 0.05 < suction.max()  # the fault itself is in the record
    finally:
        store.close()


def test_silent_device_goes_comm_error_one_offline_alert_then_recovers(
    tmp_path: Path, mosquitto: int
) -> None:
    config = demo_site(tmp_path, mosquitto)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P2", "discharge_pressure"), 15)
            site.inject("A-P2", "silent")
            await eventually(
                lambda: app.core.state.latest("A-P2")["discharge_pressure"][2] == Quality.COMM_ERROR, 10
            )
            offline = await eventually(
                lambda: [t for t in app.core.desk.tickets.values() if t.rule == "comms.device_offline"], 15
            )
            # a while longer offline (3 s, with fresh readings of the other pump evaluated):
            # still one alert, no process alert
            await evaluated_past(app, app.clock.now() + 3, fresh=[("A-P1", "discharge_pressure")])
            assert {(a["rule"], a["asset"]) for a in app.core.firing_alerts()} == {
                ("comms.device_offline", "A-P2")
            }
            assert len(app.core.desk.tickets) == 1
            assert good(app, "A-P1", "discharge_pressure"), (
                "the other unit behind the gateway keeps answering"
            )
            site.clear("A-P2", "silent")
            await eventually(lambda: good(app, "A-P2", "discharge_pressure"), 15)
            await eventually(lambda: offline[0].state == "resolved", 15)

    run(scenario())
    store = SqliteStore(tmp_path / "store.db")
    try:
        alerts = [(a.rule, a.asset, a.state) for a in store.alert_events()]
        assert alerts == [
            ("comms.device_offline", "A-P2", "firing"),
            ("comms.device_offline", "A-P2", "resolved"),
        ]
        qualities = {int(q) for b in store.samples("A-P2") for q in b.quality}
        assert qualities == {Quality.GOOD, Quality.COMM_ERROR}
        failed = [b for b in store.samples("A-P2") if (b.quality == Quality.COMM_ERROR).all()]
        assert failed and all(np.isnan(b.values).all() for b in failed), "a failed read is never a value"
    finally:
        store.close()


def test_malformed_mqtt_payloads_are_counted_and_survived(tmp_path: Path, mosquitto: int) -> None:
    config = demo_site(tmp_path, mosquitto)
    topic = "tower-a/elevator/A-E1/status"

    async def scenario() -> None:
        async with running(config) as (_site, app):
            await eventually(lambda: good(app, "A-E1", "floor"), 15)
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id="evil")
            client.connect("127.0.0.1", mosquitto)
            client.loop_start()
            bad = (
                b"{not json",
                b"\xff\xfe",
                b"[1, 2]",
                b'{"values": {"floor": "high"}}',
                b'{"values": {"floor": 1' + b"0" * 400 + b"}}",
                b"[" * 100_000,
            )
            for payload in bad:
                client.publish(topic, payload).wait_for_publish(5)
            stop_loop(client)
            client.disconnect()
            errors = app.metrics.driver_errors.labels("mqtt", "malformed")
            await eventually(lambda: errors._value.get() >= 5, 10)
            before = app.core.state.latest("A-E1")["floor"][1]
            await eventually(lambda: app.core.state.latest("A-E1")["floor"][1] > before, 10)
            assert good(app, "A-E1", "floor")

    run(scenario())


def test_four_faults_through_modbus_and_mqtt_open_one_ticket_each(tmp_path: Path, mosquitto: int) -> None:
    """Entrapment (MQTT), dry run, voltage sag and a clogged AHU filter (Modbus): one ticket each."""
    config = demo_site(tmp_path, mosquitto)
    faults = [
        ("A-E2", "entrapment"),
        ("A-P1", "dry_run"),
        ("A-PM-MAIN", "voltage_sag"),
        ("A-AHU1", "filter_clogged"),
    ]
    expected = {
        ("A-E2", "elevator.entrapment_between_floors", "P1"),
        ("A-P1", "pump.dry_run", "P1"),
        ("A-PM-MAIN", "power.voltage_deviation", "P2"),
        ("A-AHU1", "hvac.filter_dp_high", "P3"),
    }

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(
                lambda: all(
                    good(app, a, p)
                    for a, p in (
                        ("A-E2", "speed"),
                        ("A-P1", "flow"),
                        ("A-PM-MAIN", "voltage_l1"),
                        ("A-AHU1", "filter_dp"),
                    )
                ),
                15,
            )
            for asset, fault in faults:
                site.inject(asset, fault)
            await eventually(lambda: len(app.core.desk.tickets) >= 4, 60)
            # nothing more may open: evaluated 3 s on, with fresh readings of every faulty asset
            await evaluated_past(
                app,
                app.clock.now() + 3,
                fresh=[
                    ("A-E2", "speed"),
                    ("A-P1", "flow"),
                    ("A-PM-MAIN", "voltage_l1"),
                    ("A-AHU1", "filter_dp"),
                ],
            )
            got = {(t.asset, t.rule, t.priority) for t in app.core.desk.tickets.values()}
            assert got == expected
            assert all(t.alert_count == 1 for t in app.core.desk.tickets.values())

    run(scenario())
