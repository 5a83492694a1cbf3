"""``mqtts://`` with a CA, a client certificate and key, and a username/password from ``${ENV}``
(issue 11): real Mosquitto with a TLS listener that requires a client certificate, certificates made
by ``openssl`` for the test. A sample lands with quality good; trusting the wrong CA ends in a clear
logged error, no data and the lift offline, never a value.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.model import Quality
from monitord.daemon.app import Monitord
from monitord.drivers.mqtt_client import stop_loop
from tests.support import evaluated_past, eventually, good, run
from tests.support.mosquitto import Mosquitto
from tests.support.tls import Pki, make_pki, openssl_binary

TOPIC = "field/elevator/E1/status"


@pytest.fixture
def pki(tmp_path: Path, own_broker: Mosquitto) -> Pki:
    """Certificates, and ``own_broker`` with a TLS listener that requires a client certificate."""
    if openssl_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed; `make system-deps` installs it as root")
        pytest.skip("openssl is not installed (Debian package 'openssl')")
    made = make_pki(tmp_path / "pki")
    own_broker.conf.write_text(
        own_broker.conf.read_text()
        + f"cafile {made.ca}\ncertfile {made.server_cert}\nkeyfile {made.server_key}\n"
        # as root, Mosquitto would drop to a user who cannot read the test's folder
        + "require_certificate true\nuser root\n"
    )
    own_broker.start()
    return made


def site(tmp_path: Path, port: int, ca: Path, pki: Pki) -> SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {id: field}\n"
        f"store: {{kind: sqlite, path: '{tmp_path}/store.db'}}\n"
        "mqtt:\n"
        f"  url: 'mqtts://127.0.0.1:{port}'\n"
        f"  client_id: 'tls-{uuid.uuid4().hex[:8]}'\n"
        f"  ca: '{ca}'\n  cert: '{pki.client_cert}'\n  key: '{pki.client_key}'\n"
        "  username: ${MQTT_USER}\n  password: ${MQTT_PASSWORD}\n"
        "metrics: {host: 127.0.0.1, port: 0}\napi: {host: 127.0.0.1, port: 0}\npoll: 0.5s\n"
        f"profiles:\n  - include: {CONFIG_DIR}/profiles/elevator-gbt24476.yaml\n"
        "assets:\n  - {id: E1, type: elevator, profile: elevator-gbt24476, connection: {mqtt: {}}}\n"
    )
    return load_config(path)


def publish_retained(port: int, pki: Pki) -> None:
    """A lift's box on the same TLS listener: one reading, retained, so any subscriber gets it."""
    box = paho.Client(CallbackAPIVersion.VERSION2, client_id="tls-box")
    box.tls_set(ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key))
    box.connect("127.0.0.1", port)
    box.loop_start()
    body = json.dumps({"ts": time.time(), "seq": 1, "values": {"floor": 7, "speed": 0.5}})
    box.publish(TOPIC, body, qos=1, retain=True).wait_for_publish(10)
    box.disconnect()
    stop_loop(box)


async def daemon_until(config: SiteConfig, check: object) -> Monitord:
    app = Monitord(config, metrics_port=0)
    task = asyncio.create_task(app.run(api_port=0))
    await app.started.wait()
    try:
        assert callable(check)
        await check(app)
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)
    return app


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_USER", "monitord")
    monkeypatch.setenv("MQTT_PASSWORD", "s3cret")


def test_a_sample_lands_good_over_mqtts_with_a_client_certificate(
    tmp_path: Path, own_broker: Mosquitto, pki: Pki
) -> None:
    publish_retained(own_broker.port, pki)
    config = site(tmp_path, own_broker.port, pki.ca, pki)
    assert config.mqtt is not None and config.mqtt.password == "s3cret"

    async def landed(app: Monitord) -> None:
        await eventually(lambda: good(app, "E1", "floor"), 15)
        assert app.core.state.latest("E1")["floor"][0] == 7

    run(daemon_until(config, landed), timeout=60)


def test_a_wrong_ca_is_a_logged_error_and_the_lift_offline_never_a_value(
    tmp_path: Path, own_broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    publish_retained(own_broker.port, pki)  # there is data to be had, for a daemon that trusts the broker
    config = site(tmp_path, own_broker.port, pki.other_ca, pki)

    async def refused(app: Monitord) -> None:
        assert app.mqtt is not None
        connects = app.metrics.driver_errors.labels("mqtt", "connect")
        await eventually(lambda: connects._value.get() >= 2, 15)
        table, row = app.core.state.where["E1"]
        await evaluated_past(app, float(table.last_good[row] + table.stale_after[row]))
        assert table.offline(app.clock.now())[row]
        latest = app.core.state.latest("E1")
        assert all(q != Quality.GOOD for _v, _t, q in latest.values())
        assert not app.mqtt._connected.is_set()

    with caplog.at_level(logging.WARNING, "monitord.drivers.mqtt"):
        run(daemon_until(config, refused), timeout=60)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # said once, not once per retry
    assert "TLS: the broker's certificate does not verify" in errors[0] and "check mqtt.ca" in errors[0]
