"""Notifications: the message, the channels, and a persisted outbox that delivers once.

Sixth stage, after the ticket desk. ``Outbox.submit`` takes a ``Notification``
with an idempotency key (ticket, escalation level, recipient, channel) and
writes it to the ``outbox`` table of the SQLite notification log before it
returns. Each receiver (channel + address) has its own lane: a queue ordered
P1 first, and a worker whose retries are scheduled with backoff, so a dead
endpoint delays only its own pages. A page that exhausts its attempts or
would wait past ``max_wait`` is given up and handed to the dispatcher
(``undelivered``), which shows it on the ticket and pages the next person.
Delivered keys move to the ``sent`` table, so neither a retry nor a restart
sends the same notification twice; a restart resumes whatever was pending.
In an HA pair (docs/scale-out.md#ha-pair) the outbox of a standby is ``held``
(it queues, it sends nothing), each delivered key is also handed to ``record``
(the shared store), and a new active takes (``adopt``) the keys the other one
delivered before it sends (``release``) what it holds.

Adding a channel is one class with ``send`` plus one line in ``channels()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any, Protocol

from monitord.core.errors import NotifyError
from monitord.core.i18n import translator
from monitord.core.metrics import Metrics
from monitord.core.schema import Strict, in_range
from monitord.people.messages import email_subject
from monitord.tickets.forms import mask_phones

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
    source: str = "alert"  # "request": a resident's 报修, opened at the duty desk
    reporter: str = ""  # a request's resident and phone, for the assignee (never logged)
    phone: str = ""
    locale: str = "en"  # the language of text and summary (rows queued before it existed were English)
    link: str = ""  # the ticket's console page, signed for this person and expiring (docs/console.md)

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
        message["Subject"] = email_subject(n.ticket, n.priority, n.asset_name, n.summary, n.locale)
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
        _ = translator(n.locale)
        word = _("NOTIFY")
        # The terminal's output ends up in logs: a resident's phone is masked (the API shows it).
        text = mask_phones(n.text).replace("\n", "\n" + " " * 12)  # a page of several lines stays a block
        print(f"          {word} → {n.recipient}: {text}", flush=True)


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


#: Lower leaves a receiver's queue first: a P1 goes before a P3 that came earlier.
RANK = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
#: The longest pause between two attempts, so a receiver that recovers is not left unused for long.
BACKOFF_CAP = 15.0


@dataclass(frozen=True)
class Undelivered:
    """A notification the outbox gave up on: the dispatcher shows it on the ticket and acts on it."""

    notification: Notification
    attempts: int
    waited: float  # seconds from submission to giving up
    error: str


@dataclass(order=True)
class _Entry:
    rank: int
    created: float  # wall time of submission: the start of the page's wait bound
    notification: Notification = field(compare=False)
    attempts: int = field(default=0, compare=False)
    next_at: float = field(default=0.0, compare=False)


class _Lane:
    """One receiver's queue and worker: its retries wait here, never in front of another receiver."""

    def __init__(self, name: str, deliver: Callable[[_Entry], float | None]) -> None:
        self.items: list[_Entry] = []
        self.cond = threading.Condition()
        self.closed = False
        self._deliver = deliver
        self.thread = threading.Thread(target=self._run, name=f"notify {name}", daemon=True)
        self.thread.start()

    def put(self, entry: _Entry) -> None:
        with self.cond:
            self.items.append(entry)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()

    def _next(self) -> _Entry | None:
        """The most urgent entry that is due, waiting (not sleeping blind) until one is."""
        with self.cond:
            while not self.closed:
                now = time.time()
                ready = [e for e in self.items if e.next_at <= now]
                if ready:
                    entry = min(ready)  # by priority, then the oldest
                    self.items.remove(entry)
                    return entry
                wake = min((e.next_at for e in self.items), default=None)
                self.cond.wait(None if wake is None else wake - now)
        return None

    def _run(self) -> None:
        while (entry := self._next()) is not None:
            retry_at = self._deliver(entry)
            if retry_at is not None:
                entry.next_at = retry_at
                self.put(entry)


