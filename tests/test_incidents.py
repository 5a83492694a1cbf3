"""Rules of inference from alerts to tickets (docs/incidents.md): timelines on the manual clock.

Life safety first, a dark supply, a silent broker connection, one incident per asset, and quiet
recurrences; the silence and maintenance-window rules for life safety on ``MuteStages`` itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from monitord.alerting.mute import MaintenanceWindow, Matcher, MuteStages
from monitord.config.site import load_config
from monitord.core.assets import Asset
from monitord.core.model import Quality, SampleBatch
from monitord.daemon.app import with_gateways
from tests.support import T0, Timeline

PROFILES = """
site: {id: incidents}
mqtt: {url: 'mqtt://127.0.0.1:1'}
poll: 1s
profiles:
  - profile: meter
    asset_type: power_meter
    modbus: {}
    points: {voltage: {address: 0}}
  - profile: lift
    asset_type: elevator
    mqtt: {topic: '{site}/{asset}'}
    modbus: {}
    points: {trapped: {address: 0}, door_fault: {address: 1}, on_battery: {address: 2}}
  - profile: box
    asset_type: pump
    mqtt: {topic: '{site}/{asset}'}
    modbus: {}
    points: {running: {address: 0}}
"""
RULES = """
rules:
  - {id: comms.offline, applies_to: {}, when: offline, clear_for: 2s,
     ticket: {priority: P2, skill: it}}
  - {id: power.outage, applies_to: {type: power_meter}, when: "voltage < 22", for: 2s, root_cause: true,
     severity: critical, ticket: {priority: P1, skill: electrical}}
  - {id: lift.trapped, applies_to: {type: elevator}, when: "trapped == 1", for: 5s, life_safety: true,
     severity: critical, ticket: {priority: P1, skill: elevator}}
  - {id: lift.door_fault, applies_to: {type: elevator}, when: "door_fault == 1", for: 2s,
     ticket: {priority: P2, skill: elevator}}
  - {id: lift.on_battery, applies_to: {type: elevator}, when: "on_battery == 1", for: 1s,
     ticket: {priority: P2, skill: elevator}}
