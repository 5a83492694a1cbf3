"""Lifts behind a ThingsBoard IoT Gateway and devices with a status topic (issue 11), end to end:
real Mosquitto, monitord's simulator publishing the gateway format over a real socket, the daemon.

Done-when: one gateway topic carrying several lifts lands every lift's samples (quality good), and
the gateway's disconnect message marks that lift offline at once (the comms pack's
``comms.device_offline`` fires before silence alone could have made it so); a device whose status
topic says online is not offline while it says nothing else, and one saying ``lost`` is at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.model import HealthChange, Quality
from monitord.daemon.app import Monitord
from tests.support import Timeline, evaluated_past, eventually, good, run
from tests.support.daemon import running
from tests.support.timeline import pump_site

POLL = 1.0  # seconds; offline by silence after engine.offline_after_polls (3) of them


def site(tmp_path: Path, port: int, assets: str, site_id: str = "field") -> SiteConfig:
    text = (
        f"site: {{id: {site_id}}}\n"
        f"store: {{kind: sqlite, path: '{tmp_path}/store.db'}}\n"
        f"mqtt: {{url: 'mqtt://127.0.0.1:{port}', client_id: 'field-{uuid.uuid4().hex[:8]}'}}\n"
        f"metrics: {{host: 127.0.0.1, port: 0}}\napi: {{host: 127.0.0.1, port: 0}}\npoll: {POLL}s\n"
        f"profiles:\n  - include: {CONFIG_DIR}/profiles/elevator-gbt24476.yaml\n"
        f"assets:\n{assets}"
        "rules:\n  - include: rules/packs/comms.yaml\n"
    )
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


def lifts(*names: str, via: str = "gateway") -> str:
    """Lifts behind a ThingsBoard gateway, or each on its own topic with a retained status topic."""
    mqtt = (
        "{gateway: thingsboard, device: Lift-%s}" if via == "gateway" else "{status_topic: '{site}/%s/state'}"
    )
    return "".join(
        f"  - {{id: L{n}, type: elevator, profile: elevator-gbt24476, connection: {{mqtt: {mqtt % n}}}}}\n"
        for n in names
    )


def row(app: Monitord, asset: str) -> tuple[bool, float, float]:
    """(offline now, seconds since its last good sample, its silence limit) as the state table sees."""
    table, i = app.core.state.where[asset]
    now = app.clock.now()
    return bool(table.offline(now)[i]), now - float(table.last_good[i]), float(table.stale_after[i])


def firing(app: Monitord, rule: str) -> set[str]:
    return {str(a["asset"]) for a in app.core.firing_alerts() if a["rule"] == rule}


@pytest.mark.parametrize("via", ["gateway", "status"])
def test_a_gateway_topic_lands_every_lift_and_its_disconnect_marks_one_offline_at_once(
    tmp_path: Path, mosquitto: int, via: str
) -> None:
    """``gateway``: one topic carries all three lifts; the gateway's disconnect takes one offline.
    ``status``: the simulator's lifts on topics of their own, saying offline on a retained status
    topic (a site id of its own: what is retained stays on the shared broker)."""
    config = site(tmp_path, mosquitto, lifts("7", "8", "9", via=via), f"field-{uuid.uuid4().hex[:8]}")

    async def scenario() -> None:
        async with running(config) as (sim, app):
            every = [(a, "floor") for a in ("L7", "L8", "L9")]
            await eventually(lambda: all(good(app, a, p) for a, p in every), 20)
            await evaluated_past(app, app.clock.now(), fresh=every)
            assert not firing(app, "comms.device_offline")
            assert sim.publisher is not None and sim.publisher.published >= 3

            sim.inject("L7", "offline")  # the gateway loses the lift and says so (or the lift itself)
            offline_at = await eventually(lambda: row(app, "L7")[0] and row(app, "L7"), 10, interval=0.01)
            _, silent_for, limit = offline_at
            assert silent_for < limit, "offline on the gateway's word, not after silence"
            assert {q for _v, _t, q in app.core.state.latest("L7").values()} == {Quality.COMM_ERROR}
            await eventually(lambda: "L7" in firing(app, "comms.device_offline"), 10)
            now = app.clock.now()
            await evaluated_past(app, now, fresh=[("L8", "floor"), ("L9", "floor")])
            assert firing(app, "comms.device_offline") == {"L7"}, "the other lifts stay online"

            sim.clear("L7", "offline")  # connect, then data again
            await eventually(lambda: good(app, "L7", "floor") and not row(app, "L7")[0], 10)

    run(scenario(), timeout=90)


def test_a_status_topic_holds_a_quiet_device_online_and_lost_is_offline_at_once(
    tmp_path: Path, mosquitto: int
) -> None:
    """A report-on-change lift: one telemetry message, then nothing but its Homie ``$state``."""
    asset = (
        "  - {id: E1, type: elevator, profile: elevator-gbt24476,"
        " connection: {mqtt: {status_topic: 'field/E1/$state'}}}\n"
    )
    config = site(tmp_path, mosquitto, asset)

    def say(topic: str, body: str) -> None:
        publish.single(topic, body, qos=1, hostname="127.0.0.1", port=mosquitto)

    async def scenario() -> None:
        app = Monitord(config, metrics_port=0)
        task = asyncio.create_task(app.run(api_port=0))
        try:
            assert app.mqtt is not None
            await eventually(app.mqtt._connected.is_set, 10)
            say("field/E1/$state", "ready")
            say("field/elevator/E1/status", json.dumps({"ts": time.time(), "values": {"floor": 3}}))
            await eventually(lambda: good(app, "E1", "floor"), 10)
            heard = app.clock.now()
            _o, _s, limit = row(app, "E1")
            await evaluated_past(app, heard + 2 * limit)  # twice the silence that would make it offline
            assert not row(app, "E1")[0] and not firing(app, "comms.device_offline")
            say("field/E1/$state", "lost")  # its last will
            await eventually(lambda: row(app, "E1")[0], 10, interval=0.01)
            await eventually(lambda: "E1" in firing(app, "comms.device_offline"), 10)
            assert app.core.state.latest("E1")["floor"][2] == Quality.COMM_ERROR
        finally:
            app.stop()
            await asyncio.wait_for(task, 30)

    run(scenario(), timeout=90)


QUIET = pump_site(
    "  - {id: P1, type: pump, profile: two-points, connection: {mqtt: {}}}\n",
    "  - include: rules/packs/comms.yaml\n",
    site="quiet",
)


def test_a_quiet_device_that_says_online_raises_neither_offline_nor_stale_points(
    timeline: Callable[..., Timeline],
) -> None:
    """The pipeline on a manual clock: one report, then only the device's word that it is online.
    Without that word the same silence is `comms.device_offline` after 3 polls (the control)."""
    said, silent = timeline(QUIET), timeline(QUIET)
    for tl in (said, silent):
        tl.at(0).push("P1", running=1, suction_pressure=0.2)
    said.run_until(0.5)
    said.core.bus.publish_health(HealthChange(said.clock.now(), "P1", True, "P1/$state: ready", said=True))
    said.expect_nothing(until=180)  # three minutes: stale_point's `for: 1m` twice over, offline never
    silent.expect_alerts(between=(3, 4.5), firing=[("comms.device_offline", "P1")])
    said.core.bus.publish_health(HealthChange(said.clock.now(), "P1", False, "P1/$state: lost", said=True))
    said.expect_alerts(between=(180, 181.5), firing=[("comms.device_offline", "P1")])
