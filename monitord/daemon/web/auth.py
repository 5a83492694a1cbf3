"""Who is calling, and may they: bearer tokens, the console's session cookie, signed links; login.

Three proofs, in this order: ``Authorization: Bearer <token>`` (a person's token, or ``api.token``
for the CLI as the admin ``api``), the signed session cookie the login page sets, and for one
ticket's page and actions the signed link a notification carried. The role decides the rest
(``monitord.people.identity.may``): every read of site data needs someone proven (``require_read``;
viewer is the least role), a resident's phone in full a technician (``phone``). A refusal is 401
(nobody proven) or 403 (proven, not allowed), its reason a catalog msgid said in the request's
language (``Refused.said``).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer

from monitord.core.i18n import N_, UnknownLocale, Worded, normalise
from monitord.daemon.web.context import Web
from monitord.daemon.web.models import Error, Me
from monitord.daemon.web.pages import locale_of, page
from monitord.people.identity import LINK_ACTIONS, Identity, may
from monitord.tickets.forms import redact_phones

SESSION = "monitord_session"
SESSION_TTL = 12 * 3600.0  # one shift: a phone left on the desk does not stay logged in for days
MISSING = N_("write calls need Authorization: Bearer <api.token>")
MISSING_READ = N_(
    "reading needs a token: send Authorization: Bearer <token> (a viewer's or higher, or api.token),"
    " or log in to the console"
)
WRONG = N_("wrong token: it matches neither the daemon's api.token nor any person's token")
READ_ONLY = N_("this API is read-only: the config sets no api.token and no person has a token")
CLOSED = N_(
    "reading needs a token, and this site has none: give a person a token and a role (viewer or"
    " higher) in roster.people, or set api.token"
)
#: The actions a refusal may name that the pages' WORDS do not mark (the msgid is the word itself,
#: so English says it as the API always did).
ACTION_WORDS = (
    N_("reopen"),
    N_("silence"),
    N_("request"),
    N_("follow_up"),
    N_("complain"),
    N_("complaint_close"),
)

router = APIRouter()
# Declares the bearer scheme on the routes that change things (OpenAPI); ``require`` does the checking.
BEARER = [Depends(HTTPBearer(auto_error=False, description="a person's token, or api.token"))]
#: A read's OpenAPI extras: the bearer scheme and its refusal.
READS: dict[str, Any] = {
    "dependencies": BEARER,
    "responses": {401: {"model": Error, "description": "no token, a wrong one, or no session"}},
}


class Refused(Worded):
    """A call the caller may not make: 401 (who are you?) or 403 (not you), with the reason.

    ``message`` is a msgid filled with ``values`` (``Worded``): the English for the audit trail, the
    reader's words for the answer, a ``role`` or ``action`` included. A message made elsewhere (the
    desk's answer, a standby's pointer to the active) has no values and is said as written when no
    catalog holds it.
    """

    translated = ("role", "action")

    def __init__(self, status: int, message: str, **values: str) -> None:
        super().__init__(message, **values)
        self.status = status


def api_locale(request: Request) -> str:
    """The language of the API's refusals: ``?lang=``, else the first known ``Accept-Language``, else
    the site's (the console's pages choose theirs by ``pages.locale_of``: a browser always sends the
    header, a person's ``locale:`` should win there)."""
    asked = [tag.split(";")[0].strip() for tag in request.headers.get("accept-language", "").split(",")]
    for choice in (request.query_params.get("lang", ""), *asked):  # the header's order is the client's
        with contextlib.suppress(UnknownLocale):
            if choice:
                return normalise(choice)
    return locale_of(request)


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def caller(request: Request) -> Identity | None:
    """The identity a token or session proves; None when the request proves none."""
    web = web_of(request)
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer").strip()
    if token:
        who = web.identities.by_token(token)
        if who is None:
            raise Refused(401, WRONG)
        return who
    cookie = request.cookies.get(SESSION)
    if cookie:
        claims = web.signer.verify("session", cookie, web.core.clock.now())
        if isinstance(claims, dict):
            return web.identities.named(claims["who"], "session")
    return None


