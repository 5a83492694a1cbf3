"""The duty desk's calls on the running core: 报修, 回访, 投诉, their lists and the weekly KPIs.

Daemon layer, beside ``core``: each call checks the dispatcher's form (``tickets.forms``), asks
the ticket desk for the event and sends it down the one ``EventRoad`` (store, metrics, the
dispatcher's roster assignment and pages), exactly as ``Core.act`` does for the other actions.
``get`` and ``post`` map the HTTP API's paths onto these calls, so the web app's ``desk`` router
(monitord/daemon/web/desk.py) only parses, authenticates, audits and answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from monitord.config.site import site_zone
from monitord.core import fieldwords
from monitord.core.i18n import DEFAULT, N_, Worded
from monitord.daemon.core import Core
from monitord.tickets.desk import NoSuchTicket, Ticket, TicketActionError, TicketEvent, TicketInputError
from monitord.tickets.forms import ComplaintClose, ComplaintForm, FollowUpForm, RepairRequest
from monitord.tickets.quality import Week, weekly
from monitord.tickets.worklists import complaints, follow_ups_due, may_be_the_same

M = TypeVar("M", bound=BaseModel)

#: What the API tells people, in one place (for the message catalogs).
TEXT = {
    "trade": N_("{trade!r} is no skill of the roster: one of {skills}"),
    "no_ticket": N_("no ticket {ticket}"),
    "no_complaint": N_("no complaint {ref} on {ticket}"),
    "same": N_(
        "{building} already has an active {trade} ticket: {tickets}. Add this report to it (to: the "
        "ticket) or, if it is another incident, open a new ticket (new: true)"
    ),
}
_FOLLOW_UP = re.compile(r"^/tickets/([^/]+)/follow-up$")
_COMPLAIN = re.compile(r"^/tickets/([^/]+)/complaints$")
_COMPLAINT_CLOSE = re.compile(r"^/tickets/([^/]+)/complaints/([^/]+)/close$")


def _op(summary: str, form: type[BaseModel], ok: int) -> dict[str, Any]:
    """One write call of the desk as the API's OpenAPI document describes it."""
    return {
        "summary": summary,
        "security": [{"token": []}],
        "requestBody": {"content": {"application/json": {"schema": form.model_json_schema()}}},
        "responses": {
            str(ok): {"description": "the ticket event"},
            "400": {"description": "a bad form: which fields, and why"},
            "401": {"description": "no token"},
            "404": {"description": "no such ticket or complaint"},
            "409": {
                "description": "not allowed in the ticket's state; for a request, the active tickets "
                "of its trade in its building it may be (``tickets``)"
            },
        },
    }


