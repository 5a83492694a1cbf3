"""The duty desk (docs/desk.md): 报修 tickets people open, 回访 done for real, 投诉 and their KPIs.

Lifecycle tests run the daemon's core on the Timeline harness (manual clock, real SQLite store);
the end-to-end test runs the daemon against the simulated site and drives it with the CLI over
its HTTP API, a real webhook receiver standing in for the technician's phone.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import CONFIG_DIR, load_config
from monitord.daemon.frontdesk import FormError, FrontDesk, SameIncident, form_of
from monitord.people.console import ConsoleReporter
from monitord.store.open import open_store
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import (
    NoSuchTicket,
    TicketActionError,
    TicketDesk,
    TicketEvent,
    TicketInputError,
    TicketPolicyView,
)
from monitord.tickets.forms import ComplaintClose, ComplaintForm, FollowUpForm, RepairRequest, mask_phone
from monitord.tickets.quality import week_of, weekly
from monitord.tickets.sla import DEFAULT_SLA
from monitord.tickets.worklists import complaints, follow_ups_due
from monitord.tools.columns import width
from monitord.tools.kpi import render_weeks
from tests.support import (
    TOKEN,
    InfluxServer,
    V2WriteProxy,
    WebhookReceiver,
    demo_site,
    evaluated_past,
    eventually,
    get,
    post,
    running,
    site_yaml,
    token_of,
    with_people,
)
from tests.support.timeline import T0, Timeline, pump_site

SITE = pump_site(
    "  - {id: P1, name: Pump 1, type: pump, profile: two-points, connection: {mqtt: {}}}\n",
    "  - id: pump.dry_run\n"
    "    applies_to: {type: pump}\n"
    "    when: running > 0.5 and suction_pressure < 0.05\n"
    "    for: 5s\n"
    "    severity: critical\n"
    "    summary: running dry\n"
    "    ticket: {priority: P1, skill: plumbing}\n",
) + (
    "roster:\n"
    "  timezone: Asia/Shanghai\n"
    "  teams:\n"
    "    plumbing: {skills: [plumbing], members: [{name: Zhang, console: true}]}\n"
    "    electrical: {skills: [electrical], members: [{name: Liu, console: true}]}\n"
    "tickets: {follow_up: 1h}\n"
)
LEAK = {
    "building": "Tower B",
    "floor": "12F",
    "unit": "1203",
    "trade": "plumbing",
    "priority": "P2",
    "reporter": "Li Na",
    "phone": "138 1234 5678",
    "description": "water dripping from the bathroom ceiling",
}


def request(**changes: str) -> RepairRequest:
    return form_of(RepairRequest, LEAK | changes)


def test_forms_say_what_is_wrong_and_phones_are_masked() -> None:
    assert request().phone == "13812345678" and request().location == "Tower B / 12F / 1203"
    with pytest.raises(FormError, match=r"^phone: not a phone number"):
        request(phone="12345")
    with pytest.raises(
        FormError, match=r"^priority: Input should be 'P1', 'P2', 'P3' or 'P4'; reporter: must not be blank$"
    ) as refused:
        request(reporter="  ", priority="P9")
    # each field's problem on its own too: the console shows it under the field
    assert refused.value.fields("en") == {
        "priority": "Input should be 'P1', 'P2', 'P3' or 'P4'",
        "reporter": "must not be blank",
    }
    assert refused.value.fields("zh_CN")["priority"] == "须为 'P1', 'P2', 'P3' 或 'P4'"
    with pytest.raises(FormError, match=r"^satisfaction: must be 1\.\.5, got 6"):
        form_of(FollowUpForm, {"satisfaction": 6})
    with pytest.raises(FormError, match=r"^colour: Extra inputs are not permitted"):
        form_of(ComplaintForm, {"complainant": "x", "text": "y", "colour": "red"})
    assert request(phone="021-62345678").phone == "021-62345678"
    assert mask_phone("13812345678") == "138****5678" and mask_phone("021-62345678") == "021****5678"


def test_a_request_goes_through_the_lifecycle_and_follow_up_closes_it(tmp_path: Path) -> None:
    tl = Timeline(SITE, tmp_path)
    desk = FrontDesk(tl.core)
    with pytest.raises(
        FormError, match=r"^trade: 'carpentry' is no skill of the roster: one of electrical, plumbing"
    ):
        desk.open_request(request(trade="carpentry"), "duty")
    tl.run_until(10)
    opened = desk.open_request(request(), "duty")
    t = tl.core.desk.tickets[opened.ticket]
    assert (opened.event, opened.source, opened.reporter, opened.phone) == (
        "opened",
        "request",
        "Li Na",
        "13812345678",
    )
    assert (t.source, t.category, t.priority, t.location, t.asset, t.alert_count) == (
        "request",
        "plumbing",
        "P2",
        "Tower B / 12F / 1203",
        "",
        0,
    )
    # The same SLA clocks as an alert's ticket: P2 must be acknowledged within 15 minutes.
    tl.expect_nothing(until=10 + 900)
    breach = tl.expect_tickets(between=(910.01, 913), breached=[("", "", "ack")])
    assert breach[0].ticket == t.id
    tl.act(1000, t.id, "ack", actor="Zhang")
    tl.act(1500, t.id, "resolve", actor="Zhang", note="resealed the pipe above")
    [due] = follow_ups_due(tl.core.desk, 3600)
    assert (due["ticket"], due["reporter"], due["phone"], due["closes_at"]) == (
        t.id,
        "Li Na",
        "13812345678",
        T0 + 5100,
    )
    with pytest.raises(TicketActionError, match=r"is open: cannot follow up"):
        desk.follow_up(
            desk.open_request(request(), "duty").ticket, form_of(FollowUpForm, {"satisfaction": 3}), "duty"
        )
    tl.run_until(2000)
    done = desk.follow_up(t.id, form_of(FollowUpForm, {"satisfaction": 4, "note": "dry now"}), "Wu (duty)")
    assert (done.event, done.state, done.contact, done.satisfaction) == ("followed_up", "closed", "Li Na", 4)
    assert t.state == "closed" and t.follow_up is not None and t.follow_up.by == "Wu (duty)"
    assert not t.low_satisfaction and [r["ticket"] for r in follow_ups_due(tl.core.desk, 3600)] == []
    # A restart rebuilds the follow-up and the request's reporter from the store.
    tl.restart()
    again = tl.core.desk.tickets[t.id]
    assert (again.follow_up, again.reporter, again.phone, again.source) == (
        t.follow_up,
        "Li Na",
        "13812345678",
        "request",
    )
    tl.close()


def test_unfollowed_tickets_close_against_the_rate_and_complaints_are_counted(tmp_path: Path) -> None:
    tl = Timeline(SITE, tmp_path)
    desk = FrontDesk(tl.core)
    tl.run_until(1)
    a, b, c = (desk.open_request(request(unit=u), "duty").ticket for u in ("1203", "1204", "1205"))
    for ticket in (a, b, c):
        tl.act(60, ticket, "resolve", actor="Zhang")
    tl.run_until(100)
    desk.follow_up(a, form_of(FollowUpForm, {"satisfaction": 4}), "duty")
    low = desk.follow_up(c, form_of(FollowUpForm, {"satisfaction": 2, "note": "came twice"}), "duty")
    assert tl.core.desk.tickets[c].low_satisfaction and low.satisfaction == 2
    # Nobody calls b back: an hour after the fix the desk closes it, saying so.
    tl.expect_nothing(until=60 + 3600 - 1.2)
    [closed] = tl.expect_tickets(between=(3658.8, 3662), closed=[("", "")])
    assert closed.ticket == b and closed.note == "no follow-up within 1 h of the fix: closed without one"
    assert tl.core.desk.tickets[b].follow_up is None
    # Complaints: one closed with a resolution, one dismissed as not valid, one still open.
    first = desk.complain(
        a, form_of(ComplaintForm, {"complainant": "Li Na", "text": "rude on the phone"}), "duty"
    )
    desk.complain(b, form_of(ComplaintForm, {"complainant": "Zhao", "text": "noise"}), "duty")
    desk.complain(c, form_of(ComplaintForm, {"complainant": "Li Na", "text": "came twice"}), "duty")
    assert first.ref == "C1" and first.state == "closed"
    desk.close_complaint(a, "C1", form_of(ComplaintClose, {"resolution": "apologised"}), "lead")
    desk.close_complaint(b, "C1", form_of(ComplaintClose, {"resolution": "not ours", "valid": False}), "lead")
    with pytest.raises(TicketActionError, match=r"complaint C1 is already closed"):
        desk.close_complaint(a, "C1", form_of(ComplaintClose, {"resolution": "again"}), "lead")
    with pytest.raises(NoSuchTicket):
        desk.close_complaint(a, "C9", form_of(ComplaintClose, {"resolution": "x"}), "lead")
    assert [r["ticket"] for r in complaints(tl.core.desk, open_only=True)] == [c]
    # The KPIs from what reached the store, as `monitord report` and GET /report/desk compute them.
    _alerts, stored = tl.stored()
    *weeks, total = weekly(stored, None)
    assert [w.week for w in weeks] == ["2026-W47"] and total.week == "all"
    assert (total.requests, total.closed, total.followed_up, total.low_satisfaction) == (3, 3, 2, 1)
    assert total.follow_up_rate == pytest.approx(2 / 3) and total.mean_satisfaction == 3.0
    assert (total.complaints, total.valid_complaints, total.complaints_closed) == (3, 2, 1)
    assert total.complaint_close_rate == 0.5
    assert desk.report()["weeks"][-1] == total.as_json()  # the API's answer: the same figures
    for locale in ("en", "zh-CN"):  # `monitord report`'s table: every column's right edge lines up
        _title, *rows = render_weeks("tower", [*weeks, total], locale)
        edges = [[width(row[: m.end()]) for m in re.finditer(r"\S+", row)][1:] for row in rows]
        assert len({tuple(e) for e in edges}) == 1, (locale, rows)
    tl.close()


def test_an_alerts_ticket_is_followed_up_with_whoever_was_called(tmp_path: Path) -> None:
    tl = Timeline(SITE, tmp_path)
    tl.at(0).push("P1", running=1, suction_pressure=0.15)
    for t in range(1, 8):
        tl.at(t).push("P1", running=1, suction_pressure=0.01)
    [opened] = tl.expect_tickets(between=(0, 8), opened=[("pump.dry_run", "P1")])
    tl.act(20, opened.ticket, "resolve", actor="Zhang", note="primed the pump")
    desk = FrontDesk(tl.core)
    with pytest.raises(
        TicketInputError, match=r"^say whom you called \(contact\): this ticket has no reporter$"
    ):
        desk.follow_up(opened.ticket, form_of(FollowUpForm, {"satisfaction": 5}), "duty")
    ev = desk.follow_up(
        opened.ticket, form_of(FollowUpForm, {"satisfaction": 5, "contact": "Ma (B2 manager)"}), "duty"
    )
    assert (ev.contact, ev.source, tl.core.desk.tickets[opened.ticket].state) == (
        "Ma (B2 manager)",
        "alert",
        "closed",
    )
    tl.close()


def test_a_request_about_what_a_ticket_already_is_goes_on_that_ticket(tmp_path: Path) -> None:
    """One incident, one ticket: the monitoring found P1 running dry in Tower B; a resident of Tower
    B calls about the plumbing. The request is refused with that ticket (409 in the API); the
    dispatcher adds it to the ticket (no second ticket, no second page), and the 回访 call goes to
    the resident; another building, another trade, or the dispatcher saying it is another incident
    opens a ticket as before."""
    site = SITE.replace("name: Pump 1,", "name: Pump 1, location: {building: Tower B},")
    tl = Timeline(site, tmp_path)
    tl.at(0).push("P1", running=1, suction_pressure=0.15)
    for t in range(1, 8):
        tl.at(t).push("P1", running=1, suction_pressure=0.01)
    [dry] = tl.expect_tickets(between=(0, 8), opened=[("pump.dry_run", "P1")])
    desk = FrontDesk(tl.core)
    tickets = tl.core.desk.tickets
    with pytest.raises(
        SameIncident, match=rf"^tower b already has an active plumbing ticket: {dry.ticket} "
    ) as same:
        desk.open_request(request(building="tower b "), "duty")  # as a dispatcher types it
    assert [t.id for t in same.value.tickets] == [dry.ticket]
    assert len(tickets) == 1, "nothing opened"
    status, answer = desk.post("/tickets", "duty")(LEAK)  # what the API answers
    assert status == 409 and [t["ticket"] for t in answer["tickets"]] == [dry.ticket], answer
    assert answer["error"] == answer["english"] and answer["error"].startswith(
        "Tower B already has an active"
    )
    status, answer = desk.post("/tickets", "duty", "zh_CN")(LEAK)  # a dispatcher reading Chinese
    assert status == 409 and answer["error"].startswith(
        f"Tower B 已有处理中的 plumbing 工单：{dry.ticket} ("
    ), answer
    assert answer["english"].startswith("Tower B already has an active plumbing ticket"), (
        "the audit keeps English"
    )
    with pytest.raises(FormError, match="not both"):
        form_of(RepairRequest, LEAK | {"to": dry.ticket, "new": True})

    reported = desk.open_request(form_of(RepairRequest, LEAK | {"to": dry.ticket}), "duty")
    t = tickets[dry.ticket]
    assert (reported.event, reported.ticket, reported.reporter, reported.phone) == (
        "reported",
        dry.ticket,
        "Li Na",
        "13812345678",
    )
    assert reported.note == "Tower B / 12F / 1203: water dripping from the bathroom ceiling"
    assert (t.state, t.reporter, t.phone, t.source, len(tickets)) == (
        "open",
        "Li Na",
        "13812345678",
        "alert",
        1,
    )
    # A second resident on the same ticket: noted, the 回访 still goes to the first.
    desk.open_request(form_of(RepairRequest, LEAK | {"to": dry.ticket, "reporter": "Wang"}), "duty")
    assert t.reporter == "Li Na" and [e.reporter for e in t.events if e.event == "reported"] == [
        "Li Na",
        "Wang",
    ]
    pages = [e for e in t.events if e.event in ("opened", "escalated")]
    assert len(pages) == 1, "no second opening (the live CLI test counts the pages themselves)"

    # Another building, another trade, or "another incident": a ticket of its own.
    elsewhere = desk.open_request(request(building="Tower C"), "duty")
    # Tower C's next plumbing call from another flat is another incident; from the same flat, maybe not.
    desk.open_request(request(building="Tower C", unit="1205"), "duty")
    with pytest.raises(SameIncident):
        desk.open_request(request(building="Tower C"), "duty")
    electrical = desk.open_request(request(trade="electrical"), "duty")
    again = desk.open_request(form_of(RepairRequest, LEAK | {"new": True}), "duty")
    assert {elsewhere.event, electrical.event, again.event} == {"opened"} and len(tickets) == 5
    # and now the building's plumbing has two tickets: both are offered, oldest first
    with pytest.raises(SameIncident) as two:
        desk.open_request(request(), "duty")
    assert [x.id for x in two.value.tickets] == [dry.ticket, again.ticket]

    tl.act(20, dry.ticket, "resolve", actor="Zhang", note="primed the pump")
    with pytest.raises(TicketActionError, match="is resolved: cannot add a report"):
        desk.open_request(form_of(RepairRequest, LEAK | {"to": dry.ticket}), "duty")
    ev = desk.follow_up(dry.ticket, form_of(FollowUpForm, {"satisfaction": 5}), "duty")
    assert ev.contact == "Li Na", "the 回访 call goes to the resident who reported it"
    # The same desk again from its events (a restart): the report and its reporter are there.
    again_desk = TicketDesk()
    again_desk.restore([e for x in tickets.values() for e in x.events])
    assert again_desk.tickets[dry.ticket].reporter == "Li Na"
    tl.close()


def test_the_cli_lists_follow_ups_and_complaints_and_shows_a_request_from_the_store(tmp_path: Path) -> None:
    desk = TicketDesk()
    events: list[TicketEvent] = []
    waiting, unhappy = (
        desk.open_request(request(unit=u), actor="duty", now=T0).ticket for u in ("1203", "1204")
    )
    events += [desk.tickets[waiting].events[0], desk.tickets[unhappy].events[0]]
    events += [desk.act(t, "resolve", actor="Zhang", now=T0 + 60) for t in (waiting, unhappy)]
    events.append(
        desk.follow_up(unhappy, actor="Wu", contact="", satisfaction=2, note="came twice", now=T0 + 90)
    )
    events.append(desk.complain(unhappy, actor="Wu", complainant="Li Na", text="came twice", now=T0 + 95))
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    store.write_tickets(events)
    store.flush()
    store.close()
    db = ["--store", str(tmp_path / "s.db")]

    def cli(*args: str) -> str:
        out = _cli(*args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    [due] = cli("tickets", *db, "follow-ups").splitlines()
    assert (
        due.startswith(f"{waiting}  P2 plumbing") and "call Li Na 13812345678  @ Tower B / 12F / 1203" in due
    )
    [open_complaint] = cli("tickets", *db, "complaints", "--open").splitlines()
    assert open_complaint.startswith(f"{unhappy} C1 ") and open_complaint.endswith(
        "Li Na: came twice  [open]"
    )
    shown = cli("tickets", *db, "show", unhappy)
    assert "  request:   Tower B / 12F / 1204, reported by Li Na 13812345678" in shown
    assert "  follow-up: Wu called Li Na, satisfaction 2/5  [low satisfaction]: came twice" in shown
    [listed] = [line for line in cli("tickets", *db, "list").splitlines() if line.startswith(unhappy)]
    assert "request" in listed and listed.endswith("[low satisfaction]")
    [total] = [line.split() for line in cli("report", *db).splitlines() if line.startswith("  all")]
    assert total == ["all", "2", "1", "1", "100.0%", "2.00", "1", "1", "1", "0", "0.0%"]

    # The same commands in Chinese (--lang; a zh-CN site's --config does the same): every word a
    # person reads from the catalogs, what people typed as they typed it.
    zh = [*db, "--lang", "zh-CN"]
    [due] = cli("tickets", *zh, "follow-ups").splitlines()
    assert (
        due.startswith(f"{waiting}  P2 给排水") and "致电 Li Na 13812345678  @ Tower B / 12F / 1203：" in due
    )
    [open_complaint] = cli("tickets", *zh, "complaints", "--open").splitlines()
    assert open_complaint.endswith("Li Na：came twice  [未办结]"), open_complaint
    shown = cli("tickets", *zh, "show", unhappy).splitlines()
    assert shown[0] == f"{unhappy}  [已关闭]  P2  给排水"
    assert "  报修：    Tower B / 12F / 1204，报修人 Li Na 13812345678" in shown
    assert "  回访：    Wu 致电 Li Na，满意度 2/5  [满意度低]：came twice" in shown
    assert "  投诉 C1：Li Na（" in "\n".join(shown) and "  时间线：" in shown
    assert any("已回访       Wu — Li Na，满意度 2/5" in line for line in shown), shown
    listing = cli("tickets", *zh, "list").splitlines()
    assert listing[0].split() == ["工单", "状态", "级", "专业", "设备", "新建", "处理人", "摘要"]
    [listed] = [line for line in listing if line.startswith(unhappy)]
    assert listed.split()[1:4] == ["已关闭", "P2", "给排水"] and listed.endswith("[满意度低]")
    report = cli("report", *zh).splitlines()
    assert report[0].startswith("工单：2   ") and report[1].startswith("SLA 达成率")
    [total] = [line.split() for line in report if line.startswith("  合计")]
    assert total == ["合计", "2", "1", "1", "100.0%", "2.00", "1", "1", "1", "0", "0.0%"]
    english = ("ticket", "state", "request", "summary", "satisfaction", "timeline", "follow-up", "resolved")
    for out in (due, open_complaint, *shown, *listing, *report):
        text = out.replace("water dripping from the bathroom ceiling", "").replace("came twice", "")
        assert not [w for w in english if w in text], out


def test_a_complaint_about_an_old_ticket_leaves_the_alerts_latest_ticket_alone() -> None:
    """A re-fire soon after monitord resolved the alert's latest ticket recurs on that ticket, even when
    a complaint about an older ticket of the same alert came in between."""
    desk = TicketDesk()
    policy = TicketPolicyView("P1", "plumbing", auto_resolve=True)

    def alert(ts: float, state: str) -> AlertEvent:
        return AlertEvent(ts, "pump.dry_run", "P1", state, "critical", ts, "running dry")  # type: ignore[arg-type]

    [old] = desk.on_alert(alert(T0, "firing"), policy, "B2")
    desk.on_alert(alert(T0 + 60, "resolved"), policy, "B2")
    desk.check_clocks(T0 + 60 + 86400, lambda _p: DEFAULT_SLA["P1"], 86400)  # closed, nobody called
    [new] = desk.on_alert(alert(T0 + 90000, "firing"), policy, "B2")
    desk.on_alert(alert(T0 + 90060, "resolved"), policy, "B2")
    desk.complain(old.ticket, actor="duty", complainant="Ma", text="it came back", now=T0 + 90100)
    [again] = desk.on_alert(alert(T0 + 90200, "firing"), policy, "B2")
    assert new.ticket != old.ticket and (again.event, again.ticket) == ("recurred", new.ticket)


def test_the_console_masks_the_reporters_phone(tmp_path: Path) -> None:
    tl = Timeline(SITE, tmp_path)
    tl.run_until(1)
    ev = FrontDesk(tl.core).open_request(request(description="call me on 13912345678"), "duty")
    out = io.StringIO()
    ConsoleReporter({}, out).ticket(ev)
    line = out.getvalue()
    assert "139****5678" in line and "138****5678" in line and "Li Na" in line
    assert "13812345678" not in line and "13912345678" not in line
    tl.close()


def test_request_events_round_trip_through_influxdb(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    """A request has no asset, and an InfluxDB tag may not be empty: it is tagged "-", read back as ""."""
    _server, proxy = influxdb
    config = load_config(site_yaml(tmp_path, 1, proxy.url))
    desk = TicketDesk()
    opened = desk.open_request(request(), actor="duty", now=T0)
    events = [opened, desk.act(opened.ticket, "resolve", actor="Zhang", now=T0 + 60)]
    events.append(
        desk.follow_up(opened.ticket, actor="duty", contact="", satisfaction=5, note="ok", now=T0 + 99)
    )
    events.append(desk.complain(opened.ticket, actor="duty", complainant="Li Na", text="late", now=T0 + 120))
    writer = open_store(config)
    writer.write_tickets(events)
    writer.flush()
    writer.close()
    reader = open_store(config, writer=False)
    try:
        assert sorted(reader.ticket_events(), key=lambda e: e.ts) == events
    finally:
        reader.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitord", *args], capture_output=True, text=True, timeout=60
    )


def test_a_request_over_the_cli_is_assigned_paged_followed_up_and_reported(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=120.0)

    async def scenario() -> None:
        async with running(config) as (_site, app):
            assert app.api is not None
            api = ["--api", f"http://127.0.0.1:{app.api.port}", "--token", TOKEN]
            fields = [f"--{k}={v}" for k, v in LEAK.items()]
            bad = await asyncio.to_thread(_cli, "tickets", "open", *fields, "--phone=110", *api)
            assert (bad.returncode, bad.stdout) == (1, "")
            assert bad.stderr.startswith("monitord: /tickets: phone: not a phone number: an 11-digit mobile")
            assert not any(t.source == "request" for t in app.core.desk.tickets.values()), "nothing opened"
            opened = await asyncio.to_thread(_cli, "tickets", "open", *fields, *api)
            assert opened.returncode == 0, opened.stderr
            tid = opened.stdout.split(":")[0]
            assert opened.stdout.startswith("WO-") and "P2 plumbing @ Tower B / 12F / 1203" in opened.stdout
            # The roster assigns it and the on-call plumber is paged with the resident's phone.
            ticket = app.core.desk.tickets[tid]
            await eventually(lambda: ticket.assignee == "plumbing-tech", 10)
            [page] = await eventually(
                lambda: [p for p in webhooks.to("plumbing-tech") if p["ticket"] == tid], 10
            )
            assert (page["ticket"], page["source"], page["reporter"], page["phone"]) == (
                tid,
                "request",
                "Li Na",
                "13812345678",
            )
            assert (
                "reported by Li Na, 13812345678" in page["text"]
                and page["location"] == "Tower B / 12F / 1203"
            )
            # Her husband calls about the same leak: refused with the open ticket, then added to it.
            dup = await asyncio.to_thread(_cli, "tickets", "open", *fields, "--reporter=Wang", *api)
            assert dup.returncode == 1 and tid in dup.stderr and "already has an active" in dup.stderr
            added = await asyncio.to_thread(
                _cli, "tickets", "open", *fields, "--reporter=Wang", "--to", tid, *api
            )
            assert added.returncode == 0, added.stderr
            assert added.stdout.startswith(f"{tid}: the report is on this open ticket"), added.stdout
            assert [e.reporter for e in ticket.events if e.event == "reported"] == ["Wang"]
            assert (
                ticket.reporter == "Li Na"
                and sum(t.source == "request" for t in app.core.desk.tickets.values()) == 1
            )
            await evaluated_past(app, app.clock.now() + 1)
            assert len([p for p in webhooks.to("plumbing-tech") if p["ticket"] == tid]) == 1, "paged once"
            url = f"http://127.0.0.1:{app.api.port}"

            async def call(method: str, path: str, body: dict[str, object] | None = None) -> Any:
                """The API from a thread: it answers on this loop."""
                if method == "GET":
                    return await asyncio.to_thread(get, f"{url}{path}")
                return await asyncio.to_thread(post, f"{url}{path}", body or {})

            assert (await call("POST", f"/tickets/{tid}/resolve", {}))[0] == 200
            # The dispatcher's list names whom to call; a viewer (a wall screen) sees the phone
            # masked, in the list and in every ticket read.
            [due] = await asyncio.to_thread(get, f"{url}/follow-ups", token_of("dispatcher"))
            assert (due["ticket"], due["phone"]) == (tid, "13812345678")
            [masked] = await asyncio.to_thread(get, f"{url}/follow-ups", token_of("viewer"))
            assert masked["phone"] == "138****5678"
            shown = await asyncio.to_thread(get, f"{url}/tickets/{tid}", token_of("viewer"))
            assert shown["phone"] == "138****5678" and shown["reporter"] == "Li Na"
            assert all(e["phone"] in ("", "138****5678") for e in shown["events"])
            full = await call("GET", f"/tickets/{tid}")
            assert full["phone"] == "13812345678"
            status, refused = await call("POST", f"/tickets/{tid}/follow-up", {"satisfaction": 9})
            assert status == 400 and refused["error"] == "satisfaction: must be 1..5, got 9"
            assert refused["fields"] == {"satisfaction": "must be 1..5, got 9"}
            done = await asyncio.to_thread(
                _cli, "tickets", "follow-up", tid, "--satisfaction", "4", "--note", "dry now", *api
            )
            assert done.returncode == 0, done.stderr
            assert "satisfaction 4 — now closed" in done.stdout and await call("GET", "/follow-ups") == []
            status, c = await call(
                "POST", f"/tickets/{tid}/complaints", {"complainant": "Li Na", "text": "late"}
            )
            assert status == 201 and c["ref"] == "C1"
            closing = {"resolution": "apologised"}
            assert (await call("POST", f"/tickets/{tid}/complaints/C1/close", closing))[0] == 200
            missing = await call("POST", f"/tickets/{tid}/complaints/C9/close", closing)
            assert missing == (404, {"error": f"no complaint C9 on {tid}"})
            api_weeks = (await call("GET", "/report/desk"))["weeks"]
            await asyncio.to_thread(app.core.store.flush)
            report = await asyncio.to_thread(_cli, "report", "--store", str(tmp_path / "store.db"))
            assert report.returncode == 0, report.stderr
            rows = [
                line.split()
                for line in report.stdout.splitlines()
                if line.startswith("  20") or line.startswith("  all")
            ]
            this_week = ["1", "1", "1", "100.0%", "4.00", "0", "1", "1", "1", "100.0%"]
            assert rows == [[week_of(time.time(), None), *this_week], ["all", *this_week]]
            assert api_weeks[-1]["follow_up_rate"] == 1.0 and api_weeks[-1]["mean_satisfaction"] == 4.0

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_oncall_names_who_is_on_duty_and_then_whom_in_the_readers_language() -> None:
    demo = str(CONFIG_DIR / "sites" / "demo.yaml")
    at = ["--at", "2026-12-01T10:00"]
    english = _cli("oncall", demo, *at)
    chinese = _cli("oncall", demo, *at, "--lang", "zh-CN")
    assert english.returncode == chinese.returncode == 0, english.stderr + chinese.stderr
    plumbing = next(line for line in english.stdout.splitlines() if line.startswith("plumbing "))
    assert plumbing.split(None, 2)[1] == "plumbing" and "on call: Zhang (plumber)  then Zhao" in plumbing
    plumbing = next(line for line in chinese.stdout.splitlines() if line.startswith("plumbing "))
    assert plumbing.split(None, 2)[1] == "给排水" and "值班：Zhang (plumber)  其后 Zhao" in plumbing
    assert "on call" not in chinese.stdout and "then" not in chinese.stdout
