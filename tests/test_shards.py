"""Sharded campus, the pure parts: the stable hash and its balance, lines kept whole, ``fleet.pin``
errors at file:line, ``monitord check``'s summary, the fact codec, and a shard's decisions on the
manual clock when a supply lives on another shard (docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from monitord.alerting.facts import BadFact, Fact
from monitord.alerting.tracker import AlertEvent
from monitord.config.fleet import Member
from monitord.config.mqtt import router
from monitord.config.shards import ShardPlan, own_share, owns_ticket, stable_shard
from monitord.config.site import load_config
from monitord.core.errors import ConfigError
from monitord.daemon.app import with_gateways
from monitord.daemon.fleet_role import FleetRole
from monitord.daemon.shardfacts import ShardFacts
from monitord.tickets.desk import TicketEvent
from tests.support import Timeline
from tests.support.campus import lifts, meters, site
from tests.support.configs import check, problems, write

# -- the plan ------------------------------------------------------------------------------------


def test_the_hash_is_crc32_and_the_same_in_every_process(tmp_path: Path) -> None:
    ids = [f"M-{n:04d}" for n in range(200)]
    assert [stable_shard(a, 3) for a in ids] == [zlib.crc32(a.encode()) % 3 for a in ids]
    # Python's own hash() is salted per process; the plan must not be: two processes, two seeds.
    code = (
        "import json, sys; from monitord.config.shards import stable_shard as s;"
        " print(json.dumps([s(a, 3) for a in sys.argv[1:]]))"
    )
    plans = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code, *ids],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONHASHSEED": seed},
            ).stdout
        )
        for seed in ("1", "2")
    ]
    assert plans[0] == plans[1] == [stable_shard(a, 3) for a in ids]


def test_3000_assets_spread_evenly_over_three_shards() -> None:
    counts = [0, 0, 0]
    for n in range(3000):
        counts[stable_shard(f"M-{n:04d}", 3)] += 1
    assert all(900 <= c <= 1100 for c in counts), counts


def test_a_modbus_line_and_its_gateway_stay_on_one_shard(tmp_path: Path) -> None:
    lines = [meters([f"L{k}-{u}" for u in range(5)], port=1600 + k) for k in range(12)]
    config = with_gateways(load_config(write(tmp_path, site("".join(lines)))))
    plan = ShardPlan.of(config)
    for k in range(12):
        owners = {plan.owner[f"L{k}-{u}"] for u in range(5)} | {plan.owner[f"GW-127.0.0.1-{1600 + k}"]}
        assert len(owners) == 1, (k, owners)
    assert len(set(plan.owner.values())) == 3, "twelve lines reach every shard"
    assert sum(plan.counts()) == 12 * 6


def test_a_pin_moves_the_whole_line(tmp_path: Path) -> None:
    text = site(meters(["A", "B", "C"]) + meters(["D"], port=1700), pin="B: 2, D: 0")
    plan = ShardPlan.of(with_gateways(load_config(write(tmp_path, text))))
    assert [plan.owner[a] for a in ("A", "B", "C", "GW-127.0.0.1-1502", "D")] == [2, 2, 2, 2, 0]


def test_each_shard_numbers_tickets_with_its_own_code_and_restores_only_its_own(tmp_path: Path) -> None:
    text = site(meters(["A", "B"]) + meters(["D"], port=1700), pin="A: 2, D: 0")
    whole = with_gateways(load_config(write(tmp_path, text)))
    plan, code = ShardPlan.of(whole), whole.site.ticket_code
    assert [own_share(whole, k).site.ticket_code for k in range(3)] == [f"{code}-S{k}" for k in range(3)]
    # Shards writing one store read back every shard's tickets: each keeps those with its code.
    ticket = "WO-{}-20261201-0001"
    assert [owns_ticket(plan, k, code, ticket.format(f"{code}-S1"), "A") for k in range(3)] == [
        False,
        True,
        False,
    ]
    # From before the site was sharded: the asset's owner takes it; a resident's request goes to 0.
    assert [owns_ticket(plan, k, code, ticket.format(code), "A") for k in range(3)] == [False, False, True]
    assert [owns_ticket(plan, k, code, ticket.format(code), "D") for k in range(3)] == [True, False, False]
    assert [owns_ticket(plan, k, code, ticket.format(code), "") for k in range(3)] == [True, False, False]
    # Another site whose code starts like this one's is not mistaken for shard 1 of it: the id is
    # read as an unsharded one, so D's owner (shard 0) keeps it.
    assert owns_ticket(plan, 0, code, ticket.format(f"{code}X-S1"), "D") is True


def test_the_fleet_role_says_what_each_mode_runs_and_which_tickets_it_restores(tmp_path: Path) -> None:
    """``FleetRole``, what ``Monitord`` builds from: a shard runs its share under a client id and a
    notification log of its own, and restores only its tickets; one instance runs and restores all."""
    text = site(meters(["A", "B"]) + meters(["D"], port=1700), pin="A: 2, D: 0")
    whole = with_gateways(load_config(write(tmp_path, text)))
    plan, code = ShardPlan.of(whole), whole.site.ticket_code

    def opened(ticket: str, asset: str) -> TicketEvent:
        return TicketEvent(1.0, ticket, "k", "opened", "open", asset, "r", "P2", "it", "s")

    role = FleetRole.of(whole, Member("campus-2", 2))
    assert role.mode == "shard" and whole.mqtt is not None and role.config.mqtt is not None
    share = {a.id for a in role.config.assets}
    assert share == {a for a, k in plan.owner.items() if k == 2} == {"A", "B", "GW-127.0.0.1-1502"}
    assert role.config.site.ticket_code == f"{code}-S2"
    assert role.config.mqtt.client_id == f"{whole.mqtt.client_id}-shard2-campus-2"
    assert role.config.notify_log == whole.notify_log.parent / "campus-2" / whole.notify_log.name
    mine, theirs = opened(f"WO-{code}-S2-20261201-0001", "D"), opened(f"WO-{code}-S0-20261201-0001", "A")
    assert [role.restores(ev) for ev in (mine, theirs, opened(f"WO-{code}-20261201-0001", "A"))] == [
        True,
        False,
        True,  # from before the site was sharded: A's owner takes it
    ]
    with pytest.raises(ConfigError, match="--shard"):
        FleetRole.of(whole, Member("campus-3", 3))
    alone = load_config(
        write(tmp_path, text.replace(", pin: {A: 2, D: 0}", "").replace("mode: shard", "mode: single"))
    )
    role = FleetRole.of(alone, Member("campus-2", 2))
    assert role.mode == "single" and role.config is alone
    assert role.restores(mine) and role.restores(theirs)


MQTT = """\
site: {id: campus}
mqtt: {url: 'mqtt://127.0.0.1:1'}
fleet: {mode: shard, shards: 3}
profiles:
  - {profile: box, asset_type: pump, mqtt: {topic: '{site}/{asset}'}, points: {running: {}}}
