"""The duty desk's route group: 报修 requests, 回访 follow-ups, 投诉 complaints, and their lists.

The calls themselves are ``monitord.daemon.frontdesk.FrontDesk`` (forms checked there, 400 naming the
field, events down the road); this router authenticates, drops any ``actor`` the client sent (the
actor is whom the call proves), answers and audits. Included before the tickets router, whose
``/tickets/{id}/{action}`` would otherwise take ``follow-up`` and ``complaints`` for actions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from monitord.daemon.frontdesk import OPENAPI_OPEN, OPENAPI_PATHS, FrontDesk
from monitord.daemon.web.auth import BEARER, READS, api_locale, for_reader, require, require_read, web_of
from monitord.daemon.web.models import Error
from monitord.people.identity import Identity

router = APIRouter()


def _frontdesk(request: Request) -> FrontDesk:
    desk: FrontDesk = request.app.state.frontdesk
    return desk


def change(
    request: Request, who: Identity, path: str, action: str, ticket: str, body: dict[str, Any], locale: str
) -> tuple[int, Any]:
    """The desk's change at ``path`` by ``who`` (any ``actor`` in the body dropped), audited (in
    English): the status and answer, a refusal in ``locale``'s words. The console's desk pages
    (deskpages.py) make their changes through here too."""
    call = _frontdesk(request).post(path, who.name, locale)
    assert call is not None  # the callers' paths are the desk's
    status, answer = call({k: v for k, v in body.items() if k != "actor"})
    english = answer.pop("english", "") if status >= 300 else ""
    target = ticket or (answer.get("ticket", "") if status < 300 else "")
    web_of(request).audit(request, who, f"desk.{action}", target, status, english)
    return status, answer


def _change(request: Request, path: str, action: str, ticket: str, body: dict[str, Any] | None) -> Any:
    who = require(request, action, ticket)
    status, answer = change(request, who, path, action, ticket, body or {}, api_locale(request))
    return JSONResponse(answer, status_code=status)


JsonObject = Annotated[dict[str, Any] | None, Body()]  # the desk's forms check it (400 naming fields)
ANSWERS: dict[int | str, dict[str, Any]] = {s: {"model": Error} for s in (400, 401, 403, 404, 409)}


# path (FrontDesk's, with the ticket and complaint as parameters), the action a role must allow, the
# desk's OpenAPI words, the answer's status
WRITES = (
    ("/tickets", "request", OPENAPI_OPEN, 201),
    ("/tickets/{ticket_id}/follow-up", "follow_up", OPENAPI_PATHS["/tickets/{id}/follow-up"]["post"], 200),
    ("/tickets/{ticket_id}/complaints", "complain", OPENAPI_PATHS["/tickets/{id}/complaints"]["post"], 201),
    (
        "/tickets/{ticket_id}/complaints/{ref}/close",
        "complaint_close",
        OPENAPI_PATHS["/tickets/{id}/complaints/{complaint}/close"]["post"],
        200,
    ),
)


def _write(template: str, action: str) -> Callable[..., Awaitable[Any]]:
    async def endpoint(request: Request, body: JsonObject = None) -> Any:
        params = request.path_params
        return _change(request, template.format(**params), action, params.get("ticket_id", ""), body)

    return endpoint


for _template, _action, _op, _status in WRITES:
    router.add_api_route(
        _template,
        _write(_template, _action),
        methods=["POST"],
        status_code=_status,
        summary=_op["summary"],
        openapi_extra={"requestBody": _op["requestBody"]},
        dependencies=BEARER,
        responses=ANSWERS,
    )


def _read(request: Request, path: str) -> Any:
    who = require_read(request)
    read = _frontdesk(request).get(path, dict(request.query_params))
    assert read is not None
    return for_reader(who, read())


@router.get("/follow-ups", **READS)
async def follow_ups(request: Request) -> Any:
    """Resolved tickets waiting for their follow-up call, with whom to call."""
    return _read(request, "/follow-ups")


@router.get("/complaints", **READS)
async def complaints(request: Request, open: str = "") -> Any:
    """Complaints (``?open=1``: those not closed yet)."""
    del open  # FrontDesk reads it from the query
    return _read(request, "/complaints")


@router.get("/report/desk", **READS)
async def desk_report(request: Request) -> Any:
    """回访率, satisfaction, complaints and 有效投诉办结率 per ISO week."""
    return _read(request, "/report/desk")
