"""Rule expressions, quality gating and the alert lifecycle: timelines on the manual clock."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from monitord.config.site import coverage
from monitord.core.model import Quality
from monitord.rules.expr import ExpressionError, compile_expression
from tests.support import Timeline, pump_site

POINTS = ("running", "suction_pressure")

DRY = """
  - id: pump.dry
    applies_to: {type: pump}
    when: "running == 1 and suction_pressure < param.suction_min"
    for: %(for)s
    clear: "suction_pressure > param.suction_min * 1.2"
    clear_for: %(clear_for)s
"""
OFFLINE = """
  - id: comms.offline
    applies_to: {type: pump}
    when: offline
"""


def site(rules: str, n: int = 3) -> str:
    """Pumps P0..P{n-1} reading only running and suction_pressure, polled every second (stale after
    3 s); P2 trips at its own suction_min (0.06), the others at 0.05."""
    assets = "".join(
        f"  - {{id: P{i}, type: pump, profile: two-points, connection: {{mqtt: {{}}}},"
        f" params: {{suction_min: {0.06 if i == 2 else 0.05}}}}}\n"
        for i in range(n)
    )
    return pump_site(assets, rules)


def test_for_clear_and_clear_for_with_per_asset_params(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(site(DRY % {"for": "5s", "clear_for": "10s"}))
    for t in range(40):
        low = 5 <= t < 20
        tl.at(t).push("P0", running=1, suction_pressure=0.02 if low else 0.15)
        tl.at(t).push("P1", running=1, suction_pressure=0.15)
        tl.at(t).push("P2", running=1, suction_pressure=0.055)
    # P2 trips on its own param (0.06) at once: it is below it from the start and `for` is 5 s.
    tl.expect_nothing(until=4)
    tl.expect_alerts(between=(4.5, 5), firing=[("pump.dry", "P2")])
    # P0 pending at 5, firing at 10; clear holds from 20, resolved at 30.
    tl.expect_nothing(until=9)
    tl.expect_alerts(between=(9.5, 10), firing=[("pump.dry", "P0")])
    tl.expect_nothing(until=29)
    tl.expect_alerts(between=(29.5, 30), resolved=[("pump.dry", "P0")])
    tl.expect_nothing(until=39)
    assert [(s.t, s.asset, s.what) for s in tl.alerts()] == [
        (5, "P2", "firing"),
        (10, "P0", "firing"),
        (30, "P0", "resolved"),
    ]
    assert tl.firing() == {("pump.dry", "P2")}


def test_hovering_around_the_threshold_opens_one_alert_not_many(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(site(DRY % {"for": "2s", "clear_for": "5s"}, n=1))
    for t in range(60):
        suction = 0.045 if t % 2 else 0.055  # hovers across 0.05 but never above 0.06 (clear level)
        if t < 5:
            suction = 0.04
        tl.at(t).push("P0", running=1, suction_pressure=suction)
    tl.expect_nothing(until=1)
    tl.expect_alerts(between=(1.5, 2), firing=[("pump.dry", "P0")])
    tl.expect_nothing(until=59)
    assert [(s.asset, s.what) for s in tl.alerts()] == [("P0", "firing")]


def test_bad_or_stale_data_neither_raises_nor_clears(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(site(DRY % {"for": "0s", "clear_for": "0s"}, n=1))
    tl.at(0).push("P0", Quality.COMM_ERROR, running=1, suction_pressure=0.02)
    tl.at(1).push("P0", running=1, suction_pressure=0.02)
    tl.at(12).push("P0", running=1, suction_pressure=0.2)
    tl.expect_nothing(until=0.5)  # a failed read never fires a process rule
    tl.expect_alerts(between=(0.5, 1), firing=[("pump.dry", "P0")])
    # nothing new for longer than stale_after (3 s), evaluated all along: the old value must not clear it
    tl.expect_nothing(until=11.9)
    assert tl.firing() == {("pump.dry", "P0")}
    tl.expect_alerts(between=(11.9, 12), resolved=[("pump.dry", "P0")])


def test_offline_comes_from_silence_not_from_one_lost_reply(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(site(OFFLINE, n=2))
    tl.at(0).push("P0", running=1, suction_pressure=0.1).push("P1", running=1, suction_pressure=0.1)
    tl.at(2).push("P0", running=1, suction_pressure=0.1)
    tl.expect_nothing(until=3)  # P1 silent for 3 s: not yet more than stale_after (3 s)
    [offline] = tl.expect_alerts(between=(3, 4), firing=[("comms.offline", "P1")])
    assert offline.t > 3, "offline only once silent for longer than 3 s"
    tl.expect_nothing(until=4.4)  # P0 went quiet at 2 s: not yet offline either


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("running == )", "syntax error: unmatched ')'", 12),
        ("running >> 2", "operator RShift not allowed", 1),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("running.__class__", "only param.<name> attributes are allowed", 1),
        ("[1, 2]", "List is not allowed in a rule expression", 1),
        ("running == 1 and suction < 5m", "unknown point 'suction' (did you mean 'suction_pressure'?)", 18),
        ("lambda: 1", "Lambda is not allowed in a rule expression", 1),
    ],
)
def test_bad_expressions_say_what_and_where(text: str, message: str, column: int) -> None:
    with pytest.raises(ExpressionError) as err:
        compile_expression(text, known_points=set(POINTS))
    assert str(err.value) == message
    assert err.value.column == column


def test_durations_and_functions_compile_to_numpy() -> None:
    expr = compile_expression("between(x, 1, 2m) and abs(-y) > max(1, 2) and not z")

    class Ctx:
        def column(self, p: str) -> np.ndarray:
            return {
                "x": np.array([0.5, 60.0, 119.0]),
                "y": np.array([3.0, 3.0, 1.0]),
                "z": np.array([0.0, 0.0, 0.0]),
            }[p]

    result = expr.fn(Ctx())  # type: ignore[arg-type]
    assert result.tolist() == [False, True, False]
    assert expr.points == {"x", "y", "z"}


CODES_SITE = """\
site: {id: lifts}
mqtt: {url: 'mqtt://127.0.0.1:1'}
poll: 1s
profiles:
  - include: profiles/elevator-gbt24476.yaml
  - profile: box-codes-only          # an IoT box that reports its verdicts, not the car's signals
    asset_type: elevator
    mqtt: {topic: '{site}/{asset}'}
    points: {run_status: {}, door: {}, fault_code: {}, speed: {}}
