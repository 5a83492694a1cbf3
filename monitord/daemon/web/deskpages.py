"""The duty desk's console pages: the 报修 form, 回访 and 投诉 on a ticket, the follow-up and complaint lists.

Beside ``console`` (which shows a ticket) and ``desk`` (the JSON routes): every change here is the
same ``FrontDesk.post`` call the API makes — the forms checked by ``tickets/forms.py``, the event down
the one road — then audited like the API's. A bad form comes back with each field's problem next to
the field; roles as docs/console.md says (报修 technician+, 回访 and 投诉 dispatcher+).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from monitord.core.i18n import N_, translator
from monitord.daemon.frontdesk import FrontDesk
from monitord.daemon.web.auth import Refused, require, web_of
from monitord.daemon.web.desk import change
from monitord.daemon.web.pages import locale_of, page
from monitord.people.identity import Identity, may
from monitord.tickets.desk import Ticket

router = APIRouter(prefix="/console", include_in_schema=False)
#: The ticket page's desk fields as its forms label them, to name a refused one in the reader's words.
LABELS = {
    "contact": N_("Contact"),
    "satisfaction": N_("Satisfaction (1–5)"),
    "note": N_("note"),
    "complainant": N_("Complainant"),
    "text": N_("Complaint"),
    "resolution": N_("Resolution"),
}
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


def _said(request: Request, who: Identity, lang: str) -> Callable[[str], str]:
    """The desk's words (tickets/forms.py, desk.py, frontdesk.py TEXT) in the reader's language; a
    message with its values filled in (a trade, a ticket id) has no msgid and stays as the desk said it."""
    return translator(locale_of(request, lang, who.locale))


def _back(ticket: str, done: str = "", error: str = "", lang: str = "") -> Response:
    pairs = (("done", done), ("error", error), ("lang", lang))
    query = urllib.parse.urlencode({k: v for k, v in pairs if v})
    return RedirectResponse(f"/console/tickets/{ticket}?{query}#desk", status_code=303)


def _request_page(
    request: Request,
    who: Identity,
    values: dict[str, str],
    problems: dict[str, str],
    lang: str,
    status: int,
    same: list[dict[str, Any]] | None = None,
) -> Response:
    """The 报修 form; ``same``: the active tickets the request may be (``may_be_the_same``), each
    offered to add the report to, beside opening a new ticket anyway."""
    context = {
        "who": who,
        "values": values,
        "problems": problems,
        "same": same or [],
        "buildings": _frontdesk(request).buildings(),
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
    to: Short = "",
    new: Short = "",
    lang: str = "",
) -> Response:
    who = require(request, "request")
    values = {"building": building, "floor": floor, "unit": unit, "trade": trade, "priority": priority}
    values |= {"reporter": reporter, "phone": phone, "description": description}
    body = {**values, "to": to, "new": new == "1"}
    status, answer = change(
        request, who, "/tickets", "request", "", body, locale_of(request, lang, who.locale)
    )
    if status == 409 and "tickets" in answer:  # an active ticket may be this very incident
        return _request_page(request, who, values, {}, lang, status, answer["tickets"])
    if status != 201:  # the desk's answer is in the reader's words already
        problems = answer.get("fields") or {"body": answer["error"]}
        return _request_page(request, who, values, problems, lang, status)
    return RedirectResponse(f"/console/tickets/{answer['ticket']}?done={answer['event']}", status_code=303)


def _ticket_form(
    request: Request, ticket: str, action: str, path: str, body: dict[str, Any], ok: int, done: str, lang: str
) -> Response:
    """One of the ticket page's desk forms: the desk's change, then back to the page (or refused)."""
    who = require(request, action, ticket)
    status, answer = change(request, who, path, action, ticket, body, locale_of(request, lang, who.locale))
    if status == ok:
        return _back(ticket, done, lang=lang)
    return _fail(request, who, ticket, status, answer, lang)


@router.post("/tickets/{ticket_id}/follow-up")
async def follow_up(
    request: Request,
    ticket_id: str,
    satisfaction: Short = "",
    contact: Short = "",
    note: Long = "",
    lang: str = "",
) -> Response:
    # satisfaction as typed: the form's own check says what is wrong with "" or "9"
    body: dict[str, Any] = {"satisfaction": int(satisfaction) if satisfaction.isdigit() else satisfaction}
    body |= {"contact": contact, "note": note}
    path = f"/tickets/{ticket_id}/follow-up"
    return _ticket_form(request, ticket_id, "follow_up", path, body, 200, "followed_up", lang)


@router.post("/tickets/{ticket_id}/complaints")
async def complain(
    request: Request, ticket_id: str, complainant: Short = "", text: Long = "", lang: str = ""
) -> Response:
    body = {"complainant": complainant, "text": text}
    path = f"/tickets/{ticket_id}/complaints"
    return _ticket_form(request, ticket_id, "complain", path, body, 201, "complained", lang)


@router.post("/tickets/{ticket_id}/complaints/{ref}/close")
async def complaint_close(
    request: Request, ticket_id: str, ref: str, resolution: Long = "", valid: Short = "yes", lang: str = ""
) -> Response:
    body = {"resolution": resolution, "valid": valid != "no"}
    path = f"/tickets/{ticket_id}/complaints/{ref}/close"
    return _ticket_form(request, ticket_id, "complaint_close", path, body, 200, "complaint_closed", lang)


def _fail(
    request: Request, who: Identity, ticket: str, status: int, answer: dict[str, Any], lang: str
) -> Response:
    """A bad form back to the ticket page, each field named as its form labels it, in the reader's
    words; no ticket, or the wrong state, refused."""
    if status != 400:
        raise Refused(status, str(answer["error"]))  # in the reader's words already
    said = _said(request, who, lang)
    fields = answer.get("fields") or {}
    error = "; ".join(f"{said(LABELS.get(k, k))}: {v}" for k, v in fields.items())
    return _back(ticket, error=error or str(answer["error"]), lang=lang)


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
