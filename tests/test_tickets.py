"""Tickets: one per incident, re-fire appends, restart rebuilds without duplicates."""

from __future__ import annotations

from pathlib import Path

from monitord.alerting.tracker import AlertEvent
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketDesk, TicketPolicyView

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
