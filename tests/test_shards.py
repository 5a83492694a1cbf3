"""Sharded campus, the pure parts: the stable hash and its balance, lines kept whole, ``fleet.pin``
errors at file:line, ``monitord check``'s summary (docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

from monitord.config.shards import ShardPlan, stable_shard
from monitord.config.site import load_config
from monitord.daemon.app import with_gateways
from tests.support.configs import check, problems, write

SITE = """\
site: {{id: campus}}
mqtt: {{url: 'mqtt://127.0.0.1:1'}}
poll: 1s
fleet: {{mode: shard, shards: {shards}{pin}}}
profiles:
  - {{profile: meter, asset_type: power_meter, modbus: {{}}, points: {{voltage: {{address: 0}}}}}}
  - {{profile: lift, asset_type: elevator, modbus: {{}}, points: {{trapped: {{address: 0}}}}}}
rules:
  - {{id: comms.offline, applies_to: {{}}, when: offline, clear_for: 2s, ticket: {{priority: P2, skill: it}}}}
  - {{id: lift.trapped, applies_to: {{type: elevator}}, when: "trapped == 1", for: 2s, life_safety: true,
     severity: critical, ticket: {{priority: P1, skill: elevator}}}}
assets:
{assets}"""


def meters(ids: list[str], port: int = 1502) -> str:
    conn = "{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
    return "".join(
        f"  - {{id: {a}, type: power_meter, profile: meter,"
        f" connection: {conn.format(port=port, unit=i + 1)}}}\n"
        for i, a in enumerate(ids)
    )


def lifts(ids: list[str], supply: str, port: int) -> str:
    conn = "{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
    return "".join(
        f"  - {{id: {a}, type: elevator, profile: lift, depends_on: [{supply}],"
        f" connection: {conn.format(port=port, unit=i + 1)}}}\n"
        for i, a in enumerate(ids)
    )


def site(assets: str, shards: int = 3, pin: str = "") -> str:
    return SITE.format(assets=assets, shards=shards, pin=f", pin: {{{pin}}}" if pin else "")


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