"""


UNITS = itertools.count()  # one Modbus unit per device on a line: the check refuses two at one address


def meter(asset_id: str, poll: str = "1s") -> str:
    return (
        f"  - {{id: {asset_id}, type: power_meter, profile: meter, poll: {poll},"
        f" connection: {{modbus: {{host: 127.0.0.1, port: 1502, unit: {next(UNITS) % 247 + 1}}}}}}}\n"
    )


def fed(asset_id: str, kind: str, supply: str | None, mqtt: bool = False) -> str:
    unit = next(UNITS) % 247 + 1
    conn = "{mqtt: {}}" if mqtt else f"{{modbus: {{host: 127.0.0.1, port: 1503, unit: {unit}}}}}"
    profile = "lift" if kind == "elevator" else "box"
    deps = f", depends_on: [{supply}]" if supply else ""
    return f"  - {{id: {asset_id}, type: {kind}, profile: {profile}, connection: {conn}{deps}}}\n"


def site(assets: str) -> str:
    return PROFILES + "assets:\n" + assets + RULES


def steady(tl: Timeline, until: float, every: Callable[[float], None], step: float = 1.0) -> None:
    t = 0.0
    while t <= until:
        every(t)
        t += step


def test_a_trapped_passenger_gets_its_own_ticket_during_an_outage_and_the_two_are_linked(
    timeline: Callable[..., Timeline],
) -> None:
    tl = timeline(site(meter("F") + fed("L1", "elevator", "F") + fed("L2", "elevator", "F")))

    def sample(t: float) -> None:
        out = t >= 10
        tl.at(t).push("F", voltage=0.0 if out else 220.0)
        tl.at(t).push("L1", trapped=1.0 if out else 0.0, door_fault=0.0, on_battery=1.0 if out else 0.0)
        tl.at(t).push("L2", trapped=0.0, door_fault=0.0, on_battery=1.0 if out else 0.0)

    steady(tl, 40, sample)
    # The outage (for 2 s) opens its ticket; both lifts' battery alerts (for 1 s, waiting for the
    # pending outage) are explained on it.
    tl.expect_tickets(between=(0, 11.9))
    tl.expect_tickets(
        between=(12, 12),
        opened=[("power.outage", "F")],
        explained=[("power.outage", "F"), ("power.outage", "F")],
    )
    tl.expect_tickets(between=(12.01, 14.9))
    # The trapped passenger (for 5 s) is never explained away: its own ticket, linked both ways.
    tl.expect_tickets(
        between=(15, 15),
        opened=[("lift.trapped", "L1")],
        linked=[("lift.trapped", "L1"), ("power.outage", "F")],
    )
    tl.expect_nothing(until=40)
    desk = tl.core.desk
    outage = desk.open_ticket_for_rule("power.outage", "F")
    trapped = desk.open_ticket_for_rule("lift.trapped", "L1")
    assert outage is not None and trapped is not None
    assert (trapped.priority, trapped.category) == ("P1", "elevator")
    assert [n.split(":")[0] for n in trapped.links] == [outage.id]
    assert [n.split(":")[0] for n in outage.links] == [trapped.id]
    assert sorted(n.split(":")[0] for n in outage.explained) == ["L1", "L2"]
    _alerts, stored = tl.stored()
    assert {(e.ticket, e.note.split(":")[0]) for e in stored if e.event == "linked"} == {
        (trapped.id, outage.id),
        (outage.id, trapped.id),
    }


def test_a_dark_feeder_meter_with_its_dependants_is_one_supply_ticket(
    timeline: Callable[..., Timeline],
) -> None:
    lifts = [f"L{i}" for i in range(6)]
    tl = timeline(site(meter("F", poll="2s") + "".join(fed(a, "elevator", "F") for a in lifts)))
    for t in range(0, 10):
        tl.at(t).push("F", voltage=220.0)  # then the meter goes dark with the feeder it is fed from
        for a in lifts:
            tl.at(t).push(a, trapped=0.0, door_fault=0.0, on_battery=0.0)
    # The lifts (1 s polls) are offline after 12 s, the meter (2 s polls) only after 15 s: the lifts'
    # alerts wait for it, then one supply ticket explains all seven silences.
    tl.expect_alerts(between=(0, 12.9), firing=[("comms.offline", a) for a in lifts])
    tl.expect_tickets(between=(0, 14.9))
    got = tl.expect_tickets(
        between=(15, 16),
        opened=[("topology.supply_dark", "F")],
        explained=[("topology.supply_dark", "F")] * 7,
    )
    assert {s.ticket for s in got} == {got[0].ticket}
    tl.expect_nothing(until=60)
    [ticket] = tl.core.desk.tickets.values()
    assert ticket.summary.startswith("F: supply lost or supply meter dark — 6 of 6 silent")
    assert (ticket.priority, ticket.category) == ("P1", "electrical"), "the trade of power.outage"
    assert sorted(n.split(":")[0] for n in ticket.explained) == ["F", *lifts]
    # The feeder is back: the supply ticket resolves.
    for t in range(61, 70):
        tl.at(t).push("F", voltage=220.0)
    tl.run_until(70)
    assert ticket.state == "resolved"


def test_dependants_that_keep_reporting_are_evidence_against_a_dark_supply(
    timeline: Callable[..., Timeline],
) -> None:
    lifts = [f"L{i}" for i in range(4)]
    tl = timeline(site(meter("F", poll="2s") + "".join(fed(a, "elevator", "F") for a in lifts)))
    for t in range(0, 40):
        if t < 10:
            tl.at(t).push("F", voltage=220.0)  # the meter's own link fails at 10 s ...
        for a in lifts[:3] if t >= 10 else lifts:  # ... and one lift with it; three keep reporting
            tl.at(t).push(a, trapped=0.0, door_fault=0.0, on_battery=0.0)
    tl.expect_nothing(until=11.9)
    # 1 of 4 down is no majority: the meter's silence and the lift's are two incidents of their own.
    tl.expect_tickets(between=(12, 16), opened=[("comms.offline", "L3"), ("comms.offline", "F")])
    tl.expect_nothing(until=39)
    assert not any(t.rule == "topology.supply_dark" for t in tl.core.desk.tickets.values())


def test_a_silent_broker_at_start_up_is_one_ticket_not_one_per_device(
    timeline: Callable[..., Timeline],
) -> None:
    boxes = [f"B{i:02d}" for i in range(12)]
    tl = timeline(site("".join(fed(b, "pump", None, mqtt=True) for b in boxes)))
    tl.expect_nothing(until=3)  # nothing heard from the broker: offline only after 3 polls
    got = tl.expect_tickets(
        between=(3, 4),
        opened=[("topology.path_silent", "MQTT-127.0.0.1-1")],
        explained=[("topology.path_silent", "MQTT-127.0.0.1-1")] * 12,
    )
    ticket = tl.core.desk.tickets[got[0].ticket]
    assert ticket.summary.startswith("MQTT broker 127.0.0.1:1: every device behind it fell silent")
    assert (ticket.priority, ticket.category) == ("P2", "it")
    tl.expect_nothing(until=30)
    # The broker delivers again: the path ticket resolves, the devices' alerts resolve, no new ticket.
    for t in range(31, 40):
        for b in boxes:
            tl.at(t).push(b, running=1.0)
    tl.run_until(40)
    assert ticket.state == "resolved" and len(tl.core.desk.tickets) == 1


def test_one_silent_device_on_a_live_broker_is_its_own_ticket(timeline: Callable[..., Timeline]) -> None:
    boxes = [f"B{i}" for i in range(4)]
    tl = timeline(site("".join(fed(b, "pump", None, mqtt=True) for b in boxes)))
    for t in range(0, 30):
        for b in boxes[:3] if t >= 5 else boxes:
            tl.at(t).push(b, running=1.0)
    tl.expect_nothing(until=7.9)
    tl.expect_tickets(between=(8, 9), opened=[("comms.offline", "B3")])
    tl.expect_nothing(until=29)


def test_a_lesser_alert_of_the_same_asset_is_a_symptom_of_the_open_incident(
    timeline: Callable[..., Timeline],
) -> None:
    tl = timeline(site(fed("L1", "elevator", None, mqtt=True) + fed("L2", "elevator", None, mqtt=True)))
    for t in range(0, 40):
        trapped = 1.0 if t >= 5 else 0.0
        door = 1.0 if t >= 15 else 0.0
        tl.at(t).push("L1", trapped=trapped, door_fault=door, on_battery=0.0)
        tl.at(t).push("L2", trapped=0.0, door_fault=door, on_battery=0.0)
    tl.expect_nothing(until=9.9)
    tl.expect_tickets(between=(10, 10), opened=[("lift.trapped", "L1")])
    tl.expect_nothing(until=16.9)
    # The door fault during the entrapment joins its ticket; on L2 (no incident) it is its own.
    tl.expect_tickets(between=(17, 17), symptom=[("lift.trapped", "L1")], opened=[("lift.door_fault", "L2")])
    tl.expect_nothing(until=39)
    trapped_ticket = tl.core.desk.open_ticket_for_rule("lift.trapped", "L1")
    assert trapped_ticket is not None
    assert [n.split(":")[0] for n in trapped_ticket.symptoms] == ["L1"]
    assert "lift.door_fault" in trapped_ticket.symptoms[0]


def test_a_life_safety_alert_is_never_a_symptom(timeline: Callable[..., Timeline]) -> None:
    battery = RULES.index("lift.on_battery")
    rules = RULES[:battery] + RULES[battery:].replace("priority: P2", "priority: P1", 1)  # as grave
    tl = timeline(PROFILES + "assets:\n" + fed("L1", "elevator", None, mqtt=True) + rules)
    for t in range(0, 30):
        tl.at(t).push("L1", trapped=1.0 if t >= 5 else 0.0, door_fault=0.0, on_battery=1.0)
    tl.expect_tickets(between=(0, 1), opened=[("lift.on_battery", "L1")])
    tl.expect_nothing(until=9.9)
    tl.expect_tickets(between=(10, 10), opened=[("lift.trapped", "L1")])
    tl.expect_nothing(until=29)


def test_an_incident_going_in_and_out_is_one_ticket_with_its_repeats(
    timeline: Callable[..., Timeline],
) -> None:
    tl = timeline(site(fed("L1", "elevator", None, mqtt=True)))
    # On battery for 60 s out of every 6 minutes, for half an hour: five episodes, far apart enough
    # that the tracker's own flapping window (6 changes in 10 min) does not hold them.
    for t in range(0, 1800):
        tl.at(t).push("L1", trapped=0.0, door_fault=0.0, on_battery=1.0 if t % 360 < 60 else 0.0)
    tl.run_until(1800)
    events = [s.what for s in tl.tickets()]
    assert events.count("opened") == 1 and "reopened" not in events
    assert events.count("recurred") == 4
    [ticket] = tl.core.desk.tickets.values()
    assert ticket.repeats == 4 and ticket.flapping


def test_life_safety_is_muted_only_by_a_silence_that_names_it(tmp_path: Path) -> None:
    lift = Asset(id="L1", type="elevator", name="Lift 1", location={}, depends_on=(), tags=(), params={})
    window = MaintenanceWindow.model_validate(
        {"id": "service", "match": {"assets": ["L1"]}, "start": "2026-01-01T00:00:00", "end": "2027-12-31"}
    )
    mute = MuteStages([window], tmp_path / "n.db")
    at = T0
    assert mute.mutes("lift.door_fault", lift, at) is not None, "an ordinary alert: the window mutes it"
    assert mute.mutes("lift.trapped", lift, at, life_safety=True) is None, "no window mutes life safety"
    mute.add_silence(Matcher(rules=["lift.*"]), "wang", "lift swap", 3600, now=at - 10)
    mute.add_silence(Matcher(assets=["L1"]), "wang", "lift swap", 3600, now=at - 10)
    assert mute.mutes("lift.trapped", lift, at, life_safety=True) is None, "neither a glob nor an asset"
    assert mute.audit() == []
    named = mute.add_silence(Matcher(rules=["lift.trapped"]), "li", "alarm box test", 600, now=at - 10)
    reason = mute.mutes("lift.trapped", lift, at, life_safety=True)
    assert reason is not None and named.id in reason
    assert mute.audit() == [(named.id, "li", "alarm box test", "lift.trapped", "L1", at)]
    assert MuteStages([], tmp_path / "n.db").audit() == mute.audit(), "the audit survives a restart"


def test_offline_is_judged_by_receive_time_not_the_sample_time(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(site(fed("B1", "pump", None, mqtt=True)))
    clock = tl.core.clock
    for t in range(0, 20):
        tl.run_until(t)
        # a device an hour behind: its samples carry old times, but they arrive now
        tl.core.bus.publish(_batch(clock.now() - 3600, "B1"))
    tl.expect_nothing(until=20)
    tl.expect_alerts(between=(20.1, 24), firing=[("comms.offline", "B1")])


def _batch(ts: float, asset: str) -> SampleBatch:
    good = np.array([int(Quality.GOOD)], dtype=np.int8)
    return SampleBatch(ts, asset, ("running",), np.array([1.0]), good)


def test_a_gateway_is_judged_by_its_devices_poll_not_the_sites(
    tmp_path: Path, timeline: Callable[..., Timeline]
) -> None:
    """Meters polled every 2 s behind one gateway, on a site whose default poll is 1 s: the gateway
    is reported once per round, so a round 1.4 s late (a busy machine) is no offline gateway."""
    path = tmp_path / "gateway.yaml"
    path.write_text(site(meter("M1", "2s") + meter("M2", "2s")))
    tl = timeline(with_gateways(load_config(path)))
    gateway = next(a.id for a in tl.config.assets if a.type == "gateway")
    rounds = [0.0, 2.0, 4.0, 7.4, 9.4, 11.4, 13.4]  # the round due at 6 s ran 1.4 s late
    for t in rounds:
        tl.at(t).push("M1", voltage=230.0).push("M2", voltage=230.0)
        tl.at(t).push(gateway, devices_online=2.0, devices_total=2.0)
    tl.expect_nothing(until=14)
    # and a gateway whose poller truly stopped is offline after three of those polls
    tl.expect_alerts(
        between=(14.1, 20),
        firing=[("comms.offline", "M1"), ("comms.offline", "M2"), ("comms.offline", gateway)],
    )