assets:
  - {id: FULL, type: elevator, profile: elevator-gbt24476, connection: {mqtt: {}}}
  - {id: BOX, type: elevator, profile: box-codes-only, connection: {mqtt: {}}}
rules:
  - include: rules/packs/elevator.yaml
"""
FULL_NORMAL = dict(
    run_status=0, direction=0, leveling=0, door=0, occupancy=0, power_source=0, inspection=0,
    safety_circuit=1, floor=3, speed=0.0, fault_code=0, heartbeat=0, upper_limit=0, lower_limit=0,
    door_lock_circuit=1, door_command=0, landing_button_held=0,
)  # fmt: skip


def test_a_box_that_reports_only_fault_codes_is_judged_on_its_codes(
    timeline: Callable[..., Timeline],
) -> None:
    """GB/T 24476 code 8 from a box without occupancy or levelling signals raises the entrapment
    rule itself (the signal alternative is dropped for that asset, not the whole rule); a box that
    reports both raises it once, whichever way it knows; neither is raised by the other's data."""
    tl = timeline(CODES_SITE)
    for t in range(80):
        trapped = 10 <= t < 60
        code = 8 if trapped else 0
        tl.at(t).push("BOX", run_status=1 if trapped else 0, door=0, fault_code=code, speed=0.0)
        full = {**FULL_NORMAL, "heartbeat": t, "fault_code": code, "run_status": 3 if trapped else 0}
        full |= {"occupancy": 1, "leveling": 1} if trapped else {}
        tl.at(t).push("FULL", **full)
    tl.expect_nothing(until=39.5)  # `for: 30s` still holding
    entrapment = "elevator.entrapment_between_floors"
    tl.expect_alerts(between=(39.5, 41), firing=[(entrapment, "BOX"), (entrapment, "FULL")])
    tl.expect_alerts(between=(41, 75), resolved=[(entrapment, "BOX"), (entrapment, "FULL")])
    assert tl.firing() == set()
    # Every code rule is fed by the box's fault code; only the heartbeat check is not.
    gaps = [(g.asset, g.rule, g.missing) for g in coverage(tl.config)]
    assert gaps == [("BOX", "elevator.heartbeat_missing", ("heartbeat",))]