assets:
"""


def test_each_shard_subscribes_to_its_own_mqtt_devices_and_a_gateways_devices_stay_together(
    tmp_path: Path,
) -> None:
    boxes = [f"B{i:02d}" for i in range(30)]
    behind = [f"G{i}" for i in range(6)]  # six pumps behind one ThingsBoard gateway: one topic
    text = MQTT + "".join(
        f"  - {{id: {b}, type: pump, profile: box, connection: {{mqtt: {{}}}}}}\n" for b in boxes
    )
    text += "".join(
        f"  - {{id: {g}, type: pump, profile: box, connection: {{mqtt: {{gateway: thingsboard}}}}}}\n"
        for g in behind
    )
    config = load_config(write(tmp_path, text))
    plan = ShardPlan.of(config)
    assert len({plan.owner[g] for g in behind}) == 1
    routed = []
    for k in range(3):
        share = own_share(config, k)
        assert share.mqtt.client_id == f"monitord-shard{k}"
        mine = {r.asset for r in router(share).routes()}
        assert mine == {a for a, owner in plan.owner.items() if owner == k}
        routed.append(mine)
    assert sorted(set().union(*routed)) == sorted(boxes + behind)
    assert sum(map(len, routed)) == len(boxes) + len(behind), "no device routed by two shards"


# -- config errors and `monitord check` ----------------------------------------------------------


def test_pins_that_contradict_are_refused_at_their_line(tmp_path: Path) -> None:
    text = site(meters(["A", "B"]) + meters(["C"], port=1700), pin="A: 0, B: 1, C: 3, X: 1")
    assert problems(tmp_path, text) == [
        "site.yaml:4 fleet.pin.B: GW-127.0.0.1-1502 is pinned to shard 0 by 'A': a line is polled by one"
        " instance, so 'B' cannot go to shard 1",
        "site.yaml:4 fleet.pin.C: shard must be 0..2 (fleet.shards), got 3",
        "site.yaml:4 fleet.pin.X: unknown asset 'X'",
    ]


def test_pins_outside_shard_mode_and_shards_without_a_broker_are_refused(tmp_path: Path) -> None:
    single = site(meters(["A"]), pin="A: 0").replace("mode: shard, shards: 3", "mode: single")
    assert problems(tmp_path, single) == [
        "site.yaml:4 fleet.pin.A: pins apply to mode: shard only (mode is single)"
    ]
    no_broker = site(meters(["A"])).replace("mqtt: {url: 'mqtt://127.0.0.1:1'}\n", "")
    assert problems(tmp_path, no_broker) == [
        "site.yaml:3 fleet.mode: shard mode needs a top-level mqtt: broker (shards exchange facts through it)"
    ]


def test_check_prints_the_assets_per_shard(tmp_path: Path) -> None:
    lines = "".join(meters([f"L{k}-{u}" for u in range(4)], port=1600 + k) for k in range(9))
    path = write(tmp_path, site(lines))
    done = check(path)
    assert done.returncode == 0, done.stderr
    counts = ShardPlan.of(load_config(path)).counts()
    assert (
        f"fleet: 3 shards, assets per shard: shard 0: {counts[0]}, shard 1: {counts[1]}, shard 2: {counts[2]}"
        in done.stdout
    )
    assert sum(counts) == 36


def test_a_shard_number_past_the_fleet_is_refused_by_run(tmp_path: Path) -> None:
    path = write(tmp_path, site(meters(["A"])))
    done = subprocess.run(
        [sys.executable, "-m", "monitord", "run", str(path), "--shard", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--shard: must be 0..2 (fleet.shards), got 3" in done.stderr


# -- the fact codec ------------------------------------------------------------------------------

FACT = Fact(
    "F",
    1,
    offline=True,
    quiet=True,
    last_good=1000.5,
    stale_after=3.0,
    poll=1.0,
    fault_since=1001.0,
    causes=("power.outage",),
    ticket="WO-1",
)


def test_a_fact_survives_the_wire() -> None:
    assert Fact.decode(FACT.encode()) == FACT
    quiet = Fact("D", 2, offline=False, quiet=False, last_good=5.0, stale_after=30.0, poll=10.0)
    assert Fact.decode(quiet.encode()) == quiet


@pytest.mark.parametrize(
    "change",
    [
        {"offline": 1},  # a number is not a flag
        {"shard": True},  # nor a flag a number
        {"last_good": "1000"},
        {"poll": -1},
        {"causes": "power.outage"},
        {"causes": [1]},
        {"ticket": 7},
        {"fault_since": True},
    ],
)
def test_a_payload_that_is_not_a_fact_is_refused(change: dict[str, object]) -> None:
    doc = json.loads(FACT.encode()) | change
    with pytest.raises(BadFact):
        Fact.decode(json.dumps(doc).encode())


@pytest.mark.parametrize("payload", [b"", b"\xff", b"[]", b"{}", b'{"asset": "F"}', b'{"last_good": NaN}'])
def test_garbage_is_refused(payload: bytes) -> None:
    with pytest.raises(BadFact):
        Fact.decode(payload)


def test_nan_times_are_refused() -> None:
    doc = json.loads(FACT.encode()) | {"last_good": math.nan}
    with pytest.raises(BadFact):
        Fact.decode(json.dumps(doc).encode())


# -- a shard's decisions when a supply is on another shard (manual clock) ------------------------

LIFTS = ["L0", "L1", "L2", "L3"]


def shard_2(timeline: Callable[..., Timeline]) -> tuple[Timeline, list[tuple[str, str]]]:
    """Shard 2 of a campus whose feeder F is on shard 1 and whose four lifts are on shard 2; the lifts
    report until 10 s, L0 keeps reporting a trapped passenger; and what shard 2 tells F's owner."""
    text = site(meters(["F"], port=1700) + lifts(LIFTS, "F", 1701), pin="F: 1, L0: 2")
    tl = timeline(text, shard=2)
    told: list[tuple[str, str]] = []
    tl.core.pipeline.remote_explained.append(lambda ev, fact: told.append((ev.asset, str(fact.ticket))))
    for t in range(0, 80):
        for a in LIFTS if t < 10 else ["L0"]:
            tl.at(t).push(a, trapped=1.0 if a == "L0" and t >= 9 else 0.0)
    return tl, told


