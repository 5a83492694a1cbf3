"""The web app: the JSON API, the console and the live stream, served by uvicorn in the daemon's loop.

``build_app(web)`` assembles one router per route group (``tickets``, ``desk`` — 报修, 回访, 投诉 —,
``silences``, ``health`` —
healthz and metrics —, ``auth`` — login and identity —, ``console`` — pages and the event stream —,
``deskpages`` — the desk's pages —, ``kpis``);
``WebServer`` runs it as a task of ``Monitord.run``'s task group. Errors are JSON
``{"error": ...}`` on the API and a plain page on ``/console``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from monitord.core.fieldwords import said
from monitord.core.i18n import translator
from monitord.daemon.frontdesk import FrontDesk
from monitord.daemon.web import auth, console, desk, deskpages, health, kpis, silences, tickets
from monitord.daemon.web.auth import Refused, api_locale
from monitord.daemon.web.context import Web
from monitord.daemon.web.errors import NOT_AN_OBJECT, NOT_FOUND
from monitord.daemon.web.limits import MAX_CONNECTIONS, SOCKET_TIMEOUT, BodyLimit, IdleClosingH11
from monitord.daemon.web.pages import locale_of, page
from monitord.people.notify import Outbox

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
# FastAPI's and Starlette's words → ours: a body json.loads could not take (bad UTF-8, nested too
# deep), and a path no route serves.
_STARLETTE_WORDS = {
    (400, "There was an error parsing the body"): NOT_AN_OBJECT,
    (404, "Not Found"): NOT_FOUND,
}


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc if x != "body") or "body"


def build_app(web: Web, outbox: Outbox | None = None) -> FastAPI:
    # strict_content_type off: a body sent without a Content-Type is read as JSON, as the API always did
    # (curl -d and the shell scripts at sites send none).
    app = FastAPI(title="monitord", version="1", docs_url=None, redoc_url=None, strict_content_type=False)
    app.state.web, app.state.outbox, app.state.log = web, outbox, log
    app.state.tz = web.roster.tz if web.roster else None
    app.state.frontdesk = FrontDesk(web.core)
    for group in (health, desk, tickets, silences, auth, console, deskpages, kpis):  # desk before tickets
        app.include_router(group.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="static")
    # A board of 1,000 assets is ~195 KiB of HTML, under 10 KiB gzipped: it matters on a phone's mobile data.
    # (Server-sent events are never compressed: starlette leaves text/event-stream alone.)
    app.add_middleware(GZipMiddleware, minimum_size=1024)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/console", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        if request.url.path.startswith("/console") and request.url.path != "/console/events":
            if exc.status == 401:
                return RedirectResponse("/console/login", status_code=303)
            reason = exc.said(locale_of(request, request.query_params.get("lang", "")))
            return page(request, "refused.html", {"status": exc.status, "reason": reason}, status=exc.status)
        # The API's refusal in the request's language: ?lang=, Accept-Language, else the site's.
        return JSONResponse({"error": exc.said(api_locale(request))}, status_code=exc.status)

    # 400, 404 and 422 in the request's language, like the refusals: ?lang=, Accept-Language, else the site's.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        detail = str(exc.detail)
        if ours := _STARLETTE_WORDS.get((exc.status_code, detail)):
            detail = translator(api_locale(request))(ours)
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        locale = api_locale(request)
        # Not a JSON object at all (a list, a string, broken JSON): 400, as before the rewrite.
        if any(e["type"] == "json_invalid" or tuple(e["loc"]) == ("body",) for e in errors):
            return JSONResponse({"error": translator(locale)(NOT_AN_OBJECT)}, status_code=400)
        text = "; ".join(f"{_field(tuple(e['loc']))}: {said(e, locale)}" for e in errors)
        return JSONResponse(
            {"error": text, "fields": [_field(tuple(e["loc"])) for e in errors]}, status_code=422
        )

    return app


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C and SIGTERM belong to the daemon, which stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """uvicorn serving the app on a socket bound at construction (so the port is known at once)."""

    socket_timeout = SOCKET_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def __init__(
        self, web: Web, host: str, port: int, outbox: Outbox | None = None, proxies: Sequence[str] = ()
    ) -> None:
        """``proxies``: the reverse proxies whose X-Forwarded-For/-Proto headers are believed."""
        self.web = web
        self.app = build_app(web, outbox)
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            BodyLimit(self.app, timeout=self.socket_timeout),
            log_level="warning",
            access_log=False,  # requests carry tokens and signed links: none of them is logged
            http=IdleClosingH11,
            ws="none",
            lifespan="off",
            timeout_keep_alive=int(self.socket_timeout),
            limit_concurrency=self.max_connections,
            timeout_graceful_shutdown=2,
            # The audit trail's address and the cookie's Secure flag come from these headers: only
            # a configured proxy may set them, or any local client could name another address.
            proxy_headers=bool(proxies),
            forwarded_allow_ips=list(proxies) or None,
        )
        self.server = _Server(config)

    async def serve(self) -> None:
        """Serve until ``stop``; the daemon's task group runs this."""
        try:
            await self.server.serve(sockets=[self.sock])
        except asyncio.CancelledError:
            self.stop()
            raise

    def stop(self) -> None:
        self.web.stream.close()  # open event streams end, so the server's shutdown need not wait them out
        self.server.should_exit = True
