"""HTTP API for the duty desk and the technicians: tickets, alerts, assets.

JSON over HTTP, served beside ``/metrics`` by a small threaded server. Reads
are open; write calls need ``Authorization: Bearer <api.token>`` (the token is
never logged). Handlers run in the server's threads but every read and change
of the ticket desk happens on the daemon's event loop (``call``), so the API
never races the pipeline. ``GET /openapi.json`` describes it.

What a client may cost is bounded: a body over ``MAX_BODY`` bytes is refused
(413) unread, a connection idle for ``SOCKET_TIMEOUT`` seconds is closed, at
most ``MAX_CONNECTIONS`` are served at once (more get 503 and are closed), and
a body that is not a JSON object is a 400, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http.server
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from monitord.alerting.mute import Matcher
from monitord.core.units import parse_duration
from monitord.daemon.core import Core
from monitord.daemon.frontdesk import OPENAPI_OPEN, OPENAPI_PATHS, FrontDesk
from monitord.tickets.desk import ACTIONS, Ticket, TicketActionError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BODY = 64 * 1024  # bytes: a note or a silence is a few hundred
SOCKET_TIMEOUT = 10.0  # seconds a connection may sit idle (or trickle) before it is closed
MAX_CONNECTIONS = 64  # served at once; each is a thread
_ACTION = re.compile(r"^/tickets/([^/]+)/(" + "|".join(ACTIONS) + r")$")
_SILENCE = re.compile(r"^/silences(?:/([^/]+)/expire)?$")

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "monitord", "version": "1"},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/healthz": {
            "get": {
                "summary": "liveness, and whether data is being stored",
                "responses": {
                    "200": {"description": "ok"},
                    "503": {"description": "unhealthy: the problems (store writes failing, disk full)"},
                },
            }
        },
        "/tickets": {
            "get": {
                "summary": "list tickets",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("state", "priority", "asset", "source")
                ],
                "responses": {"200": {"description": "tickets"}},
            },
            "post": OPENAPI_OPEN,
        },
        "/tickets/{id}": {
            "get": {
                "summary": "one ticket with its events",
                "responses": {"200": {"description": "ticket"}, "404": {"description": "none"}},
            }
        },
        **{
            f"/tickets/{{id}}/{a}": {
                "post": {
                    "summary": f"{a} a ticket",
                    "security": [{"token": []}],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "actor": {"type": "string"},
                                        "note": {"type": "string"},
                                        "assignee": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "200": {"description": "the event"},
                        "401": {"description": "no token"},
                        "409": {"description": "not allowed in this state"},
                    },
                }
            }
            for a in ACTIONS
        },
        **OPENAPI_PATHS,
        "/alerts": {"get": {"summary": "alerts firing now", "responses": {"200": {"description": "alerts"}}}},
        "/assets": {
            "get": {"summary": "assets with their state", "responses": {"200": {"description": "assets"}}}
        },
        "/silences": {
            "get": {
                "summary": "silences, active and expired",
                "responses": {"200": {"description": "silences"}},
            },
            "post": {
                "summary": "add a silence: matcher, author, reason, expires_in (required)",
                "security": [{"token": []}],
                "responses": {"201": {"description": "the silence"}, "400": {"description": "incomplete"}},
            },
        },
        "/silences/{id}/expire": {
            "post": {
                "summary": "end a silence now",
                "security": [{"token": []}],
                "responses": {"200": {"description": "the silence"}},
            }
        },
    },
}


class _BoundedServer(http.server.ThreadingHTTPServer):
    """A threaded server that serves at most ``max_connections`` at once and turns the rest away."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler], limit: int
    ):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class BadRequest(Exception):
    """A request the API will not take: its status and what to tell the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_body(h: http.server.BaseHTTPRequestHandler, limit: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object (``{}`` when there is no body); ``BadRequest`` for anything else."""
    try:
        length = int(h.headers.get("Content-Length") or 0)
    except ValueError:
        raise BadRequest(400, "Content-Length must be a number") from None
    if length < 0:
        raise BadRequest(400, "Content-Length must be a number")
    if length > limit:
        h.close_connection = True  # the body is never read: the connection cannot be reused
        raise BadRequest(413, f"body over {limit} bytes")
    if not length:
        return {}
    try:
        data = h.rfile.read(length)
    except (TimeoutError, OSError):
        h.close_connection = True
        raise BadRequest(408, "body not received in time") from None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, or nested too deep
        raise BadRequest(400, "body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object")
    return body


@dataclass(frozen=True)
class Raw:
    """A non-JSON answer (the Prometheus exposition on /metrics)."""

    data: bytes
    content_type: str


def ticket_json(t: Ticket, events: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in asdict(t).items() if k != "events"}
    out["low_satisfaction"] = t.low_satisfaction  # the dispatcher's flag (docs/desk.md)
    if events:
        out["events"] = [asdict(e) for e in t.events]
    return out


