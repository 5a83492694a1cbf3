"""The tickets route group: list, one ticket with its events, and a person's actions on it.

Also the read-only views the duty desk's tools use beside tickets (``/alerts``, ``/assets``). Every
read needs a viewer (``require_read``); one ticket also reads with its notification link. The desk's
own calls (报修, 回访, 投诉) are the ``desk`` router.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from monitord.core.i18n import Worded
from monitord.daemon.frontdesk import TEXT
from monitord.daemon.web.auth import (
    BEARER,
    READS,
    api_locale,
    for_reader,
    reader,
    require,
    require_read,
    web_of,
)
from monitord.daemon.web.models import ActionBody, Error, TicketEventOut, TicketOut
from monitord.people.identity import Identity
from monitord.tickets.desk import ACTIONS, Ticket, TicketActionError

router = APIRouter()
ACTION_PATTERN = "^(" + "|".join(ACTIONS) + ")$"


def ticket_json(t: Ticket, events: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in asdict(t).items() if k != "events"}
    out["low_satisfaction"] = t.low_satisfaction  # the dispatcher's flag (docs/desk.md)
    if events:
        out["events"] = [asdict(e) for e in t.events]
    return out


@router.get("/tickets", response_model=list[TicketOut], response_model_exclude_none=True, **READS)
async def list_tickets(
    request: Request,
    state: str | None = None,
    priority: str | None = None,
    asset: str | None = None,
    source: str | None = None,
) -> Any:
    who = require_read(request)
    desk = web_of(request).core.desk
    given = (("state", state), ("priority", priority), ("asset", asset), ("source", source))
    wanted = {k: v for k, v in given if v}
    return for_reader(
        who,
        [
            ticket_json(t)
            for t in sorted(desk.tickets.values(), key=lambda t: -t.opened_at)
            if all(getattr(t, k) == v for k, v in wanted.items())
        ],
    )


@router.get(
    "/tickets/{ticket_id}",
    response_model=TicketOut,
    dependencies=BEARER,
    responses={404: {"model": Error}, **READS["responses"]},
)
async def one_ticket(request: Request, ticket_id: str, link: str = "") -> Any:
    """One ticket and its events; a notification's link for it reads it too (its person's role)."""
    who = require_read(request, ticket_id, link)
    t = web_of(request).core.desk.tickets.get(ticket_id)
    if t is None:
        return JSONResponse({"error": "no such ticket"}, status_code=404)
    return for_reader(who, ticket_json(t, events=True))


def act(
    request: Request, who: Identity, ticket_id: str, action: str, body: ActionBody, locale: str
) -> tuple[int, Any]:
    """Do ``action`` as ``who`` and audit it (in English), whatever the outcome: (status, answer), a
    refusal in ``locale``'s words."""
    web = web_of(request)
    try:
        ev = web.core.act(ticket_id, action, actor=who.name, note=body.note, assignee=body.assignee)
    except KeyError:
        missing = Worded(TEXT["no_ticket"], ticket=ticket_id)
        status, answer, detail = 404, {"error": missing.said(locale)}, "no such ticket"
    except TicketActionError as exc:
        status, answer, detail = 409, {"error": exc.said(locale)}, str(exc)
    else:
        status, answer, detail = 200, asdict(ev), body.note
    web.audit(request, who, f"ticket.{action}", ticket_id, status, detail)
    return status, answer


@router.post(
    "/tickets/{ticket_id}/{action}",
    response_model=TicketEventOut,
    dependencies=BEARER,
    responses={
        401: {"model": Error, "description": "no identity proven"},
        403: {"model": Error, "description": "the caller's role does not allow it"},
        404: {"model": Error},
        409: {"model": Error, "description": "not allowed in the ticket's state"},
        413: {"model": Error},
    },
)
async def ticket_action(
    request: Request,
    ticket_id: str,
    action: str = Path(pattern=ACTION_PATTERN),
    body: ActionBody | None = None,
) -> Any:
    """Act on a ticket as the authenticated caller (the body's ``actor`` is ignored)."""
    who = require(request, action, ticket_id, request.query_params.get("link", ""))
    status, answer = act(request, who, ticket_id, action, body or ActionBody(), api_locale(request))
    return JSONResponse(answer, status_code=status)


@router.get("/alerts", **READS)
async def alerts(request: Request) -> list[dict[str, object]]:
    require_read(request)
    return web_of(request).core.firing_alerts()


@router.get("/assets", **READS)
async def assets(request: Request) -> list[dict[str, object]]:
    require_read(request)
    return web_of(request).core.asset_states()


__all__ = ["act", "reader", "router", "ticket_json"]
