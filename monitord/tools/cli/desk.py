"""The duty desk: ``tickets`` (list, show, and the actions), ``silence``, ``oncall`` and ``report``.

Reading commands restore the desk from the store; acting commands go through the daemon's
API so the daemon records and tells them. Times are shown in the site's zone when a config
is given (its roster's), else in this machine's local zone; what a person reads comes from the
catalogs in ``--lang``, else the site's language (docs/i18n.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from monitord.config.site import load_config, site_zone
from monitord.core.i18n import N_, translator
from monitord.core.units import format_duration, format_time
from monitord.people.roster import Roster
from monitord.tickets.desk import ACTIONS, Ticket, TicketEvent, explained_of
from monitord.tickets.labels import CATEGORIES, EVENTS, STATES, label
from monitord.tickets.quality import weekly
from monitord.tools.cli import frontdesk
from monitord.tools.cli.common import (
    api_args,
    api_client,
    config_and_store,
    lang_args,
    locale_of,
    store_args,
    time_arg,
)
from monitord.tools.columns import left
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
        lang_args(ta)
        if action == "assign":
            ta.add_argument("assignee")
    t.set_defaults(fn=tickets)
    frontdesk.add_parsers(tsub)  # 报修, 回访, 投诉: their own fn each

    si = sub.add_parser("silence", help="silences: mute matching alerts for a while, with a reason")
    api_args(si)
    si.add_argument("--config", help="site config: times shown in its zone, in its language")
    lang_args(si)
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
    lang_args(oc)
    oc.set_defaults(fn=oncall)


def tickets(args: argparse.Namespace) -> int:
    if args.action not in ("list", "show"):
        return ticket_action(args)
    config, path = config_and_store(args)
    tz, locale = site_zone(config), locale_of(args, config)
    _ = translator(locale)
    desk = read_desk(open_reader(config, path))
    if args.action == "list":
        rows = sorted(desk.tickets.values(), key=lambda t: t.opened_at, reverse=True)
        if args.open:
            rows = [t for t in rows if t.state == "open"]
        if not rows:
            print(_("no tickets"))
        else:
            print("".join(left(_(word), n) + gap for word, n, gap in LIST_HEADS) + _("summary"))
        for t in rows:
            opened = format_time(t.opened_at, tz)
            flag = _("  [low satisfaction]") if t.low_satisfaction else ""
            state = left(label(STATES, t.state, locale), 12)
            trade = left(label(CATEGORIES, t.category, locale), 10)
            print(
                f"{t.id}  {state} {t.priority} {trade} {left(t.asset or _('request'), 12)} {opened:23}"
                f"  {left(t.assignee or '-', 24)}  {t.summary}{flag}"
            )
        return 0
    found = desk.tickets.get(args.id)
    if found is None:
        print(_("no ticket {ticket}").format(ticket=args.id), file=sys.stderr)
        return 1
    _show_ticket(found, tz, locale)
    return 0


#: ``tickets list``'s columns: heading, width, and the gap after it.
LIST_HEADS = (
    (N_("ticket"), 16, "  "),
    (N_("state"), 12, " "),
    (N_("pr"), 2, " "),
    (N_("category"), 10, " "),
    (N_("asset"), 12, " "),
    (N_("opened"), 23, "  "),
    (N_("assignee"), 24, "  "),
)


def _show_ticket(t: Ticket, tz: tzinfo | None, locale: str) -> None:
    """A readable timeline: the ticket once, then who did what when, with their note."""
    _ = translator(locale)
    state, trade = label(STATES, t.state, locale), label(CATEGORIES, t.category, locale)
    print(f"{t.id}  [{state}]  {t.priority}  {trade}")
    if t.source == "request":  # a resident's 报修: where, and whom to call back
        print(
            _("  request:   {location}, reported by {reporter} {phone}").format(
                location=t.location, reporter=t.reporter, phone=t.phone
            )
        )
    else:
        where = _("  ({location})").format(location=t.location) if t.location else ""
        print(_("  asset:     {asset}").format(asset=t.asset) + where)
        print(_("  rule:      {rule}").format(rule=t.rule))
    print(_("  summary:   {summary}").format(summary=t.summary))
    print(_("  since:     {since}").format(since=format_time(t.since, tz)))
    print(_("  assignee:  {assignee}").format(assignee=t.assignee or "-"))
    print(_("  alerts:    {n}").format(n=t.alert_count))
    if t.explains:
        print(_("  explains:  {n} alert(s) of assets this incident takes down").format(n=len(t.explains)))
        for x in t.explains:
            print(
                _("    {asset} {rule} since {since}  {summary}").format(
                    asset=f"{x.asset:12}",
                    rule=f"{x.rule:36}",
                    since=format_time(x.since, tz),
                    summary=x.summary,
                )
            )
    if t.follow_up is not None:
        f = t.follow_up
        low = _("  [low satisfaction]") if t.low_satisfaction else ""
        print(
            _("  follow-up: {by} called {contact}, satisfaction {satisfaction}/5{low}: {note}").format(
                by=f.by, contact=f.contact, satisfaction=f.satisfaction, low=low, note=f.note
            )
        )
    for c in t.complaints:
        if c.closed_at is None:
            how = frontdesk.open_word(locale)
        else:
            done = _("closed: {resolution}") if c.valid else _("dismissed: {resolution}")
            how = done.format(resolution=c.resolution)
        print(
            _("  complaint {ref}: {by} ({at}): {text}  [{state}]").format(
                ref=c.id, by=c.by, at=format_time(c.at, tz), text=c.text, state=how
            )
        )
    print(_("  timeline:"))
    shown = ""
    for ev in t.events:
        after = format_duration(max(0.0, ev.ts - t.opened_at))
        when = f"{format_time(ev.ts, tz)} {'+' + after:>7}"
        event = left(label(EVENTS, ev.event, locale), 12)
        print(f"    {when}  {event} {ev.actor}{_what(ev, shown, tz, _)}")
        if ev.event in SUMMARY_EVENTS:
            shown = ev.summary


#: Events whose summary says something new about the incident (the alert's text at that moment).
SUMMARY_EVENTS = frozenset({"opened", "appended", "reopened", "resolved"})


def _what(ev: TicketEvent, shown: str, tz: tzinfo | None, _: Callable[[str], str]) -> str:
    """What an event adds to the timeline: assignee, escalation level, what it absorbed, note."""
    parts = []
    if ev.event in SUMMARY_EVENTS and ev.summary != shown:
        parts.append(ev.summary)
    if ev.event == "explained":
        x = explained_of(ev)
        since = format_time(x.since, tz)
        parts.append(
            _("{asset} {rule} since {since}: {summary}").format(
                asset=x.asset, rule=x.rule, since=since, summary=x.summary
            )
        )
    elif ev.note:
        parts.append(_("note: {note}").format(note=ev.note))
    if ev.satisfaction:
        said = _("{contact}, satisfaction {satisfaction}/5")
        parts.insert(0, said.format(contact=ev.contact, satisfaction=ev.satisfaction))
    elif ev.ref:
        who = _("complaint {ref} from {contact}") if ev.contact else _("complaint {ref}")
        parts.insert(0, who.format(ref=ev.ref, contact=ev.contact))
    if ev.assignee:
        parts.insert(0, _("to {assignee}").format(assignee=ev.assignee))
    if ev.event == "escalated":
        parts.insert(0, _("level {level}").format(level=ev.level))
    return f" — {'; '.join(parts)}" if parts else ""


def ticket_action(args: argparse.Namespace) -> int:
    """The duty desk's actions go through the daemon's API, so the daemon sees and tells them."""
    # Who acted is whom $MONITORD_TOKEN belongs to: the daemon records that, never a name sent.
    body: dict[str, object] = {"note": args.note or ""}
    if getattr(args, "assignee", None):
        body["assignee"] = args.assignee
    locale = locale_of(args, None)
    ev = api_client(args, locale).post(f"/tickets/{args.id}/{args.action}", body)
    _ = translator(locale)
    said = _("{ticket}: {event} by {actor} — now {state}")
    event, state = label(EVENTS, ev["event"], locale), label(STATES, ev["state"], locale)
    print(said.format(ticket=ev["ticket"], event=event, actor=ev["actor"], state=state))
    return 0


def silence(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else None
    tz, locale = site_zone(config), locale_of(args, config)
    _ = translator(locale)
    api = api_client(args, locale)
    if args.action == "add":
        matcher = {"assets": args.asset or [], "rules": args.rule or [], "types": args.type or []}
        body: dict[str, object] = {
            "matcher": matcher,
            "reason": args.reason,
            "expires_in": args.duration,
        }
        s = api.post("/silences", body)
        print(_("silence {id} until {until}").format(id=s["id"], until=format_time(s["expires"], tz)))
        return 0
    if args.action == "expire":
        api.post(f"/silences/{args.id}/expire", {})
        print(_("silence {id} expired").format(id=args.id))
        return 0
    silences = api.get_list("/silences")
    if not silences:
        print(_("no silences"))
    for s in silences:
        row = _("{id}  {state} until {until}  {matcher}  {author}: {reason}")
        print(
            row.format(
                id=s["id"],
                state=left(_("active") if s["active"] else _("expired"), 7),
                until=format_time(s["expires"], tz),
                matcher=_matcher(s["matcher"], _),
                author=s["author"],
                reason=s["reason"],
            )
        )
    return 0


#: What a silence's matcher names, as people write it.
MATCHER_WORDS = {
    "assets": N_("assets {names}"),
    "types": N_("types {names}"),
    "tags": N_("tags {names}"),
    "rules": N_("rules {names}"),
}


def _matcher(m: dict[str, list[str]], _: Callable[[str], str]) -> str:
    """What a silence mutes, as people write it: ``assets A-P1, A-P2; rules pump.*``."""
    parts = [_(text).format(names=", ".join(m[key])) for key, text in MATCHER_WORDS.items() if m.get(key)]
    return "; ".join(parts) or _("everything")


def kpi_report(args: argparse.Namespace) -> int:
    config, path = config_and_store(args)
    locale = locale_of(args, config)
    _ = translator(locale)
    desk, alerts = read_history(open_reader(config, path))
    for line in render(report(list(desk.tickets.values()), alerts, sla_lookup(config), time.time()), locale):
        print(line)
    site = config.site.id if config else str(path or _("the default store"))
    events = [ev for t in desk.tickets.values() for ev in t.events]
    for line in render_weeks(site, weekly(events, site_zone(config)), locale):
        print(line)
    return 0


def oncall(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    locale = locale_of(args, config)
    _ = translator(locale)
    if config.roster is None:
        print(_("no roster in this config"), file=sys.stderr)
        return 1
    at = time_arg(args.at, site_zone(config))
    if at is None:
        at = time.time()
    roster = Roster(config.roster)
    for name, team in config.roster.teams.items():
        chain = roster.chain(team.skills[0], at)
        line = _("{team} {skills} on call: {person}").format(
            team=left(name, 14),
            skills=left(", ".join(label(CATEGORIES, skill, locale) for skill in team.skills), 28),
            person=chain[0].name if chain else "-",
        )
        then = _("  then {people}").format(people=", ".join(c.name for c in chain[1:]))
        print(line + (then if len(chain) > 1 else ""))
    return 0
