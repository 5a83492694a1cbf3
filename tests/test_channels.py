"""Every notification channel against a real receiver: HTTP robots, SMTP, MQTT; the outbox: once only,
one lane per receiver, P1 first, persisted across restarts, and giving up into ``undelivered``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion

from monitord.core.errors import NotifyError
from monitord.core.metrics import Metrics
from monitord.drivers.mqtt_client import stop_loop
from monitord.people.notify import Channel, Notification, Outbox, SmtpConfig, channels
from tests.support import BlackHole, WebhookReceiver, free_port


def note(
    channel: str, address: str, key: str = "WO-1:0:wang", priority: str = "P1", recipient: str = "wang"
) -> Notification:
    return Notification(
        key=f"{key}:{channel}",
        channel=channel,
        address=address,
        recipient=recipient,
        ticket="WO-20261122-0001",
        event="opened",
        priority=priority,
        asset="A-E2",
        asset_name="Passenger lift 2",
        location="building A, shaft 2",
        summary="passenger trapped between floors near floor 6",
        since=1_795_000_000.0,
        level=0,
        ack_url="http://127.0.0.1:9109/tickets/WO-20261122-0001/ack",
        text="[P1] WO-20261122-0001 Passenger lift 2: passenger trapped between floors near floor 6",
    )


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not delivered in time"
        time.sleep(0.05)


def test_http_robots_get_their_own_formats_and_signatures(tmp_path: Path, hooks: WebhookReceiver) -> None:
    outbox = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None), Metrics(), backoff=0.05)
    outbox.submit(note("webhook", hooks.url("hook")))
    outbox.submit(note("wecom", hooks.url("wecom")))
    outbox.submit(note("dingtalk", hooks.url("ding") + "?access_token=abc#SECret"))
    outbox.submit(note("feishu", hooks.url("feishu") + "#fsecret"))
    outbox.submit(note("slack", hooks.url("slack")))
    wait_for(lambda: len(outbox.delivered) == 5)
    outbox.close()
    assert hooks.to("hook")[0]["ticket"] == "WO-20261122-0001" and hooks.to("hook")[0]["ack_url"].endswith(
        "/ack"
    )
    assert hooks.to("wecom")[0] == {"msgtype": "text", "text": {"content": note("x", "").text}}
    assert hooks.to("slack")[0] == {"text": note("x", "").text}
    query = dict(urllib.parse.parse_qsl(hooks.query_of("ding")))
    expected = hmac.new(b"SECret", f"{query['timestamp']}\nSECret".encode(), hashlib.sha256).digest()
    assert query["access_token"] == "abc" and base64.b64decode(query["sign"]) == expected
    feishu = hooks.to("feishu")[0]
    signed = hmac.new(f"{feishu['timestamp']}\nfsecret".encode(), b"", hashlib.sha256).digest()
    assert base64.b64decode(feishu["sign"]) == signed and feishu["content"]["text"].startswith("[P1]")


def test_recoverable_failures_retry_and_unrecoverable_ones_stop(
    tmp_path: Path, hooks: WebhookReceiver
) -> None:
    metrics = Metrics()
    hooks.scripted["/flaky"] = [(503, b"busy"), (500, b"oops")]
    hooks.scripted["/ding"] = [(200, b'{"errcode": 310000, "errmsg": "keywords not in content"}')]
    outbox = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None), metrics, backoff=0.05)
    outbox.submit(note("webhook", hooks.url("flaky")))
    outbox.submit(note("dingtalk", hooks.url("ding")))
    wait_for(
        lambda: (
            metrics.notifications.labels("dingtalk", "failed")._value.get() == 1
            and len(outbox.delivered) == 1
        )
    )
    outbox.close()
    assert len(hooks.to("flaky")) == 3, "two failures retried, then delivered"
    assert len(hooks.to("ding")) == 1, "a robot's refusal is not retried"
    assert metrics.notifications.labels("webhook", "sent")._value.get() == 1


def test_the_same_notification_is_sent_once_even_after_a_restart(
    tmp_path: Path, hooks: WebhookReceiver
) -> None:
    first = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None))
    assert first.submit(note("webhook", hooks.url("hook")))
    wait_for(lambda: len(first.delivered) == 1)
    assert not first.submit(note("webhook", hooks.url("hook")))
    first.close()
    second = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None))
    assert not second.submit(note("webhook", hooks.url("hook")))
    second.close()
    assert len(hooks.to("hook")) == 1


def test_email_over_a_real_smtp_server(tmp_path: Path) -> None:
    got: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            got.append(envelope.content)  # type: ignore[attr-defined]
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        outbox = Outbox(tmp_path / "log.db", channels(SmtpConfig(port=port, sender="monitord@tower-a"), None))
        outbox.submit(note("email", "wang@example.com"))
        wait_for(lambda: got)
        outbox.close()
    finally:
        controller.stop()
    text = got[0].decode()
    assert "Subject: [P1] WO-20261122-0001 Passenger lift 2: passenger trapped" in text
    assert "To: wang@example.com" in text


def test_mqtt_notification_reaches_a_duty_room_panel(tmp_path: Path, mosquitto: int) -> None:
    received: list[dict[str, object]] = []
    ready = threading.Event()
    panel = paho.Client(CallbackAPIVersion.VERSION2, client_id="panel")
    panel.on_connect = lambda c, *_: (c.subscribe("tower-a/duty/alarms", qos=1), ready.set())
    panel.on_message = lambda _c, _u, m: received.append(json.loads(m.payload))
    panel.connect("127.0.0.1", mosquitto)
    panel.loop_start()
    try:
        assert ready.wait(5)
        time.sleep(0.3)
        outbox = Outbox(tmp_path / "log.db", channels(SmtpConfig(), ("127.0.0.1", mosquitto)))
        outbox.submit(note("mqtt", "tower-a/duty/alarms"))
        wait_for(lambda: received)
        outbox.close()
    finally:
        stop_loop(panel)
        panel.disconnect()
    assert received[0]["ticket"] == "WO-20261122-0001" and received[0]["priority"] == "P1"


def test_a_hung_receiver_does_not_hold_up_another_persons_page(
    tmp_path: Path, hooks: WebhookReceiver
) -> None:
    hole = BlackHole()  # accepts and never answers: each attempt there takes the 10 s timeout
    outbox = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None), Metrics())
    try:
        dead = note("webhook", hole.url("wang"), key="WO-1:0:wang")
        outbox.submit(dead)
        wait_for(lambda: hole.connections)  # wang's first attempt is in flight
        sent = time.time()
        outbox.submit(note("webhook", hooks.url("li"), key="WO-2:0:li", recipient="li"))
        wait_for(lambda: hooks.delivered("li"), timeout=5)
        assert hooks.delivered("li")[0] - sent < 2.0, "li's P1 does not wait behind wang's dead endpoint"
        assert outbox.status(dead.key) == "pending"
    finally:
        outbox.close(timeout=0.1)
        hole.close()


class Gate:
    """A channel that holds its first send until released, and records the order of sends."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, n: Notification) -> None:
        self.entered.set()
        self.release.wait(10)
        self.order.append(n.key)


