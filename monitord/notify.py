"""Notifications: the message, the channels, and an outbox that delivers once.

Sixth stage, after the ticket desk. ``Outbox.submit`` takes a ``Notification``
with an idempotency key (ticket, escalation level, recipient); a worker thread
delivers it through its channel, retrying recoverable failures with backoff
and logging an unrecoverable one once. Delivered keys are kept in a small
SQLite notification log, so neither a retry nor a restart of the daemon sends
the same notification twice.

Adding a channel is one class with ``send`` plus one line in ``CHANNELS``.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import NotifyError
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    key: str  # idempotency key: the same key is delivered at most once
    channel: str
    address: str
    recipient: str
    ticket: str
    event: str
    priority: str
    asset: str
    asset_name: str
    location: str
    summary: str
    since: float
    level: int
    ack_url: str
    text: str

    def payload(self) -> dict[str, Any]:
        """The documented webhook body (docs/notifications.md)."""
        body = asdict(self)
        del body["key"], body["channel"], body["address"]
        return body


class Channel(Protocol):
    def send(self, n: Notification) -> None:
        """Deliver or raise ``NotifyError`` (``recoverable`` says whether a retry may help)."""
        ...


class WebhookChannel:
    """Generic webhook: the notification as JSON in a POST."""

    def send(self, n: Notification) -> None:
        body = json.dumps(n.payload(), ensure_ascii=False).encode()
        request = urllib.request.Request(
            n.address, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise NotifyError(f"HTTP {exc.code}", recoverable=exc.code >= 500 or exc.code == 429) from exc
        except OSError as exc:
            raise NotifyError(str(exc), recoverable=True) from exc


CHANNELS: dict[str, Channel] = {"webhook": WebhookChannel()}


class Outbox:
    def __init__(
        self, log_path: Path, metrics: Metrics | None = None, attempts: int = 6, backoff: float = 0.5
    ) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._db_path = log_path
        with sqlite3.connect(log_path) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, ts REAL, channel TEXT, "
                "recipient TEXT, ticket TEXT)"
            )
        self.metrics, self.attempts, self.backoff = metrics, attempts, backoff
        self._queue: queue.Queue[Notification | None] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self.delivered: list[Notification] = []
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def already_sent(self, key: str) -> bool:
        with sqlite3.connect(self._db_path) as db:
            return db.execute("SELECT 1 FROM sent WHERE key = ?", (key,)).fetchone() is not None

    def submit(self, n: Notification) -> bool:
        """Queue unless already sent or queued; True when queued."""
        with self._lock:
            if n.key in self._pending or self.already_sent(n.key):
                return False
            self._pending.add(n.key)
        self._queue.put(n)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        db = sqlite3.connect(self._db_path)
        try:
            while (n := self._queue.get()) is not None:
                self._deliver(db, n)
        finally:
            db.close()

    def _deliver(self, db: sqlite3.Connection, n: Notification) -> None:
        channel = CHANNELS[n.channel]
        for attempt in range(1, self.attempts + 1):
            try:
                channel.send(n)
            except NotifyError as exc:
                if not exc.recoverable or attempt == self.attempts:
                    log.error(
                        "notification %s to %s via %s failed for good: %s", n.key, n.recipient, n.channel, exc
                    )
                    self._count(n.channel, "failed")
                    break
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
                continue
            with db:
                db.execute(
                    "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?)",
                    (n.key, time.time(), n.channel, n.recipient, n.ticket),
                )
            self._count(n.channel, "sent")
            self.delivered.append(n)
            log.info("notified %s (%s) about %s via %s", n.recipient, f"level {n.level}", n.ticket, n.channel)
            break
        with self._lock:
            self._pending.discard(n.key)

    def _count(self, channel: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.notifications.labels(channel, outcome).inc()
