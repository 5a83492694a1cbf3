"""Every P1 rule in the packs can be produced by a simulator fault (no sockets: recorded + replayed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from monitord.config.site import CONFIG_DIR, load_config
from monitord.config.yamlio import load_yaml
from monitord.rules import PACKS_DIR
from monitord.simulators.record import record_frames
from monitord.simulators.scenario import Scenario, Step, load_scenario
from monitord.tools.replay import replay

SITE = CONFIG_DIR / "sites" / "demo.yaml"
# P1 rule → (asset of the demo site, simulator fault that produces it)
P1_FAULTS = {
    "elevator.overtravel_top": ("A-E1", "overtravel_top"),
    "elevator.overtravel_bottom": ("A-E1", "overtravel_bottom"),
    "elevator.overspeed": ("A-E1", "overspeed"),
    "elevator.moving_with_door_open": ("A-E1", "moving_door_open"),
    "elevator.entrapment_at_landing": ("A-E2", "entrapment_landing"),
    "elevator.entrapment_between_floors": ("A-E2", "entrapment"),
    "pump.dry_run": ("A-P1", "dry_run"),
    "pump.sump_high_level": ("A-P2", "sump_high"),
    "power.outage": ("A-PM-MAIN", "outage"),
    "power.residual_current": ("A-FM-1", "residual_leak"),
}
# P1 rules of equipment the demo building lacks → (asset of the plant-room site, simulator fault)
PLANT = CONFIG_DIR / "sites" / "plant-room.yaml"
PLANT_P1_FAULTS = {
    "ups.low_battery": ("B2-UPS1", "low_battery"),
    "ups.low_runtime": ("B2-UPS1", "low_battery"),
    "ups.battery_depleted": ("B2-UPS1", "battery_failed"),
    "ups.output_overload": ("B2-UPS1", "overload"),
}


def test_the_table_names_every_p1_rule_of_the_packs() -> None:
    p1 = {
        r["id"]
        for pack in PACKS_DIR.glob("*.yaml")
        for r in load_yaml(pack)
        if (r.get("ticket") or {}).get("priority") == "P1"
    }
    assert p1 == set(P1_FAULTS) | set(PLANT_P1_FAULTS)


@pytest.mark.parametrize("rule", sorted(P1_FAULTS) + sorted(PLANT_P1_FAULTS))
def test_simulator_fault_raises_its_p1_rule(rule: str) -> None:
    asset, fault = P1_FAULTS.get(rule) or PLANT_P1_FAULTS[rule]
    config = load_config(SITE if rule in P1_FAULTS else PLANT)
    scenario = Scenario(scenario=rule, timeline=[Step(at=10, asset=asset, fault=fault)])
    result = replay(config, record_frames(config, 1_795_000_000.0, 80, 1.0, scenario))
    fired = {(a.rule, a.asset) for a in result.alerts if a.state == "firing"}
    assert (rule, asset) in fired
    tickets = {(t.rule, t.asset, t.priority) for t in result.tickets if t.event == "opened"}
    assert (rule, asset, "P1") in tickets


def test_simulator_noise_is_the_same_in_every_process() -> None:
    """Noise is seeded from the asset id, not ``hash()``: a fault run reproduces in any process."""
    code = (
        "from monitord.simulators.models import PumpSet\n"
        "pump = PumpSet('A-P1')\n"
        "print([repr(pump.noise(1.0)) for _ in range(5)])\n"
    )
    outputs = set()
    for hash_seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        command = [sys.executable, "-c", code]
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        outputs.add(out.stdout)
    assert len(outputs) == 1, f"noise differs between processes: {outputs}"


def test_the_plant_room_scenario_tells_its_story() -> None:
    config = load_config(PLANT)
    scenario = load_scenario(CONFIG_DIR / "scenarios" / "plant-room.yaml", config)
    result = replay(config, record_frames(config, 1_795_000_000.0, 150, 1.0, scenario))
    fired = sorted({(a.rule, a.asset) for a in result.alerts if a.state == "firing"})
    assert fired == [
        ("hvac.chiller_discharge_temp", "B2-CH1"),
        ("ups.low_battery", "B2-UPS1"),
        ("ups.low_runtime", "B2-UPS1"),
        ("ups.on_battery", "B2-UPS1"),
    ]
    resolved = {(a.rule, a.asset) for a in result.alerts if a.state == "resolved"}
    assert resolved == set(fired), "mains back and the compressor cooled: every alert resolves"