def test_p1_leaves_a_receivers_queue_before_p3s_that_came_first(tmp_path: Path) -> None:
    gate = Gate()
    outbox = Outbox(tmp_path / "log.db", {"webhook": gate})
    outbox.submit(note("webhook", "x", key="WO-1:0:wang", priority="P3"))
    assert gate.entered.wait(5)  # the first P3 is being sent; the rest queue behind it
    outbox.submit(note("webhook", "x", key="WO-2:0:wang", priority="P3"))
    outbox.submit(note("webhook", "x", key="WO-3:0:wang", priority="P4"))
    outbox.submit(note("webhook", "x", key="WO-4:0:wang", priority="P1"))
    gate.release.set()
    wait_for(lambda: len(outbox.delivered) == 4)
    outbox.close()
    assert gate.order == [
        "WO-1:0:wang:webhook",
        "WO-4:0:wang:webhook",
        "WO-2:0:wang:webhook",
        "WO-3:0:wang:webhook",
    ]


def test_retries_are_bounded_by_max_wait_and_a_given_up_page_survives_a_restart(
    tmp_path: Path, hooks: WebhookReceiver
) -> None:
    hooks.outages["/wang"] = (503, 3600.0)
    metrics = Metrics()
    outbox = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None), metrics, backoff=0.2, max_wait=1.0)
    n = note("webhook", hooks.url("wang"))
    start = time.time()
    outbox.submit(n)
    wait_for(outbox.undelivered)
    [given_up] = outbox.undelivered()
    assert given_up.notification == n and given_up.error == "HTTP 503"
    # tries at 0, 0.2, 0.6 s; the next (1.4 s) would pass max_wait
    assert given_up.attempts == len(hooks.to("wang")) == 3 and time.time() - start < 1.4
    assert metrics.registry.get_sample_value("monitord_notify_retries_total", {"channel": "webhook"}) == 2
    assert metrics.notifications.labels("webhook", "failed")._value.get() == 1
    outbox.close()
    again = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None))
    assert [u.notification for u in again.undelivered()] == [n], "still owed to the ticket after a restart"
    assert not again.submit(n) and again.status(n.key) == "failed"
    again.settle(n.key)
    again.close()
    third = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None))
    assert third.undelivered() == [] and third.status(n.key) == "reported"
    third.close()
    assert len(hooks.to("wang")) == 3, "no restart tried it again"


def test_a_pending_page_resumes_after_a_restart_and_is_delivered_once(
    tmp_path: Path, hooks: WebhookReceiver
) -> None:
    hooks.outages["/wang"] = (503, 1.5)
    first = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None), backoff=0.2)
    n = note("webhook", hooks.url("wang"))
    first.submit(n)
    wait_for(lambda: hooks.to("wang"))
    assert first.status(n.key) == "pending"
    first.close()  # stopped while the receiver is still down: the page stays in the log
    assert not hooks.delivered("wang")
    metrics = Metrics()
    second = Outbox(tmp_path / "log.db", channels(SmtpConfig(), None), metrics, backoff=0.2)
    wait_for(lambda: second.delivered)
    assert not second.submit(n)
    second.close()
    assert len(hooks.delivered("wang")) == 1
    assert (
        metrics.registry.get_sample_value(
            "monitord_notify_delivery_latency_seconds_count", {"channel": "webhook", "priority": "P1"}
        )
        == 1
    )


def test_a_broken_channel_is_given_up_not_fatal(tmp_path: Path) -> None:
    class Broken:
        def send(self, n: Notification) -> None:
            raise KeyError("bug")

    class Refuses:
        def send(self, n: Notification) -> None:
            raise NotifyError("HTTP 400", recoverable=False)

    chans: dict[str, Channel] = {"webhook": Broken(), "slack": Refuses()}
    outbox = Outbox(tmp_path / "log.db", chans)
    outbox.submit(note("webhook", "a"))
    outbox.submit(note("slack", "b"))
    outbox.submit(note("email", "c"))  # no such channel configured
    wait_for(lambda: len(outbox.undelivered()) == 3)
    errors = sorted(u.error for u in outbox.undelivered())
    outbox.close()
    assert errors == ["HTTP 400", "KeyError('bug')", "no email channel configured"]
