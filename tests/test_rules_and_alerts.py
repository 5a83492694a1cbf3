"""Rule expressions, quality gating and the alert lifecycle, on a manual clock."""

from __future__ import annotations

import numpy as np
import pytest

from monitord.alerting.tracker import AlertTracker
from monitord.core.assets import Asset
from monitord.core.clock import ManualClock
from monitord.core.model import Quality, SampleBatch
from monitord.ingest.state import AssetSlot, StateTable
from monitord.rules.engine import RuleEngine
from monitord.rules.expr import ExpressionError, compile_expression
from monitord.rules.spec import RuleSpec

POINTS = ("running", "suction_pressure")


def rig(spec: dict[str, object], n: int = 3) -> tuple[StateTable, RuleEngine, AlertTracker, ManualClock]:
    clock = ManualClock()
    state = StateTable([AssetSlot(f"P{i}", "pump", POINTS, 3.0) for i in range(n)], started=clock.now())
    rule = RuleSpec.model_validate({"applies_to": {"type": "pump"}, **spec})
    facts = [Asset(f"P{i}", "pump", params={"suction_min": 0.05 + 0.01 * (i == 2)}) for i in range(n)]
    return state, RuleEngine([rule], state, facts), AlertTracker(), clock


def feed(
    state: StateTable,
    clock: ManualClock,
    values: dict[str, tuple[float, float]],
    quality: Quality = Quality.GOOD,
) -> None:
    for asset, row in values.items():
        state.apply(
            SampleBatch(clock.now(), asset, POINTS, np.array(row), np.full(2, int(quality), dtype=np.int8))
        )


def step(engine: RuleEngine, tracker: AlertTracker, clock: ManualClock) -> list[tuple[str, str]]:
    out = []
    for res in engine.evaluate(clock.now()):
        s = res.rule.spec
        for tr in tracker.update(
            res.rule.key, res.fire, res.clear, hold_for=s.for_, clear_for=s.clear_for, now=clock.now()
        ):
            out.append((res.rule.assets[tr.index], tr.state))
    return out


DRY = {
    "id": "pump.dry",
    "when": "running == 1 and suction_pressure < param.suction_min",
    "for": "5s",
    "clear": "suction_pressure > param.suction_min * 1.2",
    "clear_for": "10s",
}


def test_for_clear_and_clear_for_with_per_asset_params() -> None:
    state, engine, tracker, clock = rig(DRY)
    events = []
    for t in range(40):
        low = 5 <= t < 20
        feed(state, clock, {"P0": (1, 0.02 if low else 0.15), "P1": (1, 0.15), "P2": (1, 0.055)})
        events += [(t, *e) for e in step(engine, tracker, clock)]
        clock.advance(1)
    # P0 pending at 5, firing at 10; clear holds from 20, resolved at 30. P2 trips on its own param (0.06).
    assert events == [(5, "P2", "firing"), (10, "P0", "firing"), (30, "P0", "resolved")]


def test_hovering_around_the_threshold_opens_one_alert_not_many() -> None:
    state, engine, tracker, clock = rig({**DRY, "for": "2s", "clear_for": "5s"}, n=1)
    events = []
    for t in range(60):
        suction = 0.045 if t % 2 else 0.055  # hovers across 0.05 but never above 0.06 (clear level)
        if t < 5:
            suction = 0.04
        feed(state, clock, {"P0": (1, suction)})
        events += step(engine, tracker, clock)
        clock.advance(1)
    assert events == [("P0", "firing")]


def test_bad_or_stale_data_neither_raises_nor_clears() -> None:
    state, engine, tracker, clock = rig({**DRY, "for": "0s", "clear_for": "0s"}, n=1)
    feed(state, clock, {"P0": (1, 0.02)}, quality=Quality.COMM_ERROR)
    assert step(engine, tracker, clock) == []  # a failed read never fires a process rule
    feed(state, clock, {"P0": (1, 0.02)})
    assert step(engine, tracker, clock) == [("P0", "firing")]
    clock.advance(10)  # nothing new for longer than stale_after: the old value must not clear it either
    assert step(engine, tracker, clock) == []
    feed(state, clock, {"P0": (1, 0.2)})
    assert step(engine, tracker, clock) == [("P0", "resolved")]


def test_offline_comes_from_silence_not_from_one_lost_reply() -> None:
    state, engine, tracker, clock = rig({"id": "comms.offline", "when": "offline"}, n=2)
    feed(state, clock, {"P0": (1, 0.1), "P1": (1, 0.1)})
    assert step(engine, tracker, clock) == []
    clock.advance(2)
    feed(state, clock, {"P0": (1, 0.1)})
    assert step(engine, tracker, clock) == []
    clock.advance(2)  # P1 silent for 4 s > 3 s
    assert step(engine, tracker, clock) == [("P1", "firing")]


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("running == )", "syntax error: unmatched ')'", 12),
        ("running >> 2", "operator RShift not allowed", 1),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("running.__class__", "only param.<name> attributes are allowed", 1),
        ("[1, 2]", "List is not allowed in a rule expression", 1),
        ("running == 1 and suction < 5m", "unknown point 'suction'", 18),
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
