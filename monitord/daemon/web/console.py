"""The console's pages: status board, ticket queue, ticket page, silences, on-call, fleet; the live stream.

Server-rendered HTML for phones first; forms post to the ``/console/...`` actions, which act through
the same code as the JSON API (``tickets.act``, ``silences.add``) and redirect back. The board and
queue re-render their fragment when the server-sent-event stream (``/console/events``) says
something happened. A person not logged in is sent to the login page; a notification's signed link
opens its ticket's page for its person alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from monitord.core.i18n import N_
from monitord.core.units import parse_duration
from monitord.daemon.fleet_messages import role_words
from monitord.daemon.web import board, deskpages, silences
from monitord.daemon.web.auth import Refused, caller, reader, require, web_of
from monitord.daemon.web.models import ActionBody, SilenceBody
from monitord.daemon.web.pages import locale_of, page
from monitord.daemon.web.tickets import act
from monitord.people.identity import LINK_ACTIONS, Identity, may
from monitord.tickets.desk import ACTIONS, Ticket

router = APIRouter(prefix="/console", include_in_schema=False)
KEEPALIVE = 15.0  # seconds between comment lines on an idle stream, so proxies keep it open


def _viewer(request: Request) -> Identity:
    who = caller(request)
    if who is None:
        raise Refused(401, N_("log in to see the console"))
    return who


@router.get("")
async def status_board(request: Request, partial: bool = False, lang: str = "") -> Response:
    who = _viewer(request)
    web = web_of(request)
    buildings = board.status_board(web.core)
    alerts = [f for b in buildings for a in b.assets for f in a.alerts]
    context = {"who": who, "buildings": buildings, "alerts": alerts, "now": web.core.clock.now()}
    return page(request, "board_part.html" if partial else "board.html", context, lang)


@router.get("/queue")
async def ticket_queue(
    request: Request,
    partial: bool = False,
    lang: str = "",
    state: str = "active",
    priority: str = "",
    category: str = "",
    building: str = "",
    assignee: str = "",
) -> Response:
    who = _viewer(request)
    web = web_of(request)
    filters = {
        "state": state,
        "priority": priority,
        "category": category,
        "building": building,
        "assignee": assignee,
    }
    rows = board.queue(web.core, filters, web.core.config.sla_of)
    tickets = web.core.desk.tickets.values()
    choices = {
        "state": ["active", "open", "acknowledged", "in_progress", "resolved", "closed", "cancelled"],
        "priority": sorted({t.priority for t in tickets}),
        "category": sorted({t.category for t in tickets}),
        "building": sorted({str(a.location.get("building", "")) for a in web.core.assets.values()} - {""}),
        "assignee": sorted({t.assignee for t in tickets} - {""}),
    }
    context = {
        "who": who,
        "rows": rows,
        "filters": filters,
        "choices": choices,
        "query": urllib.parse.urlencode({k: v for k, v in filters.items() if v}),
        "now": web.core.clock.now(),
    }
    return page(request, "queue_part.html" if partial else "queue.html", context, lang)


def _allowed(who: Identity, t: Ticket) -> list[str]:
    """The actions this person may take on this ticket now (by role, link, and the ticket's state)."""
    out = []
    for action, (_kind, _new, states) in ACTIONS.items():
        if t.state not in states or not may(who.role, action):
            continue
        if who.via == "link" and action not in LINK_ACTIONS:
            continue
        out.append(action)
    return out


def _timeline(request: Request, t: Ticket) -> list[dict[str, Any]]:
    """The ticket's events and the pages sent for it, in time order."""
    rows: list[dict[str, Any]] = [
        {
            "ts": e.ts,
            "event": e.event,
            "actor": e.actor,
            "note": e.note,
            "assignee": e.assignee,
            "level": e.level,
            "explained": f"{e.alert_asset} {e.alert_rule}" if e.event == "explained" else "",
        }
        for e in t.events
    ]
    outbox = request.app.state.outbox
    if outbox is not None:
        for ts, channel, recipient in outbox.sent_for(t.id):
            rows.append(
                {
                    "ts": ts,
                    "event": "notified",
                    "actor": "monitord",
                    "note": f"{channel} → {recipient}",
                    "assignee": recipient,
                    "level": 0,
                    "explained": "",
                }
            )
    return sorted(rows, key=lambda r: r["ts"])


@router.get("/tickets/{ticket_id}")
async def ticket_page(
    request: Request,
    ticket_id: str,
    link: str = "",
    partial: bool = False,
    lang: str = "",
    done: str = "",
    error: str = "",
) -> Response:
    who = reader(request, ticket_id, link)
    if who is None:
        raise Refused(401, N_("log in to see this ticket"))
    web = web_of(request)
    t = web.core.desk.tickets.get(ticket_id)
    if t is None:
        raise Refused(404, N_("no ticket {ticket}"), ticket=ticket_id)
    now = web.core.clock.now()
    context = {
        "who": who,
        "t": t,
        "asset": web.core.assets.get(t.asset),
        "clock": board.sla_clock(t, web.core.config.sla_of(t.priority), now),
        "timeline": _timeline(request, t),
        "actions": _allowed(who, t),
        "link": link,
        "done": done,
        "error": error,
        "people": sorted(web.identities.roles),
        **deskpages.on_ticket(who, t),
        "now": now,
    }
    return page(request, "ticket_part.html" if partial else "ticket.html", context, lang)


@router.post("/tickets/{ticket_id}/act")
async def ticket_act(
    request: Request,
    ticket_id: str,
    action: Annotated[str, Form(max_length=20)],
    note: Annotated[str, Form(max_length=4000)] = "",
    assignee: Annotated[str, Form(max_length=200)] = "",
    link: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if action not in ACTIONS:
        raise Refused(404, N_("no action {action}"), action=action)
    who = require(request, action, ticket_id, link)
    body = ActionBody(note=note, assignee=assignee)
    status, answer = act(request, who, ticket_id, action, body, locale_of(request, "", who.locale))
    if status != 200:
        raise Refused(status, str(answer.get("error")))  # in the reader's words already
    query = urllib.parse.urlencode({k: v for k, v in (("link", link), ("done", action)) if v})
    return RedirectResponse(f"/console/tickets/{ticket_id}?{query}", status_code=303)


@router.get("/silences")
async def silence_page(request: Request, lang: str = "", error: str = "") -> Response:
    who = _viewer(request)
    web = web_of(request)
    mute = web.core.pipeline.mute
    now = web.core.clock.now()
    context = {
        "who": who,
        "silences": sorted(mute.silences if mute else [], key=lambda s: -s.expires),
        "windows": mute.windows if mute else [],
        "may_silence": may(who.role, "silence"),
        "error": error,
        "now": now,
    }
    return page(request, "silences.html", context, lang)


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.replace(",", " ").split() if x.strip()]


@router.post("/silences")
async def silence_add(
    request: Request,
    reason: Annotated[str, Form(max_length=1000)],
    expires_in: Annotated[str, Form(max_length=20)],
    assets: Annotated[str, Form(max_length=2000)] = "",
    rules: Annotated[str, Form(max_length=2000)] = "",
    types: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    who = require(request, "silence")
    try:
        body = SilenceBody.model_validate(
            {
                "matcher": {"assets": _names(assets), "rules": _names(rules), "types": _names(types)},
                "reason": reason,
                "expires_in": parse_duration(expires_in),
            }
        )
    except ValueError as exc:  # pydantic's ValidationError is one
        return RedirectResponse(f"/console/silences?{urllib.parse.urlencode({'error': str(exc)})}", 303)
    status, answer = silences.add(request, who, body)
    query = "" if status == 201 else "?" + urllib.parse.urlencode({"error": answer["error"]})
    return RedirectResponse(f"/console/silences{query}", status_code=303)


@router.post("/silences/{silence_id}/expire")
async def silence_expire(request: Request, silence_id: str) -> Response:
    who = require(request, "silence")
    status, answer = silences.expire(request, who, silence_id)
    if status != 200:
        raise Refused(status, str(answer["error"]))
    return RedirectResponse("/console/silences", status_code=303)


@router.get("/oncall")
async def oncall_page(request: Request, lang: str = "") -> Response:
    who = _viewer(request)
    web = web_of(request)
    now = web.core.clock.now()
    return page(
        request, "oncall.html", {"who": who, "duties": board.on_call(web.roster, now), "now": now}, lang
    )


@router.get("/fleet")
async def fleet_page(request: Request, lang: str = "") -> Response:
    """The instances of this site and their roles, as the broker's retained presences say."""
    who = _viewer(request)
    link = web_of(request).fleet
    words = role_words(locale_of(request, lang, who.locale))
    context = {
        "who": who,
        "fleet": link.summary() if link else None,
        "instances": link.instances() if link else [],
        "words": words,
    }
    return page(request, "fleet.html", context, lang)


@router.get("/events")
async def events(request: Request, ticket: str = "", link: str = "") -> Response:
    """Server-sent events: one ``data:`` line per road event (alert, ticket, audit)."""
    if reader(request, ticket, link) is None:
        raise Refused(401, N_("log in to follow the console"))
    stream = web_of(request).stream

    async def lines() -> AsyncIterator[str]:
        async with stream.subscribe() as q:
            yield "retry: 2000\n\n"
            while True:
                message: str | None = ": keepalive"
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(q.get(), KEEPALIVE)
                if message is None:
                    return
                yield f"{message}\n\n" if message.startswith(":") else f"data: {message}\n\n"

    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
