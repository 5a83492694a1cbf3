"""Replay, compare, CSV round trip and explain, on recorded data of the demo site."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, load_config, load_rules
from monitord.core.units import counted
from monitord.rules.engine import matches
from monitord.simulators.record import record
from monitord.simulators.scenario import Scenario, Step
from monitord.store.samples_csv import read_csv, write_csv
from monitord.store.sqlite import SqliteStore
from monitord.tools.explain import explain, horizon
from monitord.tools.replay import compare, replay, source_of

START = 1_795_000_000.0  # a fixed afternoon
SITE = CONFIG_DIR / "sites" / "demo.yaml"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten minutes of the demo site at 1 s: a dry run from 2:00 to 4:00, an AHU filter clogging at 6:00."""
    path = tmp_path_factory.mktemp("rec") / "store.db"
    config = load_config(SITE)
    scenario = Scenario(
        scenario="t",
        timeline=[
            Step(at=120, asset="A-P1", fault="dry_run"),
            Step(at=240, asset="A-P1", clear="dry_run"),
            Step(at=360, asset="A-AHU1", fault="filter_clogged"),
        ],
    )
    store = SqliteStore(path, flush_interval=0.2)
    batch = []
    for b in record(config, START, 600, 1.0, scenario):
        batch.append(b)
        if len(batch) >= 1000:
            store.write_samples(batch)
            batch = []
    store.write_samples(batch)
    store.flush(timeout=60)
    store.close()
    return path


def test_replay_from_the_store_opens_and_resolves_the_recorded_incidents(recorded: Path) -> None:
    config = load_config(SITE)
    source, total = source_of(recorded)
    result = replay(config, source)
    assert result.batches == total == 600 * len(config.assets)
    firing = sorted((a.rule, a.asset) for a in result.alerts if a.state == "firing")
    assert ("pump.dry_run", "A-P1") in firing
    assert ("hvac.filter_dp_high", "A-AHU1") in firing
    dry = [a for a in result.alerts if a.rule == "pump.dry_run"]
    assert [a.state for a in dry] == ["firing", "resolved"]
    assert 120 + 5 <= dry[0].ts - START <= 120 + 10  # `for: 5s` after suction falls below 0.05 MPa
    opened = [t for t in result.tickets if t.event == "opened"]
    assert {(t.rule, t.asset) for t in opened} >= {
        ("pump.dry_run", "A-P1"),
        ("hvac.filter_dp_high", "A-AHU1"),
    }
    assert not [a for a in result.alerts if a.rule == "comms.device_offline"], "recorded data has no gaps"


