"""`monitord demo`, run once as a new user would: exactly the tickets its scenario scripts, each
resolved, told to the right people, readable afterwards — and nothing written outside its folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, load_config
from monitord.simulators.scenario import load_scenario
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketDesk

SITE = CONFIG_DIR / "sites" / "demo.yaml"
SCENARIO = CONFIG_DIR / "scenarios" / "demo.yaml"
#: The incidents config/scenarios/demo.yaml scripts, as (asset, rule): one ticket each, no other.
SCRIPTED = {("A-P1", "pump.dry_run"), ("A-E2", "elevator.entrapment_between_floors")}


def cli(*args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "monitord", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One whole demo (the scenario's last step is at 58 s; the entrapment resolves ~5 s later),
    run from an empty folder with no --data: (that folder, what it printed)."""
    folder = tmp_path_factory.mktemp("demo")
    out = subprocess.run(
        [sys.executable, "-m", "monitord", "demo", "--duration", "80s"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return folder, out.stdout


def test_the_scenario_scripts_what_the_test_expects() -> None:
    steps = load_scenario(SCENARIO, load_config(SITE)).timeline
    assert {s.asset for s in steps if s.fault} == {asset for asset, _ in SCRIPTED}
    assert all(any(c.clear == s.fault and c.asset == s.asset for c in steps) for s in steps if s.fault)


def test_the_demo_opens_exactly_the_scripted_tickets_and_each_resolves(demo: tuple[Path, str]) -> None:
    folder, _ = demo
    store = SqliteStore(folder / "monitord-data" / "demo.db", writer=False)
    desk = TicketDesk()
    desk.restore(store.ticket_events())
    alerts = store.alert_events()
    store.close()
    tickets = sorted(desk.tickets.values(), key=lambda t: t.opened_at)
    assert {(t.asset, t.rule) for t in tickets} == SCRIPTED
    assert len(tickets) == len(SCRIPTED), [(t.id, t.asset, t.rule) for t in tickets]
    assert [t.state for t in tickets] == ["resolved"] * len(SCRIPTED)
    fired = sorted((a.asset, a.rule) for a in alerts if a.state == "firing")
    assert fired == sorted(SCRIPTED), "no alert nobody scripted, not even one that opened no ticket"


def test_the_console_tells_each_incident_and_its_recovery(demo: tuple[Path, str]) -> None:
    _, stdout = demo
    assert stdout.count("metrics: http://127.0.0.1:") == 1
    assert "SIMULATOR injects dry_run on A-P1" in stdout
    assert re.search(r"ALERT  FIRING   critical pump.dry_run .* \(since \d\d:\d\d:\d\d\)", stdout)
    # the on-call plumber is told, with the time in the site's zone (the roster's Asia/Shanghai)
    told = r"NOTIFY → Zhang \(plumber\): \[P1\] .* — since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CST\. Acknowledge"
    assert re.search(told, stdout), stdout
    assert "NOTIFY → Wang (elevator contractor): [P1]" in stdout
    resolved = [line for line in stdout.splitlines() if "ALERT  RESOLVED" in line]
    assert len(resolved) == 2 and all(" — recovered; now " in line for line in resolved), resolved
    assert "pump running dry" not in resolved[0]
    assert f"monitord tickets --config {SITE} --store monitord-data/demo.db list" in stdout


def test_the_demo_tickets_read_back_in_the_site_zone(demo: tuple[Path, str]) -> None:
    folder, _ = demo
    listing = cli("tickets", "--config", str(SITE), "--store", "monitord-data/demo.db", "list", cwd=folder)
    assert "pump.dry_run" not in listing  # the list shows summaries, not rule ids
    ticket = next(line.split()[0] for line in listing.splitlines() if " A-P1 " in line)
    row = rf"{ticket}  resolved +P1 plumbing +A-P1 +\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d CST  Zhang \(plumber\) "
    assert re.search(row, listing), listing
    store = ("--config", str(SITE), "--store", "monitord-data/demo.db")
    shown = cli("tickets", *store, "show", ticket, cwd=folder)
    assert re.search(r"  since: +\S+ \S+ CST\n", shown) and "  rule:      pump.dry_run" in shown
    assert re.search(r"resolved +monitord — recovered; now .*suction_pressure 0\.1", shown), shown


def test_the_demo_writes_only_into_its_data_folder(demo: tuple[Path, str]) -> None:
    folder, _ = demo
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert all(name.startswith("monitord-data/") for name in written), written
    assert "monitord-data/notifications.db" in written  # beside the demo's store, not elsewhere
