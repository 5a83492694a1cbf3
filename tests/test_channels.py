"""Every notification channel against a real receiver: HTTP robots, SMTP, MQTT; the once-only outbox."""

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

from monitord.core.metrics import Metrics
from monitord.people.notify import Notification, Outbox, SmtpConfig, channels
from tests.support import WebhookReceiver, free_port


def note(channel: str, address: str, key: str = "WO-1:0:wang") -> Notification:
    return Notification(
        key=f"{key}:{channel}",
        channel=channel,
        address=address,
        recipient="wang",
        ticket="WO-20261122-0001",
        event="opened",
        priority="P1",
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
        panel.loop_stop()
        panel.disconnect()
    assert received[0]["ticket"] == "WO-20261122-0001" and received[0]["priority"] == "P1"
