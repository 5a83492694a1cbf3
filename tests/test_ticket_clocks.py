"""SLA breaches, the reopen window, the automatic follow-up close and the KPI report (manual time)."""

from __future__ import annotations

from monitord.alerting.tracker import AlertEvent
from monitord.tickets.desk import TicketDesk, TicketPolicyView
from monitord.tickets.sla import DEFAULT_SLA, Sla
from monitord.tools.kpi import render, report

POLICY = TicketPolicyView("P1", "plumbing", auto_resolve=True)
T0 = 1_795_000_000.0


def sla(priority: str) -> Sla:
    return DEFAULT_SLA[priority]  # P1: ack 5 min, start 15 min, resolve 2 h


def alert(ts: float, state: str, asset: str = "A-P1") -> AlertEvent:
    return AlertEvent(ts, "pump.dry_run", asset, state, "critical", ts - 5, "dry")  # type: ignore[arg-type]


def test_each_sla_clock_breaches_once() -> None:
    desk = TicketDesk()
    [opened] = desk.on_alert(alert(T0, "firing"), POLICY, "B2")
    assert desk.check_clocks(T0 + 299, sla, 86400) == []
    assert [e.note for e in desk.check_clocks(T0 + 301, sla, 86400)] == ["ack"]
    assert desk.check_clocks(T0 + 400, sla, 86400) == []  # reported once
    desk.act(opened.ticket, "ack", actor="zhang", now=T0 + 500)
    assert [e.note for e in desk.check_clocks(T0 + 901, sla, 86400)] == ["start"]
    desk.act(opened.ticket, "start", actor="zhang", now=T0 + 950)
    assert [e.note for e in desk.check_clocks(T0 + 7201, sla, 86400)] == ["resolve"]
    assert desk.tickets[opened.ticket].breached == ["ack", "start", "resolve"]


def test_reopen_window_and_follow_up_close() -> None:
    desk = TicketDesk()
    desk.reopen_window = 3600
    [opened] = desk.on_alert(alert(T0, "firing"), POLICY, "B2")
    desk.on_alert(alert(T0 + 600, "resolved"), POLICY, "B2")
    [again] = desk.on_alert(alert(T0 + 1200, "firing"), POLICY, "B2")  # back within the hour
    assert (again.event, again.ticket) == ("reopened", opened.ticket)
    assert desk.tickets[opened.ticket].repeats == 1
    desk.on_alert(alert(T0 + 1800, "resolved"), POLICY, "B2")
    [later] = desk.on_alert(alert(T0 + 1800 + 7200, "firing"), POLICY, "B2")  # long after: a new incident
    assert later.event == "opened" and later.ticket != opened.ticket
    desk.on_alert(alert(T0 + 10000, "resolved"), POLICY, "B2")
    closed = desk.check_clocks(T0 + 10000 + 86400, sla, 86400)
    assert {(e.ticket, e.event) for e in closed} == {(opened.ticket, "closed"), (later.ticket, "closed")}
    assert desk.tickets[opened.ticket].closed_at == T0 + 10000 + 86400
    assert desk.live == {}, "closed tickets leave the set the per-evaluation clocks scan"


def test_kpi_report_figures() -> None:
    desk = TicketDesk()
    a = desk.on_alert(alert(T0, "firing"), POLICY, "B2")[0].ticket
    desk.act(a, "ack", actor="x", now=T0 + 120)
    desk.act(a, "resolve", actor="x", now=T0 + 1800)
    b = desk.on_alert(alert(T0 + 10, "firing", asset="A-P2"), POLICY, "B2")[0].ticket
    desk.act(b, "ack", actor="x", now=T0 + 10 + 600)  # late: P1 ack SLA is 5 minutes
    alerts = [alert(T0 + i * 30, "firing", asset=f"X{i}") for i in range(12)]  # 12 in 6 minutes: a flood
    alerts += [AlertEvent(T0, "r", "A", "flapping", "minor", T0, "")]
    r = report(list(desk.tickets.values()), alerts, sla, now=T0 + 1200)
    assert (r.tickets, r.mtta, r.mttr) == (2, 360.0, 1800.0)
    assert r.sla[("P1", "plumbing")] == (2, 1, 1)
    assert r.max_per_10min == 12 and r.flood_share == 0.5 and r.chattering == 1
    assert r.follow_up == 0.0
    text = "\n".join(render(r))
    assert "MTTA (median): 6.0 min" in text and "flood time 50.0%" in text