def owner_says(tl: Timeline, t: float, **state: object) -> None:
    tl.run_until(t)
    fact = Fact(
        "F",
        1,
        **{
            "offline": False,
            "quiet": False,
            "last_good": tl.start + 9.5,
            "stale_after": 3.0,
            "poll": 1.0,
            **state,
        },
    )  # type: ignore[arg-type]
    tl.core.pipeline.remote["F"] = fact


def test_dependants_of_a_dark_supply_on_another_shard_are_explained_by_its_ticket_there(
    timeline: Callable[..., Timeline],
) -> None:
    tl, told = shard_2(timeline)
    owner_says(tl, 0)
    owner_says(tl, 11.1, quiet=True)
    owner_says(tl, 12.6, quiet=True, offline=True)
    # The trapped passenger (from 9 s, for 2 s) is never explained away: its own P1 ticket, at once.
    # The lifts are offline after 13 s; their alerts wait while F's owner has not decided.
    tl.expect_tickets(between=(0, 10.9))
    tl.expect_tickets(between=(11, 11), opened=[("lift.trapped", "L0")])
    tl.expect_tickets(between=(11.01, 15.9))
    owner_says(tl, 16, quiet=True, offline=True, ticket="WO-20261201-0001")
    tl.expect_nothing(until=60)
    assert sorted(told) == [
        ("L1", "WO-20261201-0001"),
        ("L2", "WO-20261201-0001"),
        ("L3", "WO-20261201-0001"),
    ]
    assert [(t.rule, t.asset) for t in tl.core.desk.tickets.values()] == [("lift.trapped", "L0")]


