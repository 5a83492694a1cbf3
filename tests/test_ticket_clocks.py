"""SLA breaches, the reopen window, the automatic follow-up close and the KPI report (manual time)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from monitord.alerting.tracker import AlertEvent
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketDesk, TicketPolicyView
from monitord.tickets.sla import DEFAULT_SLA, Sla
from monitord.tools.kpi import Clock, render, report
from tests.support import Timeline
from tests.support.configs import ONE_PUMP

POLICY = TicketPolicyView("P1", "plumbing", auto_resolve=True)
T0 = 1_795_000_000.0


def sla(priority: str) -> Sla:
    return DEFAULT_SLA[priority]  # P1: ack 5 min, start 15 min, resolve 2 h


def alert(ts: float, state: str, asset: str = "A-P1") -> AlertEvent:
    return AlertEvent(ts, "pump.dry_run", asset, state, "critical", ts - 5, "dry")  # type: ignore[arg-type]


SITE = ONE_PUMP
DRY = ("pump.dry_run", "A-P1")


def test_each_sla_clock_breaches_once(timeline: Callable[..., Timeline]) -> None:
    """P1: ack 5 min, start 15 min, resolve 2 h, checked by every evaluation of the daemon's loop."""
    tl = timeline(SITE)
    tl.at(0).push("A-P1", running=1, suction_pressure=0.02)  # then silence: stale data keeps it firing
    [opened] = tl.expect_tickets(between=(0, 0), opened=[DRY])
    tl.expect_nothing(until=300)
    tl.expect_tickets(between=(300.01, 301), breached=[(*DRY, "ack")])
    tl.expect_nothing(until=500)  # reported once
    tl.act(500, opened.ticket, "ack", actor="zhang")
    tl.expect_nothing(until=900)
    tl.expect_tickets(between=(900.01, 901), breached=[(*DRY, "start")])
    tl.act(950, opened.ticket, "start", actor="zhang")
    tl.expect_nothing(until=7200)
    tl.expect_tickets(between=(7200.01, 7201), breached=[(*DRY, "resolve")])
    tl.expect_nothing(until=7300)
    assert tl.core.desk.tickets[opened.ticket].breached == ["ack", "start", "resolve"]
    _alerts, stored = tl.stored()
    assert [(e.event, e.note) for e in stored if e.event in ("breached", "acknowledged", "started")] == [
        ("breached", "ack"),
        ("acknowledged", ""),
        ("breached", "start"),
        ("started", ""),
        ("breached", "resolve"),
    ]


def test_reopen_window_and_follow_up_close() -> None:
    desk = TicketDesk()
    desk.reopen_window = 3600
    [opened] = desk.on_alert(alert(T0, "firing"), POLICY, "B2")
    desk.on_alert(alert(T0 + 600, "resolved"), POLICY, "B2")
    [again] = desk.on_alert(alert(T0 + 1200, "firing"), POLICY, "B2")  # back within the hour
    # monitord resolved it: the same incident going in and out, a quiet recurrence (no new page)
    assert (again.event, again.ticket) == ("recurred", opened.ticket)
    assert desk.tickets[opened.ticket].repeats == 1 and desk.tickets[opened.ticket].flapping
    desk.act(opened.ticket, "resolve", actor="zhang", now=T0 + 1300, note="replaced the valve")
    [back] = desk.on_alert(alert(T0 + 1400, "firing"), POLICY, "B2")  # a person's fix did not hold: news
    assert (back.event, back.ticket) == ("reopened", opened.ticket)
    assert desk.tickets[opened.ticket].repeats == 2
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
    # b's ack ran out late; b's resolve clock (2 h) still runs: neither met nor missed
    assert r.sla[("P1", "plumbing")] == (2, Clock(met=1, missed=1), Clock(met=1, running=1))
    assert r.max_per_10min == 12 and r.flood_share == 0.5 and r.chattering == 1
    text = "\n".join(render(r))
    assert "MTTA (median): 6.0 min" in text and "flood time 50.0%" in text
    assert "ack  50.0%   resolve 100.0% (1 within SLA)" in text


def test_an_open_ticket_within_its_sla_is_not_counted_as_missed() -> None:
    """An open P3 still within its SLA showed "resolve 0.0 %"."""
    desk = TicketDesk()
    desk.on_alert(alert(T0, "firing"), TicketPolicyView("P3", "plumbing", auto_resolve=True), "B2")
    r = report(list(desk.tickets.values()), [], sla, now=T0 + 3600)
    [line] = [x for x in render(r) if x.startswith("  P3")]
    assert " ".join(line.split("tickets")[1].split()) == "ack - (1 within SLA) resolve - (1 within SLA)"
    late = report(list(desk.tickets.values()), [], sla, now=T0 + 4 * 86400)  # P3: ack 4 h, resolve 3 d
    assert late.sla[("P3", "plumbing")][1:] == (Clock(missed=1), Clock(missed=1))


def test_report_without_arguments_finds_the_demo_store(tmp_path: Path) -> None:
    """`monitord report` looked only for monitord-data/monitord.db; the demo writes demo.db."""
    command = [sys.executable, "-m", "monitord", "report"]
    none = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert none.returncode == 1
    assert none.stderr.strip() == (
        "monitord: no store at ./monitord-data/monitord.db or ./monitord-data/demo.db:"
        " give --store FILE or --config SITE.yaml"
    )
    assert not (tmp_path / "monitord-data").exists(), "a reader creates no store"
    (tmp_path / "monitord-data").mkdir()
    store = SqliteStore(tmp_path / "monitord-data" / "demo.db", flush_interval=0.05)
    store.write_tickets(TicketDesk().on_alert(alert(T0, "firing"), POLICY, "B2"))
    store.flush()
    store.close()
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("tickets: 1 ")
