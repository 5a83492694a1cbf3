"""The duty desk's own ``tickets`` commands: 报修 (open), 回访 (follow-up, follow-ups) and 投诉
(complain, complaint-close, complaints).

Parsing and printing only, beside ``desk`` (which registers these under ``tickets``): changes go
through the daemon's API (``daemon/frontdesk.py`` does the work), lists are read from the store
(``tickets/worklists.py``), like the other reading commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from monitord.config.site import SiteConfig, site_zone
from monitord.core.i18n import N_, translations, translator
from monitord.core.units import format_time
from monitord.tickets.forms import LOW_SATISFACTION
from monitord.tickets.labels import CATEGORIES, STATES, label
from monitord.tickets.worklists import complaints, follow_ups_due
from monitord.tools.cli.common import api_args, api_client, config_and_store, lang_args, locale_of
from monitord.tools.storage import open_reader, read_desk

DEFAULT_FOLLOW_UP = 86400.0  # tickets.follow_up when no --config says otherwise
#: What these commands print, in one place (msgids of the catalogs); fields of the API's answers.
TEXT = {
    "opened": N_("{ticket}: opened — {priority} {category} @ {location}: {summary}"),
    "reported": N_("{ticket}: the report is on this {state} ticket — {priority} {category}: {summary}"),
    "followed_up": N_(
        "{ticket}: followed up by {actor} with {contact}, satisfaction {satisfaction} — now {state}"
    ),
    "low": N_("  (low satisfaction: flagged)"),
    "complained": N_("{ticket}: complaint {ref} from {contact} logged by {actor}"),
    "complaint_closed": N_("{ticket}: complaint {ref} closed by {actor}"),
    "complaint_dismissed": N_("{ticket}: complaint {ref} dismissed (not valid) by {actor}"),
    "no_follow_ups": N_("no follow-ups due"),
    "due": N_(
        "{ticket}  {priority} {category:10} resolved {resolved}  closes unfollowed {closes}  call {whom}"
        "  @ {where}: {summary}"
    ),
    "no_complaints": N_("no complaints"),
    "closed": N_("closed {at}: {resolution}"),
    "dismissed": N_("dismissed {at}: {resolution}"),
    "complaint": N_("{ticket} {id}  {logged}  {by}: {text}  [{state}]"),
}


def add_parsers(tsub: argparse._SubParsersAction[Any]) -> None:
    """Add the desk's commands to ``monitord tickets``."""
    o = tsub.add_parser("open", help="open a ticket for a resident's repair request (报修) through the API")
    for name, text in (
        ("building", "building, e.g. 'Tower B'"),
        ("floor", "floor, e.g. 12F"),
        ("trade", "the roster skill that does the work: plumbing, electrical, ..."),
        ("reporter", "the resident's name"),
        ("phone", "the resident's phone (shown to the assignee, masked in logs)"),
        ("description", "what the resident reports"),
    ):
        o.add_argument(f"--{name}", required=True, help=text)
    o.add_argument("--unit", default="", help="unit or room, e.g. 1203")
    o.add_argument("--priority", default="P3", choices=("P1", "P2", "P3", "P4"), help="(P3)")
    same = o.add_mutually_exclusive_group()
    same.add_argument(
        "--to",
        default="",
        metavar="TICKET",
        help="add the report to this active ticket (when the trade already has one in the building)",
    )
    same.add_argument(
        "--new", action="store_true", help="open a new ticket although the trade has one in the building"
    )
    _person(o)
    o.set_defaults(fn=open_request)

    f = tsub.add_parser("follow-up", help="record the follow-up call (回访) of a resolved ticket; closes it")
    f.add_argument("id")
    f.add_argument("--satisfaction", type=int, required=True, choices=range(1, 6), metavar="1-5")
    f.add_argument("--note", default="", help="what the resident said")
    f.add_argument("--contact", default="", help="whom you called (default: the reporter)")
    _person(f)
    f.set_defaults(fn=follow_up)

    c = tsub.add_parser("complain", help="log a complaint (投诉) about a ticket through the API")
    c.add_argument("id")
    c.add_argument("--by", required=True, help="who complains")
    c.add_argument("--text", required=True, help="what about")
    _person(c)
    c.set_defaults(fn=complain)

    cc = tsub.add_parser("complaint-close", help="close a complaint with its resolution (办结)")
    cc.add_argument("id")
    cc.add_argument("complaint", help="the complaint's id on the ticket: C1, C2, ...")
    cc.add_argument("--resolution", required=True)
    cc.add_argument("--invalid", action="store_true", help="dismiss it: not a valid complaint (无效投诉)")
    _person(cc)
    cc.set_defaults(fn=close_complaint)

    tsub.add_parser("follow-ups", help="resolved tickets waiting for their follow-up call").set_defaults(
        fn=list_follow_ups
    )
    cl = tsub.add_parser("complaints", help="complaints, newest first")
    cl.add_argument("--open", action="store_true", help="only those not closed yet")
    lang_args(cl)
    cl.set_defaults(fn=list_complaints)


