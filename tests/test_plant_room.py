"""The daemon against the simulated plant room over real UDP: a chiller on BACnet/IP, a UPS on SNMP."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.model import Quality
from monitord.store.sqlite import SqliteStore
from tests.support.daemon import evaluated_past, good, running
from tests.support.net import eventually, free_udp_port, run


def plant_room(tmp_path: Path) -> SiteConfig:
    """The plant-room example on free loopback ports, storing in tmp_path."""
    config = load_config(CONFIG_DIR / "sites" / "plant-room.yaml")
    assets = []
    for a in config.assets:
        conn = a.connection
        if conn.bacnet:
            conn = conn.model_copy(
                update={"bacnet": conn.bacnet.model_copy(update={"port": free_udp_port()})}
            )
        if conn.snmp:
            conn = conn.model_copy(update={"snmp": conn.snmp.model_copy(update={"port": free_udp_port()})})
        assets.append(a.model_copy(update={"connection": conn, "poll": 1.0}))
    return config.model_copy(
        update={
            "assets": assets,
            "bacnet": config.bacnet.model_copy(update={"local": f"127.0.0.1:{free_udp_port()}"}),
            "store": config.store.model_copy(update={"path": str(tmp_path / "store.db")}),
            "metrics": config.metrics.model_copy(update={"port": 0}),
            "api": config.api.model_copy(update={"port": 0}),
            "notify": config.notify.model_copy(update={"log": str(tmp_path / "notifications.db")}),
        }
    )


def test_ups_on_battery_fires_and_a_silent_chiller_goes_offline(tmp_path: Path) -> None:
    config = plant_room(tmp_path)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "B2-UPS1", "output_source"), 15)
            await eventually(lambda: good(app, "B2-CH1", "discharge_temp"), 15)
            site.inject("B2-UPS1", "on_battery")
            await eventually(lambda: app.core.state.latest("B2-UPS1")["output_source"][0] == 5, 10)
            await eventually(
                lambda: (
                    ("ups.on_battery", "B2-UPS1")
                    in {(a["rule"], a["asset"]) for a in app.core.firing_alerts()}
                ),
                15,
            )
            site.clear("B2-UPS1", "on_battery")

            # A chiller fault reaches the daemon (by COV or the next poll: test_bacnet shows COV alone).
            site.inject("B2-CH1", "high_discharge_temp")
            await eventually(lambda: app.core.state.latest("B2-CH1")["discharge_temp"][0] > 90, 10)

            site.inject("B2-CH1", "silent")
            await eventually(
                lambda: app.core.state.latest("B2-CH1")["discharge_temp"][2] == Quality.COMM_ERROR, 10
            )
            await eventually(
                lambda: [t for t in app.core.desk.tickets.values() if t.rule == "comms.device_offline"], 15
            )
            await evaluated_past(app, app.clock.now() + 1, fresh=[("B2-UPS1", "output_source")])
            assert good(app, "B2-UPS1", "output_source"), "the UPS keeps answering"

    run(scenario())
    store = SqliteStore(tmp_path / "store.db")
    try:
        fired = {(a.rule, a.asset) for a in store.alert_events() if a.state == "firing"}
        assert {("ups.on_battery", "B2-UPS1"), ("comms.device_offline", "B2-CH1")} <= fired
        failed = [b for b in store.samples("B2-CH1") if (b.quality == Quality.COMM_ERROR).all()]
        assert failed, "the silent chiller's polls are stored as comm_error"
        assert all(b.values.size and (b.values != b.values).all() for b in failed), "never a value"
    finally:
        store.close()


def test_monitord_sim_serves_the_plant_room_and_says_when_it_cannot(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    bacnet, snmp = free_udp_port(), free_udp_port()
    text = (
        (CONFIG_DIR / "sites" / "plant-room.yaml")
        .read_text()
        .replace("../profiles/", f"{CONFIG_DIR}/profiles/")
    )
    site.write_text(text.replace("port: 47809", f"port: {bacnet}").replace("port: 16161", f"port: {snmp}"))

    def sim() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "monitord", "sim", str(site), "--duration", "2s"]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=60)

    done = sim()
    assert done.returncode == 0, done.stderr
    assert (
        f"simulating 2 assets of plant-room: bacnet 127.0.0.1:{bacnet}, snmp 127.0.0.1:{snmp}" in done.stdout
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", snmp))
        refused = sim()
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == f"monitord: snmp simulator cannot listen on 127.0.0.1:{snmp}: Address already in use"
    )
