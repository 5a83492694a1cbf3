"""Pages that wait behind nobody and are never silently lost, end to end.

Real parts: simulators over Modbus TCP and MQTT (Mosquitto), the daemon (in this process, or
``monitord run`` as its own process where it must be killed), real HTTP receivers — one that is
down for a while, one that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from monitord.config.site import load_config
from monitord.people.dispatch import notification_key
from monitord.people.roster import Contact
from monitord.tickets.desk import Ticket
from tests.support import (
    BlackHole,
    WebhookReceiver,
    daemon_yaml,
    demo_site,
    evaluated_past,
    eventually,
    get,
    good,
    metric,
    run,
    running,
    simulated,
    with_people,
)


def ticket_of(tickets: dict[str, Ticket], asset: str) -> Ticket | None:
    return next((t for t in tickets.values() if t.asset == asset), None)


def test_a_dead_endpoint_delays_no_other_page_and_its_page_goes_to_the_next_person(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    hole = BlackHole()  # the elevator technician's robot: accepts, never answers (10 s per try)
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=300.0)
    assert config.roster is not None
    teams = dict(config.roster.teams)
    dead = Contact(name="elevator-tech", webhook=hole.url("elevator-tech"))
    teams["elevator"] = teams["elevator"].model_copy(update={"members": [dead]})
    config = config.model_copy(
        update={
            "roster": config.roster.model_copy(update={"teams": teams}),
            "notify": config.notify.model_copy(update={"max_wait": 15.0}),
        }
    )

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-E2", "speed") and good(app, "A-P1", "flow"), 15)
            site.inject("A-E2", "entrapment")
            lift = await eventually(lambda: ticket_of(app.core.desk.tickets, "A-E2"), 90)
            await eventually(lambda: hole.connections, 5)  # the lift's page hangs on the dead robot
            site.inject("A-P1", "dry_run")
            pump = await eventually(lambda: ticket_of(app.core.desk.tickets, "A-P1"), 30)
            assert pump.priority == "P1"
            [arrived, *_] = await eventually(lambda: webhooks.delivered("plumbing-tech"), 5)
            assert arrived - pump.opened_at < 2.0, "the plumber's P1 does not wait behind the dead robot"
            assert app.outbox is not None
            key = notification_key(lift, 0, "elevator-tech", "webhook")
            assert app.outbox.status(key) == "pending", "the lift's page was still being retried"
            # max_wait 15 s (+ one 10 s try in flight): given up, shown on the ticket, the lead paged
            [lead, *_] = await eventually(lambda: webhooks.delivered("elevator-lead"), 40)
            assert lead - lift.opened_at < 15 + 10 + 3
            shown = await asyncio.to_thread(get, f"{app.api_url}/tickets/{lift.id}")
            events = [(e["event"], e["level"]) for e in shown["events"]]
            assert ("undelivered", 0) in events and ("escalated", 1) in events
            assert events.index(("undelivered", 0)) < events.index(("escalated", 1))
            note = next(e["note"] for e in shown["events"] if e["event"] == "undelivered")
            assert note.startswith("webhook to elevator-tech undelivered after 2 attempt(s)")
            body = webhooks.to("elevator-lead")[0]
            assert (body["ticket"], body["event"], body["level"]) == (lift.id, "escalated", 1)

    try:
        run(scenario(), timeout=180)
    finally:
        hole.close()
    assert len(webhooks.delivered("elevator-lead")) == 1


def test_an_endpoint_down_for_38_s_gets_its_page_once_it_recovers(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    webhooks.outages["/plumbing-tech"] = (503, 38.0)
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=300.0)
    assert config.notify.max_wait == 60.0 and config.notify.attempts == 10  # the defaults

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow"), 15)
            site.inject("A-P1", "dry_run")
            pump = await eventually(lambda: ticket_of(app.core.desk.tickets, "A-P1"), 30)
            [delivered] = await eventually(lambda: webhooks.delivered("plumbing-tech"), 75)
            first = webhooks.answered[0][0]
            assert delivered - first >= 38.0, "delivered once the endpoint answered again"
            await evaluated_past(app, app.clock.now())  # the dispatcher has seen any give-up by now
            assert "undelivered" not in [e.event for e in pump.events]
            tries = len(webhooks.to("plumbing-tech"))
            retries = app.metrics.registry.get_sample_value(
                "monitord_notify_retries_total", {"channel": "webhook"}
            )
            assert retries == tries - 1 and 6 <= tries <= 8
            latency = app.metrics.registry.get_sample_value(
                "monitord_notify_delivery_latency_seconds_sum", {"channel": "webhook", "priority": "P1"}
            )
            assert latency is not None and latency >= 38.0

    run(scenario(), timeout=150)
    assert len(webhooks.delivered("plumbing-tech")) == 1
    assert not webhooks.to("plumbing-lead"), "delivered in time: nobody else is paged"


# -- kill -9 ---------------------------------------------------------------------------------------


def test_kill_9_during_retries_loses_no_page_and_sends_nothing_twice(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    webhooks.outages["/plumbing-tech"] = (503, 20.0)
    path, metrics, api = daemon_yaml(tmp_path, mosquitto, webhooks)
    config = load_config(path)
    evaluated = "monitord_rules_evaluation_duration_seconds_count"

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / "daemon.log").open("ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                [sys.executable, "-m", "monitord", "run", str(path)], cwd=tmp_path, stdout=log, stderr=log
            )

    def kill(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def outbox_states() -> list[str]:
        with sqlite3.connect(tmp_path / "notifications.db") as db:
            return [row[0] for row in db.execute("SELECT state FROM outbox")]

    async def scenario() -> None:
        async with simulated(config) as site:
            first = start()
            try:
                await eventually(lambda: metric(metrics, evaluated), 30)
                site.inject("A-P1", "dry_run")
                await eventually(lambda: len(webhooks.to("plumbing-tech")) >= 3, 60)  # retrying
            finally:
                kill(first)
            assert outbox_states() == ["pending"] and not webhooks.delivered("plumbing-tech")
            second = start()
            try:
                await eventually(lambda: webhooks.delivered("plumbing-tech"), 60)
                await eventually(lambda: outbox_states() == [], 5)
            finally:
                kill(second)
            requests = len(webhooks.received)
            third = start()
            try:
                # Past a restore and ten evaluations: anything still owed would have gone out by now.
                await eventually(lambda: (metric(metrics, evaluated) or 0) >= 10, 60)
                tickets = await asyncio.to_thread(get, f"http://127.0.0.1:{api}/tickets")
            finally:
                kill(third)
            assert len(webhooks.received) == requests, "nothing sent again after the restart"
            assert [t["asset"] for t in tickets] == ["A-P1"], "one ticket across three runs"

    run(scenario(), timeout=240)
    assert len(webhooks.delivered("plumbing-tech")) == 1
    assert not webhooks.to("plumbing-lead")