class Outbox:
    """Persisted outbox: one lane per receiver, scheduled retries, a log that keeps delivery once.

    A submitted notification is a row in the ``outbox`` table before ``submit`` returns, so a
    restart (even ``kill -9``) resumes it; a delivery moves its key to ``sent`` in one
    transaction. A notification that exhausts ``attempts`` or would wait past ``max_wait`` is
    given up: ``undelivered()`` holds it (persisted too) until the dispatcher ``settle``\\ s it.
    """

    def __init__(
        self,
        log_path: Path,
        channels: dict[str, Channel],
        metrics: Metrics | None = None,
        attempts: int = 10,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        *,
        held: bool = False,
    ) -> None:
        """``held``: queue what is submitted (and what a previous run left pending) but send nothing
        until ``release`` (an HA standby)."""
        self.channels, self.metrics = channels, metrics
        self.held = held
        self._parked: list[_Entry] = []  # queued while held, in submission order; under _failed_lock
        #: told (key, time, channel, recipient, ticket) after each delivery: the shared store of an HA pair
        self.record: Callable[[str, float, str, str, str], None] | None = None
        #: called on the lane before each attempt: an HA pair's ticket events reach the store first
        self.before_send: Callable[[], None] | None = None
        self.attempts, self.backoff, self.max_wait = attempts, backoff, max_wait
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used under a lock by the lanes and the dispatcher (the event loop).
        self._db = sqlite3.connect(log_path, check_same_thread=False, timeout=30)
        self._db_lock = threading.Lock()
        self._closed = False
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._failed: dict[str, Undelivered] = {}  # given up, not yet settled; under _failed_lock
        self._failed_lock = threading.Lock()
        self.delivered: list[Notification] = []
        with self._db_lock, self._db:
            # WAL: a commit survives the process being killed without an fsync per page.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, ts REAL, channel TEXT, "
                "recipient TEXT, ticket TEXT)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (key TEXT PRIMARY KEY, state TEXT, body TEXT, "
                "created REAL, attempts INTEGER, next_at REAL, error TEXT)"
            )
            rows = self._db.execute(
                "SELECT state, body, created, attempts, next_at, error FROM outbox "
                "WHERE state IN ('pending', 'failed') ORDER BY created"
            ).fetchall()
        for state, body, created, tried, next_at, error in rows:
            n = Notification(**json.loads(body))
            if state == "failed":
                self._failed[n.key] = Undelivered(n, tried, 0.0, error or "")
            else:
                self._enqueue(_Entry(RANK.get(n.priority, len(RANK)), created, n, tried, next_at))
        if rows:
            log.info(
                "notification outbox: %d pending, %d undelivered from before",
                len(rows) - len(self._failed),
                len(self._failed),
            )

    def submit(self, n: Notification) -> bool:
        """Persist and queue unless already sent or queued; True when queued."""
        now = time.time()
        body = json.dumps(asdict(n), ensure_ascii=False)
        with self._db_lock, self._db:
            if self._db.execute("SELECT 1 FROM sent WHERE key = ?", (n.key,)).fetchone():
                return False
            added = self._db.execute(
                "INSERT OR IGNORE INTO outbox VALUES (?, 'pending', ?, ?, 0, ?, '')", (n.key, body, now, now)
            ).rowcount
        if not added:
            return False
        self._enqueue(_Entry(RANK.get(n.priority, len(RANK)), now, n, 0, now))
        return True

    def sent_for(self, ticket: str) -> list[tuple[float, str, str]]:
        """(time, channel, recipient) of every page delivered for ``ticket``, oldest first."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT ts, channel, recipient FROM sent WHERE ticket = ? ORDER BY ts", (ticket,)
            ).fetchall()
        return [(float(ts), str(c), str(r)) for ts, c, r in rows]

    def status(self, key: str) -> str | None:
        """``sent``, ``pending``, ``failed`` (given up, not yet on the ticket), ``reported``, or None."""
        with self._db_lock:
            if self._db.execute("SELECT 1 FROM sent WHERE key = ?", (key,)).fetchone():
                return "sent"
            row = self._db.execute("SELECT state FROM outbox WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def undelivered(self) -> list[Undelivered]:
        """Notifications given up and not yet settled, oldest first."""
        with self._failed_lock:
            return list(self._failed.values())

    def settle(self, key: str) -> None:
        """The dispatcher has recorded this undelivered notification: it is done with."""
        with self._failed_lock:
            self._failed.pop(key, None)
        with self._db_lock, self._db:
            self._db.execute("UPDATE outbox SET state = 'reported' WHERE key = ?", (key,))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the lanes; what is still pending stays in the log for the next start."""
        for lane in self._lanes.values():
            lane.close()
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        with self._db_lock:
            self._closed = True
            self._db.close()

    def adopt(self, sent: list[tuple[str, float, str, str, str]]) -> int:
        """Take keys delivered elsewhere (key, time, channel, recipient, ticket) as sent here: none of
        them is delivered again, queued or not. How many were new to this log."""
        with self._db_lock, self._db:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?)", sent)
            added = self._db.total_changes - before
            self._db.executemany("DELETE FROM outbox WHERE key = ?", [(row[0],) for row in sent])
        return added

    def hold(self) -> None:
        """Stop sending (an HA instance that is no longer active): what is queued waits for ``release``.
        An attempt already under way finishes."""
        with self._failed_lock:
            self.held = True
        for lane in self._lanes.values():
            with lane.cond:
                taken, lane.items = lane.items, []
            for entry in taken:
                if self.metrics:
                    self.metrics.notify_pending.labels(entry.notification.channel).dec()
            with self._failed_lock:
                self._parked += taken

    def release(self) -> int:
        """Send again (an HA instance that became active); what was held and is not sent yet goes out.
        How many were released."""
        with self._failed_lock:
            self.held = False
            parked, self._parked = self._parked, []
        out = 0
        for entry in sorted(parked, key=lambda e: e.created):
            if self.status(entry.notification.key) == "sent":
                continue  # delivered by the other instance (adopted): never twice
            self._enqueue(entry)
            out += 1
        return out

    def _enqueue(self, entry: _Entry) -> None:
        with self._failed_lock:
            if self.held:
                self._parked.append(entry)
                return
        n = entry.notification
        lane = self._lanes.get((n.channel, n.address))
        if lane is None:
            lane = self._lanes[(n.channel, n.address)] = _Lane(f"{n.channel} {n.recipient}", self._deliver)
        if self.metrics:
            self.metrics.notify_pending.labels(n.channel).inc()
        lane.put(entry)

    def _deliver(self, entry: _Entry) -> float | None:
        """One attempt, on the lane's thread; the time of the next attempt, or None when done."""
        n = entry.notification
        entry.attempts += 1
        try:
            channel = self.channels.get(n.channel)
            if channel is None:
                raise NotifyError(f"no {n.channel} channel configured", recoverable=False)
            if self.before_send is not None:
                self.before_send()
            channel.send(n)
        except NotifyError as exc:
            return self._failed_attempt(entry, exc)
        except Exception as exc:  # a channel's bug must not kill the lane: give up loudly instead
            log.exception("notification %s via %s: unexpected error", n.key, n.channel)
            return self._failed_attempt(entry, NotifyError(repr(exc), recoverable=False))
        now = time.time()
        self._write(
            (
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?)",
                (n.key, now, n.channel, n.recipient, n.ticket),
            ),
            ("DELETE FROM outbox WHERE key = ?", (n.key,)),
        )
        self.delivered.append(n)
        if self.record is not None:
            try:
                self.record(n.key, now, n.channel, n.recipient, n.ticket)
            except Exception as exc:  # delivered all the same; only a takeover could repeat it
                log.error("notification %s delivered but not recorded in the shared store: %s", n.key, exc)
        if self.metrics:
            self.metrics.notify_pending.labels(n.channel).dec()
            self.metrics.notifications.labels(n.channel, "sent").inc()
            self.metrics.notify_latency.labels(n.channel, n.priority).observe(now - entry.created)
        log.info("notified %s (level %d) about %s via %s", n.recipient, n.level, n.ticket, n.channel)
        return None

    def _failed_attempt(self, entry: _Entry, exc: NotifyError) -> float | None:
        n, now = entry.notification, time.time()
        retry_at = now + min(self.backoff * 2.0 ** (entry.attempts - 1), BACKOFF_CAP)
        if exc.recoverable and entry.attempts < self.attempts and retry_at <= entry.created + self.max_wait:
            self._write(
                (
                    "UPDATE outbox SET attempts = ?, next_at = ?, error = ? WHERE key = ?",
                    (entry.attempts, retry_at, str(exc), n.key),
                ),
            )
            if self.metrics:
                self.metrics.notify_retries.labels(n.channel).inc()
            log.warning(
                "notification %s to %s via %s: %s; attempt %d in %.1fs",
                n.key,
                n.recipient,
                n.channel,
                exc,
                entry.attempts + 1,
                retry_at - now,
            )
            return retry_at
        waited = now - entry.created
        log.error(
            "notification %s to %s via %s undelivered after %d attempt(s) in %.1fs: %s",
            n.key,
            n.recipient,
            n.channel,
            entry.attempts,
            waited,
            exc,
        )
        self._write(
            (
                "UPDATE outbox SET state = 'failed', attempts = ?, error = ? WHERE key = ?",
                (entry.attempts, str(exc), n.key),
            ),
        )
        with self._failed_lock:
            self._failed[n.key] = Undelivered(n, entry.attempts, waited, str(exc))
        if self.metrics:
            self.metrics.notify_pending.labels(n.channel).dec()
            self.metrics.notifications.labels(n.channel, "failed").inc()
        return None

    def _write(self, *statements: tuple[str, tuple[object, ...]]) -> bool:
        """Run statements in one transaction; False once closed (the row stays as it was)."""
        with self._db_lock:
            if self._closed:
                return False
            with self._db:
                for sql, args in statements:
                    self._db.execute(sql, args)
        return True
