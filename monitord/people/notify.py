"""Notifications: the message, the channels, and an outbox that delivers once.

Sixth stage, after the ticket desk. ``Outbox.submit`` takes a ``Notification``
with an idempotency key (ticket, escalation level, recipient); a worker thread
delivers it through its channel, retrying recoverable failures with backoff
and logging an unrecoverable one once. Delivered keys are kept in a small
SQLite notification log, so neither a retry nor a restart of the daemon sends
the same notification twice.

Adding a channel is one class with ``send`` plus one line in ``channels()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import smtplib
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any, Protocol

from monitord.core.errors import NotifyError
from monitord.core.metrics import Metrics
from monitord.core.schema import Strict, in_range

log = logging.getLogger(__name__)


class SmtpConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, in_range(1, 65535)] = 25
    sender: str = "monitord@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False


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


def post_json(url: str, body: dict[str, Any]) -> Any:
    """POST JSON; a robot's own error code in a 200 reply counts as a failure too."""
    data = json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"HTTP {exc.code}", recoverable=exc.code >= 500 or exc.code == 429) from exc
    except OSError as exc:
        raise NotifyError(str(exc), recoverable=True) from exc
    try:
        reply = json.loads(raw) if raw else {}
    except ValueError:
        return raw
    code = reply.get("errcode", reply.get("code", 0)) if isinstance(reply, dict) else 0
    if code not in (0, None):
        # 45009 (WeCom), 130101 (DingTalk), 9499 (Feishu): sending too fast, worth a retry
        raise NotifyError(
            f"robot answered {code}: {reply.get('errmsg') or reply.get('msg')}",
            recoverable=code in (45009, 130101, 9499),
        )
    return reply


def _split_secret(address: str) -> tuple[str, str | None]:
    url, _, secret = address.partition("#")
    return url, secret or None


class WebhookChannel:
    """Generic webhook: the notification as JSON in a POST (docs/notifications.md)."""

    def send(self, n: Notification) -> None:
        post_json(n.address, n.payload())


class WecomChannel:
    """企业微信 group robot: markdown text."""

    def send(self, n: Notification) -> None:
        post_json(n.address, {"msgtype": "text", "text": {"content": n.text}})


class DingtalkChannel:
    """钉钉 robot; with a secret, the URL carries timestamp and HMAC-SHA256 signature."""

    def send(self, n: Notification) -> None:
        url, secret = _split_secret(n.address)
        if secret:
            ts = str(round(time.time() * 1000))
            digest = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
            sign = urllib.parse.quote_plus(base64.b64encode(digest))
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={sign}"
        post_json(url, {"msgtype": "text", "text": {"content": n.text}})


class FeishuChannel:
    """飞书 robot; with a secret, the body carries timestamp and signature."""

    def send(self, n: Notification) -> None:
        url, secret = _split_secret(n.address)
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": n.text}}
        if secret:
            ts = str(int(time.time()))
            digest = hmac.new(f"{ts}\n{secret}".encode(), b"", hashlib.sha256).digest()
            body.update(timestamp=ts, sign=base64.b64encode(digest).decode())
        post_json(url, body)


class SlackChannel:
    def send(self, n: Notification) -> None:
        post_json(n.address, {"text": n.text})


class EmailChannel:
    def __init__(self, smtp: SmtpConfig) -> None:
        self.smtp = smtp

    def send(self, n: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = f"[{n.priority}] {n.ticket} {n.asset_name}: {n.summary}"
        message["From"] = self.smtp.sender
        message["To"] = n.address
        message.set_content(n.text)
        try:
            with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=10) as client:
                if self.smtp.starttls:
                    client.starttls()
                if self.smtp.username:
                    client.login(self.smtp.username, self.smtp.password or "")
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise NotifyError(f"SMTP {exc.smtp_code}", recoverable=400 <= exc.smtp_code < 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(str(exc), recoverable=True) from exc


class MqttChannel:
    """Publish the JSON notification (QoS 1, not retained) for duty-room panels."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def send(self, n: Notification) -> None:
        import paho.mqtt.publish as publish  # paho behind one import: publish.single connects per message

        try:
            publish.single(
                n.address,
                json.dumps(n.payload(), ensure_ascii=False),
                qos=1,
                hostname=self.host,
                port=self.port,
                client_id="",
            )
        except (OSError, ValueError) as exc:
            raise NotifyError(str(exc), recoverable=True) from exc


class ConsoleChannel:
    def send(self, n: Notification) -> None:
        print(f"          NOTIFY → {n.recipient}: {n.text}", flush=True)


def channels(smtp: SmtpConfig, mqtt: tuple[str, int] | None) -> dict[str, Channel]:
    """Every channel by name: the one registration point for a new channel."""
    out: dict[str, Channel] = {
        "webhook": WebhookChannel(),
        "wecom": WecomChannel(),
        "dingtalk": DingtalkChannel(),
        "feishu": FeishuChannel(),
        "slack": SlackChannel(),
        "email": EmailChannel(smtp),
        "console": ConsoleChannel(),
    }
    if mqtt is not None:
        out["mqtt"] = MqttChannel(*mqtt)
    return out


class Outbox:
    def __init__(
        self,
        log_path: Path,
        channels: dict[str, Channel],
        metrics: Metrics | None = None,
        attempts: int = 6,
        backoff: float = 0.5,
    ) -> None:
        self.channels = channels
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
        channel = self.channels.get(n.channel)
        if channel is None:
            log.error("notification %s: no %s channel configured", n.key, n.channel)
            self._count(n.channel, "failed")
            with self._lock:
                self._pending.discard(n.key)
            return
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
