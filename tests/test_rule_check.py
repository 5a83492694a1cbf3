"""Rules fail at check time, not run time; every documented function runs; counting is exact at its limit.

Check-time trial runs and coverage (monitord/config/site.py), the run-time guard in the rule engine
(``monitord.rule_error``), and the pump short-cycling acceptance on a recorded day replayed at 1 s
and 5 s steps (real SQLite store, the daemon's own core).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitord.config.site import CONFIG_DIR, coverage, load_config
from monitord.core.errors import ConfigError
from monitord.core.model import Quality, SampleBatch
from monitord.rules.spec import RuleSpec
from monitord.store.sqlite import SqliteStore
from monitord.tools.cli import main
from monitord.tools.replay import replay
from tests.support.timeline import Timeline

PROFILES = CONFIG_DIR / "profiles"

#: One rule per function of the README's rule language, each made to fire by the pushes below.
FUNCTIONS = {
    "count_true": "count_true(running == 1, 1m) >= 3",
    # estimates judge only a window watched whole: these windows are short enough for the pushes below
    "rate": "rate(starts, 10s) > 0.5",
    "zscore": "zscore(flow, 10s) > 2",
    "min_over": "min_over(flow, 1m) >= 10",
    "max_over": "max_over(flow, 1m) >= 100",
    "avg_over": "avg_over(flow, 10s) > 20",
    "stddev_over": "stddev_over(flow, 10s) > 5",
    "delta": "delta(starts, 1m) >= 3",
    "changes": "changes(running, 1m) >= 2",
    "increase": "increase(starts, 1m) >= 3",
    "rises": "rises(running, 1m) >= 1",
    "age": "age(flow) < 5",
    "has": "has(starts)",
    "abs": "abs(flow - 200) > 50",
    "min": "min(flow, 200) >= 10",
    "max": "max(flow, 0) >= 10",
    "between": "between(flow, 1, 1000)",
    "imbalance": "imbalance(flow, flow * 2, flow * 3) > 0.4",
    "time_of_day": "time_of_day() >= 0",
    "in_hours": 'in_hours("00:00-24:00")',
    "online": "online",
}


def site(rules: dict[str, str], extra: str = "") -> str:
    lines = [
        f"  - id: fn.{name}\n    applies_to: {{type: pump}}\n    when: '{expr}'\n    summary: {name}"
        for name, expr in rules.items()
    ]
    return (
        "site: {id: fn}\n"
        f"profiles: [{{include: {PROFILES}/pump-set.yaml}}]\n"
        "assets:\n"
        "  - {id: P1, type: pump, profile: pump-set, connection: {modbus: {host: 127.0.0.1, port: 1502}}}\n"
        "rules:\n" + "\n".join(lines) + "\n" + extra
    )


def test_every_documented_function_passes_check_and_the_daemon_core_evaluates_it(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    documented = {n for n in FUNCTIONS if f"`{n}(" in readme or f"`{n}`" in readme}
    assert documented == set(FUNCTIONS), "every function the README lists has a rule here, and no more"
    tl = Timeline(site(FUNCTIONS), tmp_path)
    flows = [50, 50, 50, 50, 50, 50, 50, 50, 10, 300]
    for t, flow in enumerate(flows):
        tl.at(t).push("P1", running=t % 2, starts=t, flow=flow)
    tl.run_until(len(flows) + 2)  # the 10 s windows are watched whole only after the last push
    fired = {s.rule for s in tl.alerts() if s.what == "firing"}
    assert fired == {f"fn.{n}" for n in FUNCTIONS}
    tl.close()


def test_a_rule_that_would_raise_is_a_check_error_with_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        site({"ok": "count_true(running == 1, 1m) > 3", "broken": "(running == 1) - (flow > 1) > 0"})
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    [line] = err.value.problems
    assert line.startswith(f"{path}:12 rules[1].when: fails when evaluated on pump assets: TypeError")
    assert main(["check", str(path)]) == 2


def test_a_rule_raising_at_run_time_is_disabled_and_raises_a_rule_error_ticket(tmp_path: Path) -> None:
    base = load_config(_write(tmp_path, site({"ok": "flow > 100"})))
    broken = RuleSpec.model_validate(
        {"id": "fn.broken", "applies_to": {"type": "pump"}, "when": "(running == 1) - (flow > 1) > 0"}
    )
    # Past the check on purpose: the run-time guard is what is under test.
    tl = Timeline(base.model_copy(update={"rules": [*base.rules, broken]}), tmp_path)
    tl.at(0).push("P1", running=1, flow=10)
    tl.at(2).push("P1", running=1, flow=500)
    tl.expect_alerts(between=(0, 1), firing=[("monitord.rule_error", "P1")])
    tl.expect_tickets(between=(0, 1), opened=[("monitord.rule_error", "P1")])
    tl.expect_alerts(between=(1.5, 3), firing=[("fn.ok", "P1")])  # the other rules keep running
    summary = tl.core.pipeline.engine.errors["pump"].spec.summary
    assert "fn.broken (TypeError" in summary
    tl.expect_nothing(until=30)  # disabled: it raises no second time, and the error alert stays
    tl.close()


def _write(folder: Path, text: str) -> Path:
    path = folder / "site.yaml"
    path.write_text(text)
    return path


BARE = (
    "{profile: bare-pump, asset_type: pump, points: {running: {address: 0, type: uint16}},"
    " modbus: {defaults: {kind: holding}}}"
)
P2 = (
    "  - {id: P2, type: pump, profile: bare-pump,"
    " connection: {modbus: {host: 127.0.0.1, port: 1502, unit: 2}}}\n"
)


def test_coverage_names_the_rules_an_asset_profile_cannot_feed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = site({"fc": "vfd_fault_code != 0"})
    text = text.replace("pump-set.yaml}]", f"pump-set.yaml}}, {BARE}]").replace("rules:\n", P2 + "rules:\n")
    config = load_config(_write(tmp_path, text))
    assert [(g.asset, g.rule, g.missing) for g in coverage(config)] == [("P2", "fn.fc", ("vfd_fault_code",))]
    assert main(["rules", "coverage", str(tmp_path / "site.yaml")]) == 0
    out = capsys.readouterr().out
    assert "P1: 1 of 1 rules evaluated" in out and "P2: 0 of 1 rules evaluated" in out
    assert "not evaluated: fn.fc (lacks vfd_fault_code)" in out


PUMP_SITE = f"""
site: {{id: day}}
profiles: [{{include: {PROFILES}/pump-set.yaml}}]
assets:
  - {{id: P1, type: pump, profile: pump-set, connection: {{modbus: {{host: 127.0.0.1, port: 1502}}}}}}
  - {{id: P2, type: pump, profile: pump-set,
     connection: {{modbus: {{host: 127.0.0.1, port: 1502, unit: 2}}}}}}
