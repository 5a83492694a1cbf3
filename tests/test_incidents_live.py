"""Incidents end to end: the demo building simulated over real Modbus TCP and a real Mosquitto, the
daemon, and a real webhook receiver standing for the people on call (docs/incidents.md)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import paho.mqtt.publish as publish

from monitord.config.site import AssetConfig
from tests.support import (
    WebhookReceiver,
    demo_site,
    evaluated_past,
    eventually,
    get,
    good,
    run,
    running,
    sample_time,
    with_people,
)


def test_a_trapped_passenger_during_a_feeder_outage_pages_the_elevator_team_at_once(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=300.0)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-PM-MAIN", "voltage_l1") and good(app, "A-E1", "floor"), 15)
            site.inject("A-PM-MAIN", "outage")  # lifts on battery, pumps silent
            site.inject("A-E1", "entrapment")  # and a passenger shut in lift 1 between floors
            desk = app.core.desk
            outage = await eventually(lambda: desk.open_ticket_for_rule("power.outage", "A-PM-MAIN"), 30)
            trapped = await eventually(
                lambda: desk.open_ticket_for_rule("elevator.entrapment_between_floors", "A-E1"), 60
            )
            await eventually(lambda: webhooks.to("elevator-tech"), 5)
            await eventually(lambda: trapped.links and outage.links, 5)
            store = app.store
            assert store is not None
            await asyncio.to_thread(store.flush)
            fired = next(
                a.ts
                for a in store.alert_events()
                if (a.rule, a.asset, a.state) == ("elevator.entrapment_between_floors", "A-E1", "firing")
            )
            paged = next(t for t, p, _b in webhooks.received if p == "/elevator-tech")
            print(f"entrapment fired -> elevator page: {paged - fired:.3f} s")
            assert paged - fired < 2.0
            assert [n.split(":")[0] for n in trapped.links] == [outage.id]
            assert [n.split(":")[0] for n in outage.links] == [trapped.id]
            assert (trapped.priority, trapped.category) == ("P1", "elevator")
            await evaluated_past(app, app.clock.now() + 3, fresh=[("A-PM-MAIN", "voltage_l1")])
            tickets = {(t.rule, t.asset) for t in desk.tickets.values()}
            assert tickets == {
                ("power.outage", "A-PM-MAIN"),
                ("elevator.entrapment_between_floors", "A-E1"),
            }

    run(scenario(), timeout=150)
    assert len(webhooks.to("electrical-tech")) == 1, "one outage ticket for the electrician"
    assert len(webhooks.to("elevator-tech")) == 1
    assert {p for _t, p, _b in webhooks.received} == {"/electrical-tech", "/elevator-tech"}


def test_a_dark_feeder_meter_with_twenty_dependants_is_one_ticket_and_one_page(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    base = demo_site(tmp_path, mosquitto)
    lift = base.asset("A-E1")
    extra = [
        AssetConfig.model_validate(
            {
                **lift.model_dump(),
                "id": f"A-E{i}",
                "name": f"Lift {i}",
                "location": {"building": "A", "shaft": i},
            }
        )
        for i in range(3, 19)
    ]
    config = with_people(
        base.model_copy(update={"assets": [*base.assets, *extra]}), webhooks, tmp_path, ack=300.0
    )
    dependants = [a.id for a in config.assets if "A-PM-MAIN" in a.depends_on]
    assert len(dependants) == 20, dependants

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(
                lambda: good(app, "A-PM-MAIN", "voltage_l1") and all(good(app, a.id, "floor") for a in extra),
                15,
            )
            for asset in ["A-PM-MAIN", *dependants]:  # the meter dies with the feeder it measures
                site.inject(asset, "offline")
            desk = app.core.desk
            ticket = await eventually(
                lambda: desk.open_ticket_for_rule("topology.supply_dark", "A-PM-MAIN"), 40
            )
            await eventually(lambda: {n.split(":")[0] for n in ticket.explained} >= set(dependants), 40)
            # Past the last dependant's offline limit, evaluated, nothing held back: still one ticket.
            await evaluated_past(app, app.clock.now() + 5)
            assert list(desk.tickets) == [ticket.id], [(t.rule, t.asset) for t in desk.tickets.values()]
            assert (ticket.priority, ticket.category) == ("P1", "electrical")
            shown = await asyncio.to_thread(get, f"{app.api_url}/tickets/{ticket.id}")
            assert {e["event"] for e in shown["events"]} >= {"opened", "explained"}

    run(scenario(), timeout=180)
    assert [p for _t, p, _b in webhooks.received] == ["/electrical-tech"], "exactly one page"


def test_device_clocks_an_hour_off_are_judged_by_receive_time(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = demo_site(tmp_path, mosquitto)

    async def scenario() -> None:
        async with running(config) as (site, app):
            for lift in ("A-E1", "A-E2"):
                site.inject(lift, "silent")  # the simulator stops; these two devices publish instead
            profile = config.profile(config.asset("A-E1").profile)
            assert profile.mqtt is not None and profile.mqtt.ts_field == "ts"
            topic = profile.mqtt.topic

            def publish_with(asset: str, offset: float) -> None:
                doc = {
                    "ts": round(time.time() + offset, 3),
                    "values": {"run_status": 0, "floor": 3, "heartbeat": 1},
                }
                publish.single(
                    topic.format(site=config.site.id, asset=asset),
                    json.dumps(doc),
                    qos=1,
                    hostname="127.0.0.1",
                    port=mosquitto,
                )

            start = app.clock.now()
            taken = {"A-E1": 0, "A-E2": 0}  # batches of the two devices the daemon took off the bus
            app.core.bus.subscribe(
                lambda b: taken.__setitem__(b.asset, taken[b.asset] + 1) if b.asset in taken else None
            )
            # Behind by an hour, publishing every second: never offline, its samples stamped on receipt.
            for _ in range(8):
                await asyncio.to_thread(publish_with, "A-E1", -3600)
                await asyncio.to_thread(publish_with, "A-E2", +3600)
                await asyncio.sleep(1)
            assert abs(sample_time(app, "A-E1", "floor") - app.clock.now()) < 2
            assert abs(sample_time(app, "A-E2", "floor") - app.clock.now()) < 2
            await evaluated_past(app, app.clock.now())
            offline = {(str(a["rule"]), str(a["asset"])) for a in app.core.firing_alerts()}
            assert not offline & {("comms.device_offline", "A-E1"), ("comms.device_offline", "A-E2")}
            count = app.metrics.registry.get_sample_value
            assert taken["A-E1"] > 0 and taken["A-E2"] > 0
            for lift in ("A-E1", "A-E2"):  # every sample the daemon took from them was counted as skewed
                await eventually(
                    lambda a=lift: (count("monitord_clock_skew_total", {"asset": a}) or 0) == taken[a], 5
                )
            # The one an hour ahead falls silent: offline after 3 polls of receive time, not in an hour.
            silent_at = app.clock.now()
            await eventually(
                lambda: (
                    ("comms.device_offline", "A-E2")
                    in {(str(a["rule"]), str(a["asset"])) for a in app.core.firing_alerts()}
                ),
                15,
            )
            assert app.clock.now() - silent_at < 10 and silent_at > start

    run(scenario(), timeout=120)