def link_holder(request: Request, ticket: str, link: str) -> Identity:
    """The person a signed link for ``ticket`` names; ``Refused`` 403 when expired or not genuine."""
    web = web_of(request)
    claims = web.signer.verify("link", link, web.core.clock.now())
    if claims == "expired":
        raise Refused(403, N_("this link has expired: links in notifications work for a limited time"))
    if claims is None or claims.get("t") != ticket:
        raise Refused(403, N_("this link is not valid: it was changed, or it is for another ticket"))
    who = web.identities.named(claims["who"], "link")
    if who is None:
        raise Refused(403, N_("{name} is no longer on the roster"), name=claims["who"])
    return who


def reader(request: Request, ticket: str = "", link: str = "") -> Identity | None:
    """Who reads: a link for this ticket, a token or session; None for an anonymous read."""
    if link and ticket:
        return link_holder(request, ticket, link)
    return caller(request)


def require_read(request: Request, ticket: str = "", link: str = "") -> Identity:
    """The caller of a read of site data: anyone proven (a viewer at least), or for one ticket the
    holder of its link; 401 naming what is missing. ``/healthz``, ``/metrics`` and the OpenAPI
    document stay open (Prometheus scrapes without a token; the schema holds no site data)."""
    who = reader(request, ticket, link)
    if who is None:
        raise Refused(401, MISSING_READ if web_of(request).identities.any else CLOSED)
    return who  # every role reads: viewer is the least there is


def for_reader(who: Identity, data: Any) -> Any:
    """What a read answers: a resident's phone in full to a technician or higher (who may call them
    back), ``138****5678`` to a viewer (a wall screen, a visitor at the desk)."""
    return data if may(who.role, "phone") else redact_phones(data)


def require(request: Request, action: str, ticket: str = "", link: str = "") -> Identity:
    """The caller, when allowed to ``action`` (the audit trail gets the refusals it can name)."""
    web = web_of(request)
    who = link_holder(request, ticket, link) if link and ticket else caller(request)
    if who is None:
        raise Refused(401, MISSING if web.identities.any else READ_ONLY)
    if who.via == "link" and action not in LINK_ACTIONS:
        refused = Refused(
            403,
            N_("a notification link allows only {actions}: log in to {action}"),
            actions=", ".join(LINK_ACTIONS),
            action=action,
        )
    elif not may(who.role, action):
        refused = Refused(
            403, N_("{name} is a {role} and may not {action}"), name=who.name, role=who.role, action=action
        )
    elif web.fleet is not None and (elsewhere := web.fleet.not_here()):
        refused = Refused(503, elsewhere)  # a standby's desk is not the site's: nothing done here sticks
    else:
        return who
    web.audit(request, who, action, ticket, refused.status, str(refused))
    raise refused


@router.get("/me", response_model=Me, responses={401: {"description": "no identity proven"}})
async def me(request: Request) -> Me:
    who = caller(request)
    if who is None:
        raise Refused(401, N_("not logged in"))
    return Me(name=who.name, role=who.role, via=who.via)


@router.get("/console/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, lang: str = "") -> Response:
    return page(request, "login.html", {"error": ""}, lang)


@router.post("/console/login", include_in_schema=False)
async def login(request: Request, token: Annotated[str, Form(max_length=500)], lang: str = "") -> Response:
    web = web_of(request)
    who = web.identities.by_token(token.strip())
    if who is None:
        address = request.client.host if request.client else ""
        # No identity to name: the address is what the trail can keep (log only, not the store).
        request.app.state.log.warning("console login refused from %s: unknown token", address)
        return page(request, "login.html", {"error": "That token belongs to no one."}, lang, status=401)
    now = web.core.clock.now()
    cookie = web.signer.sign("session", {"who": who.name}, now + SESSION_TTL)
    web.audit(request, Identity(who.name, who.role, "session"), "login", "", 303)
    out = RedirectResponse("/console", status_code=303)
    secure = request.url.scheme == "https"  # behind a trusted proxy, uvicorn takes X-Forwarded-Proto
    out.set_cookie(
        SESSION, cookie, max_age=int(SESSION_TTL), httponly=True, samesite="strict", secure=secure, path="/"
    )
    return out


@router.post("/console/logout", include_in_schema=False)
async def logout() -> Response:
    out = RedirectResponse("/console/login", status_code=303)
    out.delete_cookie(SESSION, path="/")
    return out
