"""A client for the daemon's HTTP API, as the duty desk uses it (ticket actions, silences).

Actions go through the running daemon, not the store, so the daemon sees them, records them
and tells the people concerned. Errors come back as ``MonitordError`` in the daemon's words.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from monitord.core.errors import MonitordError

DEFAULT_API = "http://127.0.0.1:9109"


class ApiClient:
    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 15, locale: str = "en"
    ) -> None:
        """``url`` and ``token`` default to $MONITORD_API (else the local daemon) and $MONITORD_TOKEN;
        every call, reads included, sends the token; the daemon answers refusals in ``locale``."""
        self.url = (url or os.environ.get("MONITORD_API", DEFAULT_API)).rstrip("/")
        self.token = token or os.environ.get("MONITORD_TOKEN", "")
        self.timeout = timeout
        self.locale = locale

    def call(self, method: str, path: str, body: dict[str, object] | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=data,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
                "Accept-Language": self.locale.replace("_", "-"),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise MonitordError(f"{path}: {json.loads(exc.read()).get('error', exc.code)}") from None
        except OSError as exc:
            raise MonitordError(f"cannot reach the daemon's API at {self.url}: {exc}") from None

    def post(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        """POST ``body``; the daemon's answer, a JSON object."""
        out = self.call("POST", path, body)
        if not isinstance(out, dict):
            raise MonitordError(f"{path}: the daemon answered {type(out).__name__}, not an object")
        return out

    def get_list(self, path: str) -> list[dict[str, Any]]:
        """GET; the daemon's answer, a JSON list of objects."""
        out = self.call("GET", path)
        if not isinstance(out, list) or not all(isinstance(x, dict) for x in out):
            raise MonitordError(f"{path}: the daemon answered {type(out).__name__}, not a list of objects")
        return out
