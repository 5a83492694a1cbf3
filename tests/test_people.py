"""Tickets, people and notifications: lifecycle, roster, and the acceptance paths end to end.

End-to-end tests use real sockets all the way: simulators over Modbus TCP and
MQTT (Mosquitto), the daemon, a real HTTP server receiving the webhooks, and
the daemon's HTTP API for acknowledging.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from monitord.alerting.tracker import AlertEvent
from monitord.core.model import Quality
from monitord.people.dispatch import notification_key
from monitord.people.roster import Contact, Override, Roster, RosterConfig, TeamConfig
from monitord.tickets.desk import TicketActionError, TicketDesk, TicketPolicyView
from tests.support import (
    TOKEN,
    WebhookReceiver,
    demo_site,
    evaluated_past,
    eventually,
    get,
    good,
    post,
    run,
    running,
    with_people,
)

# -- pure logic ------------------------------------------------------------------------------


def test_lifecycle_allows_only_what_the_state_allows() -> None:
    desk = TicketDesk()
    alert = AlertEvent(1000.0, "pump.dry_run", "P1", "firing", "critical", 995.0, "dry")
    [opened] = desk.on_alert(alert, TicketPolicyView("P1", "plumbing", True), "B2")
    tid = opened.ticket
    with pytest.raises(TicketActionError):
        desk.act(tid, "close", actor="wang", now=1001)  # only a resolved ticket can be closed
    for action, state in (
        ("ack", "acknowledged"),
        ("start", "in_progress"),
        ("comment", "in_progress"),
        ("resolve", "resolved"),
        ("close", "closed"),
    ):
        ev = desk.act(tid, action, actor="wang", now=1002 + len(desk.tickets[tid].events), note=action)
        assert (ev.actor, desk.tickets[tid].state) == ("wang", state)
    with pytest.raises(TicketActionError):
        desk.act(tid, "ack", actor="wang", now=2000)
    rebuilt = TicketDesk()
    rebuilt.restore(desk.tickets[tid].events)
    assert rebuilt.tickets[tid].state == "closed" and rebuilt.tickets[tid].acknowledged_at == 1003


def test_a_ticket_reopened_after_a_fix_pages_again_and_a_quiet_recurrence_does_not() -> None:
    """The notification key names the ticket's episode: a fix that did not hold (reopened after a
    person resolved it) is a new page; an auto-resolved re-fire (recurred) keeps the first key."""
    desk = TicketDesk()
    policy = TicketPolicyView("P1", "plumbing", True)
    firing = AlertEvent(1000.0, "pump.dry_run", "P1", "firing", "critical", 995.0, "dry")
    [opened] = desk.on_alert(firing, policy, "B2")
    t = desk.tickets[opened.ticket]
    first = notification_key(t, 0, "wang", "webhook")
    assert first == f"{t.id}:0:wang:webhook", "keys written before episodes existed stay valid"
    desk.on_alert(AlertEvent(1100.0, "pump.dry_run", "P1", "resolved", "critical", 995.0, "ok"), policy, "B2")
    desk.on_alert(AlertEvent(1200.0, "pump.dry_run", "P1", "firing", "critical", 1195.0, "dry"), policy, "B2")
    assert [e.event for e in t.events][-1] == "recurred"
    assert notification_key(t, 0, "wang", "webhook") == first, "a quiet re-fire pages nobody again"
    desk.act(t.id, "resolve", actor="wang", now=1300.0, note="new seal")
    [again] = desk.on_alert(
        AlertEvent(1400.0, "pump.dry_run", "P1", "firing", "critical", 1395.0, "dry"), policy, "B2"
    )
    assert again.event == "reopened"
    assert notification_key(t, 0, "wang", "webhook") == f"{first}#1", "the fix did not hold: page again"


def test_rotation_picks_the_person_on_shift() -> None:
    team = TeamConfig(
        skills=["elevator"],
        members=[Contact(name="a"), Contact(name="b"), Contact(name="c")],
        lead=Contact(name="lead"),
        rotation={"every": "1d", "handover": "08:00", "start": "2026-11-01"},
    )
    roster = Roster(
        RosterConfig(timezone="Asia/Shanghai", teams={"lift": team}, duty_manager=Contact(name="dm"))
    )
    tz = dt.timezone(dt.timedelta(hours=8))
    at = dt.datetime(2026, 11, 22, 9, 0, tzinfo=tz).timestamp()  # 21 days after the start: 21 % 3 == 0
    assert roster.oncall("elevator", at).name == "a"  # type: ignore[union-attr]
    before_handover = dt.datetime(2026, 11, 22, 7, 59, tzinfo=tz).timestamp()
    assert roster.oncall("elevator", before_handover).name == "c"  # type: ignore[union-attr]
    assert [c.name for c in roster.chain("elevator", at)] == ["a", "lead", "dm"]
    leave = {
        "team": "lift",
        "start": "2026-11-22T00:00:00+08:00",
        "end": "2026-11-23T00:00:00+08:00",
        "instead": {"name": "d"},
        "reason": "a on leave",
    }
    covered = Roster(roster.config.model_copy(update={"overrides": [Override.model_validate(leave)]}))
    assert covered.oncall("elevator", at).name == "d"  # type: ignore[union-attr]
    assert covered.oncall("elevator", at + 86400).name == "b"  # type: ignore[union-attr]


# -- end to end --------------------------------------------------------------------------------


def test_entrapment_notifies_escalates_and_stops_at_acknowledgement(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=6.0)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-E2", "speed"), 15)
            site.inject("A-E2", "entrapment")
            [ticket] = await eventually(lambda: list(app.core.desk.tickets.values()), 60)
            assert ticket.rule == "elevator.entrapment_between_floors" and ticket.priority == "P1"
            await eventually(lambda: webhooks.to("elevator-tech"), 5)
            arrived = webhooks.received[0][0]
            assert arrived - ticket.opened_at < 2.0, "the on-call technician hears within seconds"
            body = webhooks.to("elevator-tech")[0]
            assert body["ticket"] == ticket.id and body["asset"] == "A-E2" and "shaft 2" in body["location"]
            assert "trapped between floors" in body["summary"] and body["ack_url"].endswith(
                f"/{ticket.id}/ack"
            )
            await eventually(lambda: webhooks.to("elevator-lead"), 10)  # nobody acknowledged in 6 s
            assert not webhooks.to("duty")
            api = app.api_url
            ack = f"{api}/tickets/{ticket.id}/ack"

            async def acknowledge(
                body: dict[str, Any], token: str | None = TOKEN
            ) -> tuple[int, dict[str, Any]]:
                return await asyncio.to_thread(post, ack, body, token)  # the API waits on this loop

            missing = "write calls need Authorization: Bearer <api.token>"
            assert await acknowledge({"actor": "wang"}, token=None) == (401, {"error": missing})
            wrong = "wrong token: it matches neither the daemon's api.token nor any person's token"
            assert await acknowledge({"actor": "wang"}, token="wrong") == (401, {"error": wrong})
            status, ev = await acknowledge({"actor": "wang", "note": "on my way"})
            # the actor is who the token proves (api.token: the admin "api"), never the name sent
            assert status == 200 and ev["event"] == "acknowledged" and ev["actor"] == "api"
            assert (await acknowledge({"actor": "wang"}))[0] == 409
            # past the next escalation point (the daemon evaluated after it): nobody more is chased
            ack_sla = app.config.sla_of(ticket.priority).ack
            await evaluated_past(app, ticket.opened_at + ack_sla * (ticket.level + 1))
            assert ticket.level == 1
            assert not webhooks.to("duty")
            shown = await asyncio.to_thread(get, f"{api}/tickets/{ticket.id}")
            assert shown["state"] == "acknowledged" and shown["assignee"] == "elevator-tech"
            events = [e["event"] for e in shown["events"]]
            assert events == ["opened", "assigned", "breached", "escalated", "acknowledged"]
            metrics = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"{api}/metrics").read().decode()
            )
            assert 'monitord_tickets_time_to_acknowledge_seconds_count{priority="P1"} 1.0' in metrics
            listed = await asyncio.to_thread(get, f"{api}/tickets?state=acknowledged")
            assert [t["id"] for t in listed] == [ticket.id]
            assets = await asyncio.to_thread(get, f"{api}/assets")
            assert {a["asset"] if "asset" in a else a["id"] for a in assets} >= {"A-E2", "A-P1"}

    run(scenario(), timeout=150)
    assert len(webhooks.to("elevator-tech")) == 1 and len(webhooks.to("elevator-lead")) == 1


def test_feeder_outage_is_one_ticket_and_explains_its_dependants(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=120.0)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-PM-MAIN", "voltage_l1") and good(app, "A-P1", "flow"), 15)
            site.inject("A-PM-MAIN", "outage")  # the lifts go to battery, the pumps fall silent
            [ticket] = await eventually(lambda: list(app.core.desk.tickets.values()), 20)
            assert (ticket.asset, ticket.rule, ticket.priority) == ("A-PM-MAIN", "power.outage", "P1")
            dependants = {"A-E1", "A-E2", "A-P1", "A-P2"}
            try:
                await eventually(lambda: {n.split(":")[0] for n in ticket.explained} >= dependants, 30)
            except AssertionError:
                fired = [(a.asset, a.rule) for a in app.store.alert_events()] if app.store else []
                raise AssertionError(
                    f"explained {ticket.explained}; held {app.core.pipeline._held}; "
                    f"tickets {list(app.core.desk.tickets)}; alerts {fired}"
                ) from None
            # 3 s on, with a fresh reading of the feeder evaluated and no alert held back
            await evaluated_past(app, app.clock.now() + 3, fresh=[("A-PM-MAIN", "voltage_l1")])
            assert len(app.core.desk.tickets) == 1, "one ticket, not twenty"

    run(scenario(), timeout=120)
    paths = {p for _t, p, _b in webhooks.received}
    assert paths == {"/electrical-tech"}, "the dependants' alerts notify nobody"


def test_restart_mid_incident_keeps_the_ticket_and_sends_nothing_twice(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=300.0)

    async def first() -> str:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow"), 15)
            site.inject("A-P1", "dry_run")
            [ticket] = await eventually(lambda: list(app.core.desk.tickets.values()), 30)
            await eventually(lambda: webhooks.to("plumbing-tech"), 5)
            return ticket.id

    tid = run(first(), timeout=90)

    async def second() -> None:
        async with running(config) as (site, app):
            site.inject("A-P1", "dry_run")  # the fault is still there after the restart
            await eventually(lambda: tid in app.core.desk.tickets and app.core.pipeline.tickets_ready, 15)
            # The dry run shows on fresh readings for longer than the rule's `for`, and the daemon has
            # evaluated them: had it not restored the alert as firing, it would have fired again.
            hold = next(r.for_ for r in app.config.rules if r.id == "pump.dry_run")

            def dry_since() -> float:
                value, ts, quality = app.core.state.latest("A-P1")["suction_pressure"]
                return float(ts) if quality == Quality.GOOD and value < 0.05 else 0.0

            first = await eventually(dry_since, 30)
            await eventually(lambda: dry_since() > first + hold + 1, 30)
            await evaluated_past(app, dry_since())
            assert list(app.core.desk.tickets) == [tid]
            store = app.store
            assert store is not None
            await asyncio.to_thread(store.flush)
            dry = [a.state for a in store.alert_events() if (a.rule, a.asset) == ("pump.dry_run", "A-P1")]
            assert dry == ["firing"], "the alert of the first run, and no second firing"
            assert app.core.desk.tickets[tid].state == "open"

    run(second(), timeout=90)
    assert len(webhooks.to("plumbing-tech")) == 1


def test_gateway_down_is_one_ticket_for_the_devices_behind_it(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=120.0)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow") and good(app, "A-P2", "flow"), 15)
            site.inject("A-P1", "offline")  # the RS-485 line behind the pumps' gateway is dead:
            site.inject("A-P2", "offline")  # the gateway answers 0x0B for both
            [ticket] = await eventually(lambda: list(app.core.desk.tickets.values()), 20)
            assert ticket.rule == "comms.gateway_down" and ticket.asset.startswith("GW-127.0.0.1-")
            await eventually(lambda: {n.split(":")[0] for n in ticket.explained} >= {"A-P1", "A-P2"}, 20)
            assert len(app.core.desk.tickets) == 1

    run(scenario(), timeout=120)
    assert {p for _t, p, _b in webhooks.received} == {"/it-tech"}
    assert len(webhooks.received) == 1
