"""Tickets: one per incident, re-fire appends, restart rebuilds without duplicates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from monitord.alerting.tracker import AlertEvent
from monitord.daemon.web.tickets import ticket_json
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import Explained, TicketDesk, TicketPolicyView

POLICY = TicketPolicyView("P1", "plumbing", auto_resolve=True)
T0 = 1_763_800_000.0


def alert(ts: float, state: str, since: float = T0, asset: str = "A-P1") -> AlertEvent:
    return AlertEvent(ts, "pump.dry_run", asset, state, "critical", since, "running dry")  # type: ignore[arg-type]


def test_one_ticket_per_incident_refire_appends(tmp_path: Path) -> None:
    desk = TicketDesk()
    opened = desk.on_alert(alert(T0, "firing"), POLICY, "B2")
    again = desk.on_alert(alert(T0 + 60, "firing", since=T0 + 55), POLICY, "B2")  # re-fire while open
    other = desk.on_alert(alert(T0 + 61, "firing", asset="A-P2"), POLICY, "B2")
    assert [e.event for e in opened + again + other] == ["opened", "appended", "opened"]
    assert opened[0].ticket == again[0].ticket != other[0].ticket
    assert opened[0].ticket.startswith("WO-") and opened[0].ticket.endswith("-0001")
    resolved = desk.on_alert(alert(T0 + 120, "resolved"), POLICY, "B2")
    assert [e.event for e in resolved] == ["resolved"]
    assert desk.tickets[opened[0].ticket].state == "resolved"
    assert desk.tickets[opened[0].ticket].alert_count == 2
    assert desk.on_alert(alert(T0 + 130, "resolved"), POLICY, "B2") == []  # nothing open: nothing to do


def test_restore_from_store_rebuilds_state_and_numbering(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    desk = TicketDesk()
    events = desk.on_alert(alert(T0, "firing"), POLICY, "B2")
    events += desk.on_alert(alert(T0 + 5, "firing", asset="A-P2"), POLICY, "B2")
    store.write_tickets(events)
    store.write_tickets(events)  # written twice (retry): lands once
    store.flush()
    assert len(store.ticket_events()) == 2
    store.close()

    reopened = SqliteStore(tmp_path / "s.db")
    fresh = TicketDesk()
    fresh.restore(reopened.ticket_events())
    reopened.close()
    assert {t.id: t.state for t in fresh.tickets.values()} == {t.id: t.state for t in desk.tickets.values()}
    # the same alert firing again after the restart appends, and new numbers continue the day's sequence
    assert fresh.on_alert(alert(T0 + 9, "firing"), POLICY, "B2")[0].event == "appended"
    new = fresh.on_alert(alert(T0 + 10, "firing", asset="A-P3"), POLICY, "B2")[0]
    assert new.ticket.endswith("-0003")


def test_ids_carry_the_site_code_and_number_on_from_ids_of_before_codes() -> None:
    """Sites sharing one store never share an id: ``WO-<code>-YYYYMMDD-NNNN``. A desk upgraded from
    the single-site form keeps its restored ids and numbers the day on from them."""
    old = TicketDesk()
    before = old.on_alert(alert(T0, "firing"), POLICY, "B2")
    before += old.on_alert(alert(T0 + 1, "firing", asset="A-P2"), POLICY, "B2")
    assert re.fullmatch(r"WO-\d{8}-0002", before[-1].ticket)
    upgraded = TicketDesk("TA")
    upgraded.restore(before)
    assert set(upgraded.tickets) == {e.ticket for e in before}
    assert upgraded.on_alert(alert(T0 + 2, "firing"), POLICY, "B2")[0].event == "appended"
    new = upgraded.on_alert(alert(T0 + 3, "firing", asset="A-P3"), POLICY, "B2")[0].ticket
    assert re.fullmatch(r"WO-TA-\d{8}-0003", new), new
    again = TicketDesk("TA")
    again.restore(before + upgraded.tickets[new].events)
    assert again.on_alert(alert(T0 + 4, "firing", asset="A-P4"), POLICY, "B2")[0].ticket.endswith("-0004")
    other = TicketDesk("TB")
    assert other.on_alert(alert(T0, "firing"), POLICY, "B2")[0].ticket.startswith("WO-TB-")


def _run_cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "monitord", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_show_is_a_timeline_with_who_note_assignee_and_what_was_explained(tmp_path: Path) -> None:
    """`tickets show` once states the ticket, then who did what when with their note; an "explained"
    event names the dependant's asset, rule and since when — from the store, as the API serves it."""
    desk = TicketDesk()
    events = desk.on_alert(alert(T0, "firing", asset="A-PM-MAIN"), POLICY, "B1")
    root = desk.tickets[events[0].ticket]
    events.append(desk.act(root.id, "assign", actor="duty", now=T0 + 5, note="nearest", assignee="Zhang"))
    events.append(desk.act(root.id, "ack", actor="Zhang", now=T0 + 30, note="on my way, 10 min"))
    dependant = AlertEvent(T0 - 2, "comms.device_offline", "A-P2", "firing", "major", T0 - 9, "no reply")
    events.append(desk.explain(root, dependant))
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    store.write_tickets(events)
    store.flush()
    restored = TicketDesk()
    restored.restore(store.ticket_events())
    store.close()
    [x] = restored.tickets[root.id].explains
    assert x == Explained("A-P2", "comms.device_offline", T0 - 9, "no reply")
    assert ticket_json(restored.tickets[root.id])["explains"] == [
        {"asset": "A-P2", "rule": "comms.device_offline", "since": T0 - 9, "summary": "no reply"}
    ]
    assert events[-1].ts == root.opened_at, "never stamped before its ticket opened"

    shown = _run_cli("tickets", "--store", str(tmp_path / "s.db"), "show", root.id).splitlines()
    timeline = shown[shown.index("  timeline:") + 1 :]
    assert [line.split()[4] for line in timeline] == ["opened", "explained", "assigned", "acknowledged"]
    assert sum("running dry" in line for line in timeline) == 1, "the summary once, not on every line"
    absorbed = r"explained +monitord — A-P2 comms.device_offline since \S+ \S+ \S+: no reply$"
    assert re.search(absorbed, timeline[1]), timeline
    assert timeline[2].endswith("duty — to Zhang; note: nearest")
    assert timeline[3].endswith("Zhang — note: on my way, 10 min")
    assert "  assignee:  Zhang" in shown
    assert any(re.match(r"    A-P2 +comms.device_offline +since ", line) for line in shown), shown

    listing = _run_cli("tickets", "--store", str(tmp_path / "s.db"), "list").splitlines()
    header = ["ticket", "state", "pr", "category", "asset", "opened", "assignee", "summary"]
    assert listing[0].split() == header
    assert " Zhang " in listing[1] and listing[1].startswith(root.id)
