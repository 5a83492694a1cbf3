"""What a client may cost the web app: body size, a slow body, idle connections.

``BodyLimit`` is ASGI middleware: a ``Content-Length`` over the limit is answered 413 before a byte of
the body is read; a chunked body is counted as it arrives and cut off at the limit; a body that does
not arrive within ``timeout`` seconds is a 408. ``IdleClosingH11`` is uvicorn's HTTP/1.1 protocol with
the keep-alive timer also running on a fresh connection, so a client that connects and says nothing
is let go after the same timeout (uvicorn starts that timer only after a first response).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_BODY = 64 * 1024  # bytes: a note or a silence is a few hundred
SOCKET_TIMEOUT = 10.0  # seconds a connection may sit idle (or trickle a body) before it is closed
MAX_CONNECTIONS = 64  # connections and requests at once; more are answered 503


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, timeout: float = SOCKET_TIMEOUT) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "Content-Length must be a number")
                return
            if int(length) > self.limit:
                await _answer(send, 413, f"body over {self.limit} bytes")
                return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise HTTPException(408, "body not received in time") from None
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"body over {self.limit} bytes")
            return message

        await self.app(scope, bounded, send)


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The body was not read: the connection cannot serve another request.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class IdleClosingH11(H11Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