class Api:
    socket_timeout = SOCKET_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def __init__(
        self, core: Core, loop: asyncio.AbstractEventLoop, host: str, port: int, token: str | None
    ) -> None:
        self.core, self.loop, self.token = core, loop, token
        self.frontdesk = FrontDesk(core)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = api.socket_timeout  # socket timeout: idle or trickling clients are let go

            def log_message(self, *_args: Any) -> None:
                pass  # requests may carry the token; nothing of them is logged

            def do_GET(self) -> None:
                api.handle(self, "GET")

            def do_POST(self) -> None:
                api.handle(self, "POST")

        self.server = _BoundedServer((host, port), Handler, self.max_connections)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="api", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the daemon's event loop and wait for it."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def handle(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlparse(h.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            status, body = self.route(h, method, url.path, query)
        except BadRequest as exc:
            status, body = exc.status, {"error": str(exc)}
        except (TimeoutError, ConnectionError):
            h.close_connection = True  # the client went quiet or away: nobody to answer
            return
        except Exception:  # a bug in one request must not take the API down
            log.exception("API %s %s failed", method, url.path)
            status, body = 500, {"error": "internal error"}
        if isinstance(body, Raw):
            data, content_type = body.data, body.content_type
        else:
            data, content_type = (
                json.dumps(body, ensure_ascii=False, default=str).encode(),
                "application/json; charset=utf-8",
            )
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def route(
        self, h: http.server.BaseHTTPRequestHandler, method: str, path: str, query: dict[str, str]
    ) -> tuple[int, Any]:
        desk = self.core.desk
        if method == "GET":
            if path == "/healthz":
                health = getattr(self.core.store, "health", None)  # a queueing backend knows its state
                problems: list[str] = health() if health is not None else []
                return (
                    (503, {"status": "unhealthy", "problems": problems})
                    if problems
                    else (200, {"status": "ok"})
                )
            if path == "/metrics":
                return 200, Raw(generate_latest(self.core.metrics.registry), CONTENT_TYPE_LATEST)
            if path == "/openapi.json":
                return 200, OPENAPI
            if path == "/tickets":

                def listing() -> list[dict[str, Any]]:
                    return [
                        ticket_json(t)
                        for t in sorted(desk.tickets.values(), key=lambda t: -t.opened_at)
                        if all(
                            getattr(t, k) == v
                            for k, v in query.items()
                            if k in ("state", "priority", "asset", "source")
                        )
                    ]

                return 200, self.call(listing)
            if path.startswith("/tickets/"):
                t = self.call(lambda: desk.tickets.get(path.split("/")[2]))
                return (
                    (200, self.call(lambda: ticket_json(t, events=True)))
                    if t
                    else (404, {"error": "no such ticket"})
                )
            if (read := self.frontdesk.get(path, query)) is not None:  # 报修, 回访, 投诉: daemon/frontdesk.py
                return 200, self.call(read)
            if path == "/alerts":
                return 200, self.call(self.core.firing_alerts)
            if path == "/assets":
                return 200, self.call(self.core.asset_states)
            if path == "/silences":
                return 200, self.call(self._silences)
            return 404, {"error": "not found"}
        if method == "POST" and (change := self.frontdesk.post(path, "api")) is not None:
            if refused := self._refusal(h):
                return 401, {"error": refused}
            body = read_body(h)
            return self.call(lambda: change(body))
        m = _ACTION.match(path)
        silence = _SILENCE.match(path)
        if method != "POST" or (m is None and silence is None):
            return 404, {"error": "not found"}
        if refused := self._refusal(h):
            return 401, {"error": refused}
        body = read_body(h)
        if silence is not None:
            return self._silence_call(silence.group(1), body)
        assert m is not None
        ticket_id, action = m.group(1), m.group(2)
        try:
            ev = self.call(
                lambda: self.core.act(
                    ticket_id,
                    action,
                    actor=str(body.get("actor") or "api"),
                    note=str(body.get("note") or ""),
                    assignee=str(body.get("assignee") or ""),
                )
            )
        except KeyError:
            return 404, {"error": f"no ticket {ticket_id}"}
        except TicketActionError as exc:
            return 409, {"error": str(exc)}
        return 200, asdict(ev)

    def _silences(self) -> list[dict[str, Any]]:
        mute = self.core.pipeline.mute
        now = self.core.clock.now()
        return [
            {**asdict(s), "matcher": s.matcher.model_dump(), "active": s.active(now)}
            for s in (mute.silences if mute else [])
        ]

    def _silence_call(self, silence_id: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        mute = self.core.pipeline.mute
        if mute is None:
            return 404, {"error": "no muting here"}
        try:
            if silence_id:
                s = self.call(lambda: mute.expire(silence_id, self.core.clock.now()))
                return 200, {**asdict(s), "matcher": s.matcher.model_dump()}
            matcher = Matcher.model_validate(body.get("matcher") or {})
            seconds = parse_duration(body.get("expires_in") or 0)
            s = self.call(
                lambda: mute.add_silence(
                    matcher,
                    str(body.get("author") or ""),
                    str(body.get("reason") or ""),
                    seconds,
                    self.core.clock.now(),
                )
            )
        except KeyError:
            return 404, {"error": f"no silence {silence_id}"}
        except (ValueError, TypeError, ValidationError) as exc:
            return 400, {"error": str(exc)}
        return 201, {**asdict(s), "matcher": s.matcher.model_dump()}

    def _refusal(self, h: http.server.BaseHTTPRequestHandler) -> str | None:
        """Why a write call is refused (None: it is not): no token configured, none given, or a wrong one."""
        if not self.token:
            return "this API is read-only: the daemon's config sets no api.token"
        given = h.headers.get("Authorization", "")
        if given.removeprefix("Bearer").strip() == "":
            return "write calls need Authorization: Bearer <api.token>"
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return "wrong token: it does not match the daemon's api.token"
        return None