rules: [{{include: rules/packs/pump.yaml}}]
"""
HOURS = 5


@pytest.fixture(scope="module")
def pump_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """5 h at 1 s: P1 starts 10 times an hour from 0:30 to 2:30 (off 60 s before each start), P2 starts
    exactly 4 times an hour (the limit) throughout; both otherwise run with flow and suction."""
    folder = tmp_path_factory.mktemp("day")
    config_path = folder / "site.yaml"
    config_path.write_text(PUMP_SITE)
    store = SqliteStore(folder / "day.db", flush_interval=0.2)
    start = 1_795_000_000.0
    names = ("running", "starts", "flow", "suction_pressure", "discharge_pressure", "supply_voltage")
    good = np.zeros(len(names), dtype=np.int8) + int(Quality.GOOD)
    p1_starts = [1800 + 360 * k for k in range(1, 21)]
    p2_starts = [900 * k for k in range(1, HOURS * 4 + 1)]
    counts = {"P1": 0, "P2": 0}
    batch = []
    for t in range(HOURS * 3600):
        for asset, starts in (("P1", p1_starts), ("P2", p2_starts)):
            if t in starts:
                counts[asset] += 1
            running = 0 if any(s - 60 <= t < s for s in starts) else 1
            values = np.array([running, counts[asset], 20.0 * running, 0.15, 0.6, 380.0])
            batch.append(SampleBatch(start + t, asset, names, values, good))
    store.write_samples(batch)  # 36,000 batches: one write, the store frames them per flush
    store.flush(timeout=60)
    store.close()
    return config_path, folder / "day.db"


@pytest.mark.parametrize("step", [1.0, 5.0])
def test_a_recorded_day_of_short_cycling_is_one_ticket_and_the_limit_none(
    pump_day: tuple[Path, Path], step: float
) -> None:
    config_path, db = pump_day
    result = replay(load_config(config_path), SqliteStore(db, writer=False).frames(), step=step)
    tickets = [(t.event, t.rule, t.asset) for t in result.tickets if "short_cycling" in t.rule]
    assert tickets.count(("opened", "pump.short_cycling", "P1")) == 1
    assert [e for e in tickets if e[2] == "P2"] == [], "exactly at the limit: nothing"
    assert not any(e[0] == "reopened" for e in tickets)
    fired = [a for a in result.alerts if a.rule.startswith("pump.short_cycling") and a.state == "firing"]
    assert [(a.rule, a.asset) for a in fired] == [("pump.short_cycling", "P1")]