def _person(p: argparse.ArgumentParser) -> None:
    # Who acts is whom $MONITORD_TOKEN belongs to: the daemon records that, never a name sent.
    api_args(p)
    lang_args(p)


def _said(args: argparse.Namespace, config: SiteConfig | None = None) -> Callable[[str], str]:
    """``TEXT[key]`` in the reader's language (``--lang``, else the site's, else English)."""
    _ = translator(locale_of(args, config))
    return lambda key: _(TEXT[key])


def open_word(locale: str) -> str:
    """A complaint not closed yet: "open", which for a complaint is 未办结 (a ticket's is 待确认)."""
    pgettext = translations(locale).pgettext
    return pgettext("complaint", "open")


def _words(
    args: argparse.Namespace, answer: dict[str, Any], config: SiteConfig | None = None
) -> dict[str, Any]:
    """An answer's (or a list row's) trade and state as the reader says them."""
    locale = locale_of(args, config)
    out = dict(answer)
    if "category" in out:
        out["category"] = label(CATEGORIES, out["category"], locale)
    if "state" in out:
        out["state"] = label(STATES, out["state"], locale)
    return out


def open_request(args: argparse.Namespace) -> int:
    fields = ["building", "floor", "unit", "trade", "priority", "reporter", "phone", "description"]
    fields += ["to", "new"]  # add it to an active ticket of the trade in the building, or open anyway
    body: dict[str, object] = {k: getattr(args, k) for k in fields}
    ev = api_client(args, locale_of(args, None)).post("/tickets", body)
    print(_said(args)(ev["event"]).format(**_words(args, ev)))
    return 0


def follow_up(args: argparse.Namespace) -> int:
    body: dict[str, object] = {
        "satisfaction": args.satisfaction,
        "note": args.note,
        "contact": args.contact,
    }
    ev = api_client(args, locale_of(args, None)).post(f"/tickets/{args.id}/follow-up", body)
    said = _said(args)
    low = said("low") if ev["satisfaction"] <= LOW_SATISFACTION else ""
    print(said("followed_up").format(**_words(args, ev)) + low)
    return 0


def complain(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"complainant": args.by, "text": args.text}
    ev = api_client(args, locale_of(args, None)).post(f"/tickets/{args.id}/complaints", body)
    print(_said(args)("complained").format(**ev))
    return 0


def close_complaint(args: argparse.Namespace) -> int:
    body: dict[str, object] = {
        "resolution": args.resolution,
        "valid": not args.invalid,
    }
    ev = api_client(args, locale_of(args, None)).post(
        f"/tickets/{args.id}/complaints/{args.complaint}/close", body
    )
    print(_said(args)(ev["event"]).format(**ev))
    return 0


def list_follow_ups(args: argparse.Namespace) -> int:
    config, path = config_and_store(args)
    tz, said = site_zone(config), _said(args, config)
    window = config.tickets.follow_up if config else DEFAULT_FOLLOW_UP
    rows = follow_ups_due(read_desk(open_reader(config, path)), window)
    if not rows:
        print(said("no_follow_ups"))
    for r in rows:
        whom = f"{r['reporter']} {r['phone']}" if r["reporter"] else "-"
        resolved, closes = format_time(r["resolved_at"], tz), format_time(r["closes_at"], tz)
        where = r["location"] or r["asset"]
        row = _words(args, r, config)
        print(said("due").format(**row, resolved=resolved, closes=closes, whom=whom, where=where))
    return 0


def list_complaints(args: argparse.Namespace) -> int:
    config, path = config_and_store(args)
    tz, said = site_zone(config), _said(args, config)
    rows = complaints(read_desk(open_reader(config, path)), args.open)
    if not rows:
        print(said("no_complaints"))
    for r in rows:
        if r["closed_at"] is None:
            state = open_word(locale_of(args, config))
        else:
            closed = said("closed" if r["valid"] else "dismissed")
            state = closed.format(at=format_time(r["closed_at"], tz), resolution=r["resolution"])
        print(said("complaint").format(**r, logged=format_time(r["at"], tz), state=state))
    return 0