def _read(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": summary}}}}


OPENAPI_OPEN = _op("open a ticket for a resident's repair request (报修)", RepairRequest, 201)
OPENAPI_PATHS: dict[str, Any] = {
    "/tickets/{id}/follow-up": {
        "post": _op("the follow-up call (回访); closes the resolved ticket", FollowUpForm, 200)
    },
    "/tickets/{id}/complaints": {"post": _op("log a complaint (投诉) about a ticket", ComplaintForm, 201)},
    "/tickets/{id}/complaints/{complaint}/close": {
        "post": _op(
            "close a complaint with its resolution, or dismiss it (valid: false)", ComplaintClose, 200
        )
    },
    "/follow-ups": _read("resolved tickets waiting for their follow-up call, with whom to call"),
    "/complaints": _read("complaints (?open=1: those not closed yet)"),
    "/report/desk": _read("回访率, satisfaction, complaints and 有效投诉办结率 per ISO week"),
}


class FormError(ValueError):
    """A form the desk will not take, in words for the person who filled it in: each bad field and
    its problem (the console shows it next to the field), ``str()`` in English."""

    def __init__(self, problems: dict[str, Worded | Mapping[str, Any]]) -> None:
        """``problems``: field → our ``Worded`` problem, or pydantic's error (``core.fieldwords``)."""
        self.problems = problems
        super().__init__(self.said("en"))

    def said(self, locale: str) -> str:
        """Every bad field and its problem, in ``locale``'s words."""
        return "; ".join(f"{k}: {v}" for k, v in self.fields(locale).items())

    def fields(self, locale: str) -> dict[str, str]:
        """Each bad field's problem in ``locale``'s words."""
        return {
            k: v.said(locale) if isinstance(v, Worded) else fieldwords.said(v, locale)
            for k, v in self.problems.items()
        }


def form_of(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``model``; ``FormError`` naming each bad field (``phone: not a phone number``)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems: dict[str, Worded | Mapping[str, Any]] = {}
        for e in exc.errors():
            problems.setdefault(".".join(str(p) for p in e["loc"]) or "body", e)
        raise FormError(problems) from None


class SameIncident(Worded, ValueError):
    """A request about what active tickets may already be (``may_be_the_same``): refused (409) with
    them, so the dispatcher adds it to one or says it is another incident."""

    def __init__(self, same: list[Ticket], **values: str) -> None:
        super().__init__(TEXT["same"], **values)
        self.tickets = same


class FrontDesk:
    """The duty desk's calls on one core; every change leaves by the core's road."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._buildings = {a.id: str(a.location.get("building", "")) for a in core.config.assets}

    def _do(self, call: Callable[..., TicketEvent], by: str, *args: str, **fields: Any) -> TicketEvent:
        """``call`` on the desk (a form's fields as its keywords) by ``by``, now; the event takes the
        road."""
        ev = call(*args, actor=by, now=self.core.clock.now(), **fields)
        self.core.road.emit(tickets=[ev])
        return ev

    def open_request(self, req: RepairRequest, actor: str) -> TicketEvent:
        skills = self.skills()
        if self.core.config.roster is not None and req.trade not in skills:
            raise FormError({"trade": Worded(TEXT["trade"], trade=req.trade, skills=", ".join(skills))})
        desk, by = self.core.desk, req.actor or actor
        if req.to:
            return self._do(lambda **kw: desk.add_report(req.to, req, **kw), by)
        same = (
            [] if req.new else may_be_the_same(desk, req.building, req.location, req.trade, self.building_of)
        )
        if same:
            listed = ", ".join(f"{t.id} ({t.priority}, {t.state}: {t.summary})" for t in same)
            raise SameIncident(same, building=req.building, trade=req.trade, tickets=listed)
        return self._do(lambda **kw: desk.open_request(req, **kw), by)

    def building_of(self, t: Ticket) -> str:
        """An alert ticket's building: its asset's (config ``location.building``)."""
        return self._buildings.get(t.asset, "")

    def buildings(self) -> list[str]:
        """The site's buildings, as its assets name them: what the request form suggests."""
        return sorted({b for b in self._buildings.values() if b})

    def follow_up(self, ticket: str, form: FollowUpForm, actor: str) -> TicketEvent:
        return self._do(self.core.desk.follow_up, form.actor or actor, ticket, **_fields(form))

    def complain(self, ticket: str, form: ComplaintForm, actor: str) -> TicketEvent:
        return self._do(self.core.desk.complain, form.actor or actor, ticket, **_fields(form))

    def close_complaint(self, ticket: str, ref: str, form: ComplaintClose, actor: str) -> TicketEvent:
        return self._do(self.core.desk.close_complaint, form.actor or actor, ticket, ref, **_fields(form))

    def skills(self) -> list[str]:
        """The trades a 报修 may name: the roster's skills (none: any trade)."""
        roster = self.core.config.roster
        return sorted({s for team in roster.teams.values() for s in team.skills}) if roster else []

    def follow_ups(self) -> list[dict[str, Any]]:
        return follow_ups_due(self.core.desk, self.core.config.tickets.follow_up)

    def weeks(self) -> list[Week]:
        """The weekly service-quality KPIs from the desk's events: the store's, restored, and every one
        since (docs/desk.md#kpis); the last item sums all weeks. The console's KPI page shows these."""
        events = [ev for t in self.core.desk.tickets.values() for ev in t.events]
        return weekly(events, site_zone(self.core.config))

    def report(self) -> dict[str, Any]:
        """``weeks`` as the API answers them (``GET /report/desk``)."""
        return {"site": self.core.config.site.id, "weeks": [w.as_json() for w in self.weeks()]}

    # -- HTTP ------------------------------------------------------------------------------------

    def get(self, path: str, query: dict[str, str]) -> Callable[[], Any] | None:
        """The read a GET path asks for (to run on the daemon's loop), or None: not the desk's path."""
        if path == "/follow-ups":
            return self.follow_ups
        if path == "/complaints":
            return lambda: complaints(self.core.desk, query.get("open", "") in ("1", "true", "yes"))
        if path == "/report/desk":
            return self.report
        return None

    def post(
        self, path: str, actor: str, locale: str = DEFAULT
    ) -> Callable[[dict[str, Any]], tuple[int, Any]] | None:
        """The change a POST path asks for, taking the JSON body (to run on the daemon's loop), or
        None: not the desk's path. Answers 201/200 with the event, 400 for a bad form, 404 for an
        unknown ticket or complaint, 409 when the ticket's state forbids it; an ``error`` in
        ``locale``'s words, with its English as ``english`` (what the audit trail keeps)."""
        if path == "/tickets":
            return _answer(lambda b: self.open_request(form_of(RepairRequest, b), actor), 201, locale)
        if follow := _FOLLOW_UP.match(path):
            ticket = follow[1]
            return _answer(lambda b: self.follow_up(ticket, form_of(FollowUpForm, b), actor), 200, locale)
        if complain := _COMPLAIN.match(path):
            about = complain[1]
            return _answer(lambda b: self.complain(about, form_of(ComplaintForm, b), actor), 201, locale)
        if close := _COMPLAINT_CLOSE.match(path):
            on, ref = close[1], close[2]
            return _answer(
                lambda b: self.close_complaint(on, ref, form_of(ComplaintClose, b), actor), 200, locale
            )
        return None


def _fields(form: BaseModel) -> dict[str, Any]:
    """A form's fields but the actor: the desk call's keywords, by the same names."""
    return form.model_dump(exclude={"actor"})


def _answer(
    make: Callable[[dict[str, Any]], TicketEvent], status: int, locale: str
) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def handle(body: dict[str, Any]) -> tuple[int, Any]:
        try:
            return status, asdict(make(body))
        except FormError as exc:
            return 400, {"error": exc.said(locale), "english": str(exc), "fields": exc.fields(locale)}
        except TicketInputError as exc:
            return 400, _refusal(exc, locale)
        except NoSuchTicket as exc:  # only the desk's own: any other KeyError is a bug, a 500
            ticket, _, ref = str(exc.args[0]).partition("/")
            missing = (
                Worded(TEXT["no_complaint"], ref=ref, ticket=ticket)
                if ref
                else Worded(TEXT["no_ticket"], ticket=ticket)
            )
            return 404, _refusal(missing, locale)
        except TicketActionError as exc:
            return 409, _refusal(exc, locale)
        except SameIncident as exc:
            return 409, _refusal(exc, locale) | {"tickets": [_listed(t) for t in exc.tickets]}

    return handle


def _refusal(exc: Worded, locale: str) -> dict[str, Any]:
    return {"error": exc.said(locale), "english": str(exc)}


def _listed(t: Ticket) -> dict[str, Any]:
    """An active ticket a request may duplicate, as the 409 lists it."""
    keys = ("id", "priority", "state", "category", "summary", "location", "assignee", "opened_at")
    return {("ticket" if k == "id" else k): getattr(t, k) for k in keys}