def test_replay_in_coarse_steps_takes_the_end_of_data_for_the_end_not_for_silence(recorded: Path) -> None:
    """`replay --step 5s` fired device_offline for every asset after the recording ended, and said
    "0.00 days" and "1 alerts"."""
    args = ["replay", "--config", str(SITE), "--from", str(recorded), "--step", "5s"]
    out = subprocess.run(
        [sys.executable, "-m", "monitord", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    head, *alerts = out.stdout.splitlines()
    assert "comms.device_offline" not in out.stdout, out.stdout
    span = r"\(4,800 batches, 9m59s of data from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST\)"
    assert re.search(span, head), head
    fired = [line.split()[4] for line in alerts]  # date, time, zone, severity, rule
    # the dry run (2:00-4:00) swings the discharge pressure inside the 5 min window it then fills
    assert sorted(fired) == ["hvac.filter_dp_high", "pump.dry_run", "pump.pressure_instability"], out.stdout
    assert re.search(r"— 3 alerts fired, \d+ tickets? opened$", head), head
    assert counted(1, "alert") == "1 alert" and counted(0, "ticket") == "0 tickets"
    # a recording that ends 4 s before the next 5 s step (every asset polled at 1 s: offline after 3 s)
    cut = [head for f in SqliteStore(recorded, writer=False).frames() if (head := f.split(START + 596.5)[0])]
    result = replay(load_config(SITE), cut, step=5.0)
    assert result.span[1] == START + 596
    assert not [a for a in result.alerts if a.rule == "comms.device_offline"], "the end is not silence"


def test_csv_export_import_round_trips(recorded: Path, tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    rows = write_csv(SqliteStore(recorded, writer=False).samples(), first)
    assert rows > 10_000
    store = SqliteStore(tmp_path / "back.db", flush_interval=0.2)
    store.write_samples([b for frame in read_csv(first) for b in frame.batches()])
    store.flush(timeout=60)
    store.close()
    second = tmp_path / "b.csv"
    assert write_csv(SqliteStore(tmp_path / "back.db", writer=False).samples(), second) == rows
    assert first.read_bytes() == second.read_bytes()
    config = load_config(SITE)
    from_csv = replay(config, read_csv(first))
    from_store = replay(config, SqliteStore(recorded, writer=False).frames())
    assert [(a.rule, a.asset, a.state, a.ts) for a in from_csv.alerts] == [
        (a.rule, a.asset, a.state, a.ts) for a in from_store.alerts
    ]


def test_compare_names_the_alerts_a_rule_change_adds(recorded: Path, tmp_path: Path) -> None:
    config = load_config(SITE)
    pack = (Path(__file__).resolve().parents[1] / "rules" / "packs" / "pump.yaml").read_text()
    stricter = tmp_path / "pump-strict.yaml"
    stricter.write_text(pack.replace("discharge_max: 1.0", "discharge_max: 0.5"))
    base = load_rules(Path(__file__).resolve().parents[1] / "rules" / "packs" / "pump.yaml", config)
    a = replay(config, SqliteStore(recorded, writer=False).frames(), rules=base)
    b = replay(config, SqliteStore(recorded, writer=False).frames(), rules=load_rules(stricter, config))
    diff = compare(a, b)
    assert not diff["alerts only in A"]
    assert {(r, asset) for r, asset, _ in diff["alerts only in B"]} == {
        ("pump.high_discharge_pressure", "A-P1"),
        ("pump.high_discharge_pressure", "A-P2"),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitord",
            "replay",
            "--config",
            str(SITE),
            "--from",
            str(recorded),
            "--rules",
            str(Path(__file__).resolve().parents[1] / "rules" / "packs" / "pump.yaml"),
            "--compare",
            str(stricter),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "alerts only in" in out.stdout and "pump.high_discharge_pressure" in out.stdout
    # times in the roster's zone
    assert "  2026-11-18 19:0" in out.stdout and " CST  pump.high_discharge_pressure" in out.stdout


def test_a_bad_rule_file_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        '- id: x.y\n  applies_to: {type: pump}\n  when: "suction < 1"\n  ticket: {skill: plumbing}\n'
    )
    from monitord.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_rules(bad, load_config(SITE))
    assert err.value.problems == [
        f"{bad}:3 rules[0].when: unknown point 'suction' (did you mean 'suction_pressure'?)"
        " at column 1 in 'suction < 1'"
    ]


def test_explain_shows_every_term(recorded: Path) -> None:
    config = load_config(SITE)
    store = SqliteStore(recorded, writer=False)
    lines = explain(config, "hvac.filter_dp_high", "A-AHU1", store.frames(since=START + 500))
    text = "\n".join(lines)
    assert "fan_status == 1 and filter_dp > param.filter_dp_max" in text
    assert "filter_dp > param.filter_dp_max" in text and "= true" in text
    assert "alert: firing" in text
    assert "filter_dp" in text and "good" in text


def test_explain_works_for_every_shipped_rule_on_the_demo_store(recorded: Path) -> None:
    """Every rule of the demo site, for every demo asset it applies to: each term has a line, durations
    such as ``5m`` included (they crashed with SyntaxError), and a rule of a bare name such as
    ``offline`` is explained, not reported as "no samples"."""
    config = load_config(SITE)
    assets = config.domain_assets()
    store = SqliteStore(recorded, writer=False)
    last = store.last_sample_time()
    assert last is not None
    explained = unused = 0
    for spec in config.rules:
        users = [a for a in assets.values() if matches(spec, a)]
        if not users:  # e.g. chillers: the demo building has none
            with pytest.raises(KeyError, match=f"rule '{spec.id}' does not apply to asset"):
                explain(config, spec.id, next(iter(assets)), store.frames(since=last - 5))
            unused += 1
            continue
        frames = store.frames(since=last - horizon(config, spec.id))
        lines = explain(config, spec.id, users[0].id, frames)
        assert lines[0].startswith(f"{spec.id} on {users[0].id} at the last sample"), lines
        assert f"    {spec.when:60} = " in "\n".join(lines), lines
        assert lines[-1].startswith("  alert: "), lines
        explained += 1
    assert explained + unused == len(config.rules) and explained >= 40, (explained, unused)
    offline = explain(config, "comms.device_offline", "A-P1", store.frames(since=last - 90))
    assert "    offline" in "\n".join(offline) and "= false" in offline[2], offline
    swings = explain(config, "pump.pressure_instability", "A-P1", store.frames(since=last - 360))
    assert any(line.strip().startswith("stddev_over(discharge_pressure, 5m)") for line in swings), swings


def test_explain_command_reads_the_store_it_is_given(recorded: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "monitord", "rules", "explain", "hvac.filter_dp_high"]
    out = subprocess.run(
        [*command, "--asset", "A-AHU1", "--config", str(SITE), "--store", str(recorded)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "hvac.filter_dp_high on A-AHU1" in out.stdout and "alert: firing" in out.stdout
    missing = subprocess.run(
        [*command, "--asset", "A-AHU1", "--config", str(SITE), "--store", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"monitord: no store at {tmp_path / 'none.db'}"
    assert not (tmp_path / "none.db").exists()
