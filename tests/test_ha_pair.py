"""An HA pair of one site (issue 14): two `monitord run --instance` processes on real Mosquitto and a real
InfluxDB, the simulated building as a `monitord sim` process, pages to a real webhook receiver.

Both started at once: exactly one is active. The active killed (-9) mid-incident: the standby takes over
within the documented bound (2 × fleet.keepalive, docs/scale-out.md#ha-pair), the open
ticket stays one ticket, every page of the incident arrives exactly once, polling resumes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from monitord.daemon.fleet_messages import Claim, should_claim
from tests.support.daemon import TOKEN, get, post
from tests.support.fleet import Instance, ha_yaml, retained, simulator, wait_for, wait_started
from tests.support.influx import InfluxServer, V2WriteProxy
from tests.support.mosquitto import Mosquitto
from tests.support.webhooks import WebhookReceiver

KEEPALIVE = 2.0  # fleet.keepalive's default
BOUND = 2 * KEEPALIVE  # no beat heard for 1.5 keep-alives, looked at every half (docs/scale-out.md)


def one_active(pair: list[Instance]) -> Instance | None:
    roles = [i.role() for i in pair]
    if None in roles or sorted(roles, key=str) != ["active", "standby"]:
        return None
    return pair[roles.index("active")]


def test_the_claim_rule_names_one_instance_whatever_each_has_heard() -> None:
    assert should_claim("a", ["b"], None) and not should_claim("b", ["a"], None)
    assert not should_claim("a", ["b"], Claim("b", 3))  # sticky: a live holder keeps the lead
    assert should_claim("a", ["c"], Claim("b", 3))  # the holder is gone: the first online claims
    assert not should_claim("c", ["a"], Claim("b", 3))
    assert should_claim("b", [], None)  # alone (its peer not heard within the settle): it claims


def test_both_started_at_once_exactly_one_is_active(
    tmp_path: Path,
    own_broker: Mosquitto,
    influxdb: tuple[InfluxServer, V2WriteProxy],
    webhooks: WebhookReceiver,
) -> None:
    # A broker of its own: the listing below is every instance the broker ever heard of for the site.
    own_broker.start()
    mosquitto = own_broker.port
    _server, proxy = influxdb
    path = ha_yaml(tmp_path, mosquitto, webhooks, proxy.url)
    pair = [Instance(path, "b", tmp_path), Instance(path, "a", tmp_path)]
    try:
        wait_started(pair)  # starting two Pythons under load is not the election: timed apart
        active = wait_for(lambda: one_active(pair), 30, seen=pair)
        standby = next(i for i in pair if i is not active)
        claim = retained(mosquitto, "monitord/tower-a/leader")
        assert claim is not None and claim["instance"] == active.name
        for inst in pair:
            health = inst.health()
            assert health is not None and health["fleet"]["leader"] == active.name
            assert health["fleet"]["mode"] == "ha" and health["fleet"]["instance"] == inst.name
        assert f'monitord_fleet_role{{instance="{active.name}",role="active"}} 1.0' in active.metrics()
        assert f'monitord_fleet_role{{instance="{standby.name}",role="standby"}} 1.0' in standby.metrics()
        presence = retained(mosquitto, f"monitord/tower-a/instances/{standby.name}")
        assert presence is not None and (presence["state"], presence["role"]) == ("online", "standby")
        listing = subprocess.run(
            [sys.executable, "-m", "monitord", "fleet", str(path)], capture_output=True, text=True, timeout=60
        )
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0].startswith(f"tower-a (ha): 2 of 2 instances online, leader {active.name}"), lines
        assert lines[1].startswith("  a: ") and lines[2].startswith("  b: ")
        assert f"  {active.name}: active, online since " in listing.stdout
        assert f"  {standby.name}: standby, online since " in listing.stdout
        assert active.api_url in listing.stdout
        request = urllib.request.Request(
            standby.api_url + "/console/fleet?lang=zh-CN", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            html = r.read().decode()
        assert f'data-instance="{active.name}" data-role="active" data-state="online"' in html
        assert f'data-instance="{standby.name}" data-role="standby" data-state="online"' in html
        assert "<td>主用</td>" in html and "<td>备用</td>" in html
        # A person's action on the standby is refused, naming the active (its desk is not the site's).
        status, answer = post(
            standby.api_url + "/silences",
            {"matcher": {"assets": ["A-P1"]}, "reason": "x", "expires_in": "1h"},
        )
        assert (
            status == 503 and f"act on the active one ({active.name}) at {active.api_url}" in answer["error"]
        )
        status, answer = post(
            active.api_url + "/silences", {"matcher": {"assets": ["A-P1"]}, "reason": "x", "expires_in": "1h"}
        )
        assert status == 201, answer
    finally:
        for inst in pair:
            inst.stop()
    gone = retained(mosquitto, "monitord/tower-a/instances/a")
    assert gone is not None and gone["state"] == "offline"  # a clean stop says so at once


def test_kill_9_of_the_active_mid_incident_pages_once_and_keeps_one_ticket(
    tmp_path: Path, mosquitto: int, influxdb: tuple[InfluxServer, V2WriteProxy], webhooks: WebhookReceiver
) -> None:
    server, proxy = influxdb
    path = ha_yaml(tmp_path, mosquitto, webhooks, proxy.url)
    # The lead is paged 8 s after the ticket opens: after the takeover, by the new active.
    path.write_text(path.read_text().replace("ack: 5m", "ack: 8s"))
    sim = simulator(path, tmp_path, "scenario: ha\ntimeline:\n  - {at: 6s, asset: A-P1, fault: dry_run}\n")
    pair = [Instance(path, "a", tmp_path), Instance(path, "b", tmp_path)]
    try:
        wait_started(pair)
        first = wait_for(lambda: one_active(pair), 30, seen=pair)
        second = next(i for i in pair if i is not first)

        def paged(who: str) -> list[dict[str, object]]:
            return [body for _t, p, body in webhooks.received if p.startswith(f"/{who}")]

        [page] = wait_for(lambda: paged("plumbing-tech"), 40)
        ticket = page["ticket"]
        # A silence set on the active (the AHU's filter is being changed) is the new active's too.
        status, silence = post(
            first.api_url + "/silences",
            {"matcher": {"assets": ["A-AHU1"]}, "reason": "filter change", "expires_in": "2h"},
        )
        assert status == 201, silence
        wait_for(lambda: server.query("SELECT * FROM silence"), 10)  # written off the loop, at once
        # Killed the moment the page arrives: the active stored the ticket's events before it paged.
        killed = time.time()
        first.kill9()
        wait_for(lambda: second.role() == "active", 20, interval=0.05)
        takeover = time.time() - killed
        assert takeover <= BOUND, takeover

        # Polling resumes: pump samples newer than the takeover reach the store.
        since = int((killed + takeover) * 1e6)
        wait_for(lambda: server.query(f"SELECT flow FROM pump WHERE asset = 'A-P1' AND time > {since}u"), 15)
        # The lead's page (level 1) comes from the new active, once.
        wait_for(lambda: paged("plumbing-lead"), 30)
        # Nothing more comes: the new active has evaluated several times after the lead's page.
        ticks = evaluations(second)
        wait_for(lambda: evaluations(second) >= ticks + 5, 20)
        keys = Counter((b["ticket"], b["level"], b["recipient"]) for _t, _p, b in webhooks.received)
        assert keys == {(ticket, 0, "plumbing-tech"): 1, (ticket, 1, "plumbing-lead"): 1}, keys
        opened = server.query("SELECT * FROM ticket WHERE event = 'opened'")
        assert [(t["ticket"], t["asset"]) for t in opened] == [(ticket, "A-P1")]
        health = second.health()
        assert health is not None and health["fleet"]["leader"] == second.name
        assert [(x["id"], x["reason"]) for x in get(second.api_url + "/silences")] == [
            (silence["id"], "filter change")
        ]
    finally:
        for inst in pair:
            inst.stop()
        sim.terminate()
        sim.wait(timeout=30)


def evaluations(inst: Instance) -> int:
    found = re.search(r"^monitord_rules_evaluation_duration_seconds_count (\S+)$", inst.metrics(), re.M)
    return int(float(found.group(1))) if found else 0


def test_an_active_that_loses_its_broker_stops_acting_and_restores_afresh_when_it_leads_again(
    tmp_path: Path,
    own_broker: Mosquitto,
    influxdb: tuple[InfluxServer, V2WriteProxy],
    webhooks: WebhookReceiver,
) -> None:
    _server, proxy = influxdb
    own_broker.start()
    path = ha_yaml(tmp_path, own_broker.port, webhooks, proxy.url)
    alone = Instance(path, "a", tmp_path)
    try:
        wait_started([alone])
        wait_for(lambda: alone.role() == "active", 30, seen=[alone])  # alone: nobody else online, it claims
        own_broker.stop()
        wait_for(lambda: alone.role() == "standby", 10)  # it cannot know any more: it stops acting
        health = alone.health()
        assert health is not None and health["fleet"]["connected"] is False
        own_broker.start()  # no persistence: the claim is gone, so it claims again
        wait_for(lambda: alone.role() == "active", 30)
        assert "monitord_fleet_takeovers_total 2.0" in alone.metrics()
        wait_for(lambda: "restored from the store afresh" in alone.log.read_text(), 10)
    finally:
        alone.stop()
