"""The duty desk: ``tickets`` (list, show, and the actions), ``silence``, ``oncall`` and ``report``.

Reading commands restore the desk from the store; acting commands go through the daemon's
API so the daemon records and tells them. Times are shown in the site's zone when a config
is given (its roster's), else in this machine's local zone.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import tzinfo
from typing import Any

from monitord.config.site import load_config, site_zone
from monitord.core.units import format_duration, format_time
from monitord.people.roster import Roster
from monitord.tickets.desk import ACTIONS, Ticket, TicketEvent, explained_of
from monitord.tickets.quality import weekly
from monitord.tools.cli import frontdesk
from monitord.tools.cli.common import api_args, api_client, config_and_store, store_args, time_arg
from monitord.tools.kpi import render, render_weeks, report, sla_lookup
from monitord.tools.storage import open_reader, read_desk, read_history


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    t = sub.add_parser("tickets", help="read tickets from the store")
    store_args(t)
    tsub = t.add_subparsers(dest="action", required=True)
    tl = tsub.add_parser("list")
    tl.add_argument("--open", action="store_true", help="open tickets only")
    ts = tsub.add_parser("show")
    ts.add_argument("id")
    for action in ACTIONS:
        ta = tsub.add_parser(action, help=f"{action} a ticket through the daemon's API")
        ta.add_argument("id")
        ta.add_argument("--note", help="what you did or saw")
        api_args(ta)
        if action == "assign":
            ta.add_argument("assignee")
    t.set_defaults(fn=tickets)
    frontdesk.add_parsers(tsub)  # 报修, 回访, 投诉: their own fn each

    si = sub.add_parser("silence", help="silences: mute matching alerts for a while, with a reason")
    api_args(si)
    si.add_argument("--config", help="site config: times shown in its zone")
    sisub = si.add_subparsers(dest="action", required=True)
    sa = sisub.add_parser("add")
    sa.add_argument("--asset", action="append", help="asset id (repeatable)")
    sa.add_argument("--rule", action="append", help="rule id or glob such as 'pump.*' (repeatable)")
    sa.add_argument("--type", action="append", help="asset type (repeatable)")
    sa.add_argument(
        "--for", dest="duration", required=True, help="how long, e.g. 2h: no silence without expiry"
    )
    sa.add_argument("--reason", required=True)
    sisub.add_parser("list")
    se = sisub.add_parser("expire")
    se.add_argument("id")
    si.set_defaults(fn=silence)

    rep = sub.add_parser(
        "report",
        help="KPIs: MTTA, MTTR, SLA, repeats, alarm rates; 回访率, satisfaction, complaints per week",
    )
    store_args(rep)
    rep.set_defaults(fn=kpi_report)

    oc = sub.add_parser("oncall", help="who is on call for each team")
    oc.add_argument("config")
    oc.add_argument("--at", help="epoch seconds or ISO time (default: now; the roster's zone)")
    oc.set_defaults(fn=oncall)


def tickets(args: argparse.Namespace) -> int:
    if args.action not in ("list", "show"):
        return ticket_action(args)
    config, path = config_and_store(args)
    tz = site_zone(config)
    desk = read_desk(open_reader(config, path))
    if args.action == "list":
        rows = sorted(desk.tickets.values(), key=lambda t: t.opened_at, reverse=True)
        if args.open:
            rows = [t for t in rows if t.state == "open"]
        if not rows:
            print("no tickets")
        else:
            print(f"{'ticket':16}  {'state':12} pr {'category':10} {'asset':12} {'opened':23}", end="")
            print(f"  {'assignee':24}  summary")
        for t in rows:
            opened = format_time(t.opened_at, tz)
            flag = "  [low satisfaction]" if t.low_satisfaction else ""
            print(
                f"{t.id}  {t.state:12} {t.priority} {t.category:10} {t.asset or t.source:12} {opened:23}"
                f"  {t.assignee or '-':24}  {t.summary}{flag}"
            )
        return 0
    found = desk.tickets.get(args.id)
    if found is None:
        print(f"no ticket {args.id}", file=sys.stderr)
        return 1
    _show_ticket(found, tz)
    return 0


def _show_ticket(t: Ticket, tz: tzinfo | None) -> None:
    """A readable timeline: the ticket once, then who did what when, with their note."""
    print(f"{t.id}  [{t.state}]  {t.priority}  {t.category}")
    if t.source == "request":  # a resident's 报修: where, and whom to call back
        print(f"  request:   {t.location}, reported by {t.reporter} {t.phone}")
    else:
        print(f"  asset:     {t.asset}" + (f"  ({t.location})" if t.location else ""))
        print(f"  rule:      {t.rule}")
    print(f"  summary:   {t.summary}")
    print(f"  since:     {format_time(t.since, tz)}")
    print(f"  assignee:  {t.assignee or '-'}")
    print(f"  alerts:    {t.alert_count}")
    if t.explains:
        print(f"  explains:  {len(t.explains)} alert(s) of assets this incident takes down")
        for x in t.explains:
            print(f"    {x.asset:12} {x.rule:36} since {format_time(x.since, tz)}  {x.summary}")
    if t.follow_up is not None:
        f = t.follow_up
        low = "  [low satisfaction]" if t.low_satisfaction else ""
        print(f"  follow-up: {f.by} called {f.contact}, satisfaction {f.satisfaction}/5{low}: {f.note}")
    for c in t.complaints:
        state = "open" if c.closed_at is None else ("closed: " if c.valid else "dismissed: ") + c.resolution
        print(f"  complaint {c.id}: {c.by} ({format_time(c.at, tz)}): {c.text}  [{state}]")
    print("  timeline:")
    shown = ""
    for ev in t.events:
        after = format_duration(max(0.0, ev.ts - t.opened_at))
        when = f"{format_time(ev.ts, tz)} {'+' + after:>7}"
        print(f"    {when}  {ev.event:12} {ev.actor}{_what(ev, shown, tz)}")
        if ev.event in SUMMARY_EVENTS:
            shown = ev.summary


#: Events whose summary says something new about the incident (the alert's text at that moment).
SUMMARY_EVENTS = frozenset({"opened", "appended", "reopened", "resolved"})


def _what(ev: TicketEvent, shown: str, tz: tzinfo | None) -> str:
    """What an event adds to the timeline: assignee, escalation level, what it absorbed, note."""
    parts = []
    if ev.event in SUMMARY_EVENTS and ev.summary != shown:
        parts.append(ev.summary)
    if ev.event == "explained":
        x = explained_of(ev)
        parts.append(f"{x.asset} {x.rule} since {format_time(x.since, tz)}: {x.summary}")
    elif ev.note:
        parts.append(f"note: {ev.note}")
    if ev.satisfaction:
        parts.insert(0, f"{ev.contact}, satisfaction {ev.satisfaction}/5")
    elif ev.ref:
        parts.insert(0, f"complaint {ev.ref}" + (f" from {ev.contact}" if ev.contact else ""))
    if ev.assignee:
        parts.insert(0, f"to {ev.assignee}")
    if ev.event == "escalated":
        parts.insert(0, f"level {ev.level}")
    return f" — {'; '.join(parts)}" if parts else ""


def ticket_action(args: argparse.Namespace) -> int:
    """The duty desk's actions go through the daemon's API, so the daemon sees and tells them."""
    # Who acted is whom $MONITORD_TOKEN belongs to: the daemon records that, never a name sent.
    body: dict[str, object] = {"note": args.note or ""}
    if getattr(args, "assignee", None):
        body["assignee"] = args.assignee
    ev = api_client(args).post(f"/tickets/{args.id}/{args.action}", body)
    print(f"{ev['ticket']}: {ev['event']} by {ev['actor']} — now {ev['state']}")
    return 0


def silence(args: argparse.Namespace) -> int:
    api = api_client(args)
    tz = site_zone(load_config(args.config) if args.config else None)
    if args.action == "add":
        matcher = {"assets": args.asset or [], "rules": args.rule or [], "types": args.type or []}
        body: dict[str, object] = {
            "matcher": matcher,
            "reason": args.reason,
            "expires_in": args.duration,
        }
        s = api.post("/silences", body)
        print(f"silence {s['id']} until {format_time(s['expires'], tz)}")
        return 0
    if args.action == "expire":
        api.post(f"/silences/{args.id}/expire", {})
        print(f"silence {args.id} expired")
        return 0
    silences = api.get_list("/silences")
    if not silences:
        print("no silences")
    for s in silences:
        state = "active " if s["active"] else "expired"
        until = format_time(s["expires"], tz)
        print(f"{s['id']}  {state} until {until}  {_matcher(s['matcher'])}  {s['author']}: {s['reason']}")
    return 0


def _matcher(m: dict[str, list[str]]) -> str:
    """What a silence mutes, as people write it: ``assets A-P1, A-P2; rules pump.*``."""
    parts = [f"{key} {', '.join(m[key])}" for key in ("assets", "types", "tags", "rules") if m.get(key)]
    return "; ".join(parts) or "everything"


def kpi_report(args: argparse.Namespace) -> int:
    config, path = config_and_store(args)
    desk, alerts = read_history(open_reader(config, path))
    for line in render(report(list(desk.tickets.values()), alerts, sla_lookup(config), time.time())):
        print(line)
    site = config.site.id if config else str(path or "the default store")
    events = [ev for t in desk.tickets.values() for ev in t.events]
    for line in render_weeks(site, weekly(events, site_zone(config))):
        print(line)
    return 0


def oncall(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.roster is None:
        print("no roster in this config", file=sys.stderr)
        return 1
    at = time_arg(args.at, site_zone(config))
    if at is None:
        at = time.time()
    roster = Roster(config.roster)
    for name, team in config.roster.teams.items():
        chain = roster.chain(team.skills[0], at)
        print(
            f"{name:14} {', '.join(team.skills):28} on call: {chain[0].name if chain else '-'}"
            + (f"  then {', '.join(c.name for c in chain[1:])}" if len(chain) > 1 else "")
        )
    return 0
