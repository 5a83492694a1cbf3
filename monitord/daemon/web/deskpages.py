"""The duty desk's console pages: the 报修 form, 回访 and 投诉 on a ticket, the follow-up and complaint lists.

Beside ``console`` (which shows a ticket) and ``desk`` (the JSON routes): every change here is the
same ``FrontDesk.post`` call the API makes — the forms checked by ``tickets/forms.py``, the event down
the one road — then audited like the API's. A bad form comes back with each field's problem next to
the field; roles as docs/console.md says (报修 technician+, 回访 and 投诉 dispatcher+).
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from monitord.daemon.frontdesk import FrontDesk
from monitord.daemon.web.auth import Refused, require, web_of
from monitord.daemon.web.desk import change
from monitord.daemon.web.pages import page
from monitord.people.identity import Identity, may
from monitord.tickets.desk import Ticket

router = APIRouter(prefix="/console", include_in_schema=False)
Short = Annotated[str, Form(max_length=500)]
Long = Annotated[str, Form(max_length=4000)]


def _frontdesk(request: Request) -> FrontDesk:
    desk: FrontDesk = request.app.state.frontdesk
    return desk


def on_ticket(who: Identity, t: Ticket) -> dict[str, Any]:
    """What the ticket page shows of the desk: its complaints and which desk forms this person gets."""
    return {
        "complaints": t.complaints,
        "may_follow_up": who.via != "link" and t.state == "resolved" and may(who.role, "follow_up"),
        "may_complain": who.via != "link" and may(who.role, "complain"),
    }


def _back(ticket: str, done: str = "", error: str = "") -> Response:
    query = urllib.parse.urlencode({k: v for k, v in (("done", done), ("error", error)) if v})
    return RedirectResponse(f"/console/tickets/{ticket}?{query}#desk", status_code=303)


def _request_page(
    request: Request, who: Identity, values: dict[str, str], problems: dict[str, str], lang: str, status: int
) -> Response:
    context = {
        "who": who,
        "values": values,
        "problems": problems,
        "skills": _frontdesk(request).skills(),
        "priorities": ("P1", "P2", "P3", "P4"),
        "now": web_of(request).core.clock.now(),
    }
    return page(request, "request.html", context, lang, status)


@router.get("/desk/new")
async def request_form(request: Request, lang: str = "") -> Response:
    who = require(request, "request")
    return _request_page(request, who, {"priority": "P3"}, {}, lang, 200)


@router.post("/desk/new")
async def request_open(
    request: Request,
    building: Short = "",
    floor: Short = "",
    unit: Short = "",
    trade: Short = "",
    priority: Short = "P3",
    reporter: Short = "",
    phone: Short = "",
    description: Long = "",
    lang: str = "",
) -> Response:
    who = require(request, "request")
    values = {"building": building, "floor": floor, "unit": unit, "trade": trade, "priority": priority}
    values |= {"reporter": reporter, "phone": phone, "description": description}
    status, answer = change(request, who, "/tickets", "request", "", dict(values))
    if status != 201:
        problems = answer.get("fields") or {"body": answer["error"]}
        return _request_page(request, who, values, problems, lang, status)
    return RedirectResponse(f"/console/tickets/{answer['ticket']}?done=opened", status_code=303)


@router.post("/tickets/{ticket_id}/follow-up")
async def follow_up(
    request: Request,
    ticket_id: str,
    satisfaction: Short = "",
    contact: Short = "",
    note: Long = "",
) -> Response:
    who = require(request, "follow_up", ticket_id)
    # satisfaction as typed: the form's own check says what is wrong with "" or "9"
    body: dict[str, Any] = {"satisfaction": int(satisfaction) if satisfaction.isdigit() else satisfaction}
    body |= {"contact": contact, "note": note}
    status, answer = change(request, who, f"/tickets/{ticket_id}/follow-up", "follow_up", ticket_id, body)
    return _back(ticket_id, "followed_up") if status == 200 else _fail(ticket_id, status, answer)


@router.post("/tickets/{ticket_id}/complaints")
async def complain(request: Request, ticket_id: str, complainant: Short = "", text: Long = "") -> Response:
    who = require(request, "complain", ticket_id)
    body = {"complainant": complainant, "text": text}
    status, answer = change(request, who, f"/tickets/{ticket_id}/complaints", "complain", ticket_id, body)
    return _back(ticket_id, "complained") if status == 201 else _fail(ticket_id, status, answer)


@router.post("/tickets/{ticket_id}/complaints/{ref}/close")
async def complaint_close(
    request: Request, ticket_id: str, ref: str, resolution: Long = "", valid: Short = "yes"
) -> Response:
    who = require(request, "complaint_close", ticket_id)
    body = {"resolution": resolution, "valid": valid != "no"}
    path = f"/tickets/{ticket_id}/complaints/{ref}/close"
    status, answer = change(request, who, path, "complaint_close", ticket_id, body)
    return _back(ticket_id, "complaint_closed") if status == 200 else _fail(ticket_id, status, answer)


def _fail(ticket: str, status: int, answer: dict[str, Any]) -> Response:
    """A bad form back to the ticket page with its words; no ticket, or the wrong state, refused."""
    if status == 400:
        return _back(ticket, error=str(answer["error"]))
    raise Refused(status, str(answer["error"]))


@router.get("/follow-ups")
async def follow_up_list(request: Request, lang: str = "") -> Response:
    who = require(request, "follow_up")
    rows = _frontdesk(request).follow_ups()
    return page(request, "follow_ups.html", {"who": who, "rows": rows}, lang)


@router.get("/complaints")
async def complaint_list(request: Request, lang: str = "", open: str = "") -> Response:
    who = require(request, "complain")
    read = _frontdesk(request).get("/complaints", {"open": open})
    assert read is not None
    context = {"who": who, "rows": read(), "open_only": bool(open)}
    return page(request, "complaints.html", context, lang)