def test_a_remote_supply_that_never_gets_a_ticket_does_not_hide_its_dependants(
    timeline: Callable[..., Timeline],
) -> None:
    tl, told = shard_2(timeline)
    owner_says(tl, 0)
    owner_says(tl, 12.6, quiet=True, offline=True)  # offline, but its owner opens no ticket for it

    def tickets() -> list[tuple[str, str]]:
        return [(t.rule, t.asset) for t in tl.core.desk.tickets.values()]

    tl.run_until(42.9)
    assert tickets() == [("lift.trapped", "L0")], "the lifts' silences wait for F's owner"
    # The wait is bounded (30 s from the alert): then each lift's silence is a ticket of its own.
    tl.run_until(43.5)
    assert tickets() == [("lift.trapped", "L0"), *(("comms.offline", a) for a in LIFTS[1:])]
    assert told == []


def test_the_supplys_shard_judges_it_dark_by_remote_facts_and_notes_what_was_explained_elsewhere(
    timeline: Callable[..., Timeline],
) -> None:
    text = site(meters(["F"], port=1700) + lifts(LIFTS, "F", 1701), pin="F: 1, L0: 2")
    tl = timeline(text, shard=1)
    plan = ShardPlan.of(load_config(write(tmp := tl.folder, text, "whole.yaml")))
    sent: list[Fact] = []
    facts = ShardFacts(tl.core.pipeline, 1, plan.owner, dict.fromkeys(plan.owner, 1.0), send=sent.append)
    assert (facts.exported, facts.imported) == ({"F"}, set(LIFTS))
    assert tmp.is_dir()

    def lifts_say(t: float, **state: object) -> None:
        tl.run_until(t)
        for a in LIFTS:
            base = {
                "offline": False,
                "quiet": False,
                "last_good": tl.start + 9.5,
                "stale_after": 3.0,
                "poll": 1.0,
            }
            assert facts.received(Fact(a, 2, **{**base, **state}))  # type: ignore[arg-type]

    for t in range(0, 10):
        tl.at(t).push("F", voltage=220.0)
    lifts_say(0)
    tl.expect_nothing(until=11)
    lifts_say(11.5, quiet=True)
    lifts_say(12.6, quiet=True, offline=True)
    # F is offline after 13 s: with most of its dependants (all four, on shard 2) down with it, its
    # shard opens the one supply ticket, and says so in F's fact.
    got = tl.expect_tickets(
        between=(12.7, 13.5),
        opened=[("topology.supply_dark", "F")],
        explained=[("topology.supply_dark", "F")],
    )
    ticket = tl.core.desk.tickets[got[0].ticket]
    assert ticket.summary.startswith("F: supply lost or supply meter dark — 4 of 4 silent")
    assert sent[-1].ticket == ticket.id and sent[-1].offline
    # Shard 2 explained the lifts' silences by it: the notes land on the ticket.
    for a in LIFTS[1:]:
        ev = AlertEvent(tl.clock.now(), "comms.offline", a, "firing", "major", tl.start + 13.0, f"{a} silent")
        assert facts.explained_here("F", ev)
    assert not facts.explained_here("L1", ev), "only about a supply of this shard"
    tl.expect_tickets(between=(13.51, 15), explained=[("topology.supply_dark", "F")] * 3)
    assert sorted(n.split(":")[0] for n in ticket.explained) == ["F", "L1", "L2", "L3"]
    steady = len(sent)
    tl.expect_nothing(until=40)
    assert list(tl.core.desk.tickets) == [ticket.id]
    assert len(sent) == steady, "nothing moved: nothing sent"
    # A person resolves the ticket between two evaluations: F's fact says so at the next one.
    tl.act(40.5, ticket.id, "resolve", actor="王师傅")
    tl.run_until(41.5)
    assert len(sent) == steady + 1 and sent[-1].ticket is None and sent[-1].offline
