"""InfluxDB backend against a real InfluxDB: telemetry, alerts and tickets; outage; kill -9."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path

from monitord.config.site import load_config
from monitord.core.clock import SystemClock
from monitord.core.model import SampleBatch
from monitord.daemon.core import build_core
from monitord.people.audit import AuditEvent
from monitord.simulators.site import SimulatedSite
from monitord.store.influx import InfluxStore, InfluxTarget
from monitord.store.open import open_store
from monitord.tickets.desk import TicketDesk
from tests.support import InfluxServer, V2WriteProxy, eventually, good, run, running, sample_time, site_yaml


def stamps(server: InfluxServer, measurement: str, asset: str) -> list[int]:
    return [r["time"] for r in server.query(f"SELECT * FROM \"{measurement}\" WHERE asset = '{asset}'")]


def test_telemetry_alerts_and_tickets_land_and_a_restart_rebuilds_tickets(
    tmp_path: Path, mosquitto: int, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    server, proxy = influxdb
    config = load_config(site_yaml(tmp_path, mosquitto, proxy.url))

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow") and good(app, "A-E1", "floor"), 15)
            site.inject("A-P1", "dry_run")
            await eventually(lambda: app.core.desk.tickets, 20)
            assert app.store is not None
            app.store.flush()

    run(scenario())
    assert len(stamps(server, "pump", "A-P1")) > 5
    assert len(stamps(server, "elevator", "A-E1")) > 5  # MQTT path into InfluxDB too
    tickets = server.query("SELECT * FROM ticket")
    # The roster assigns in the same evaluation that opens the ticket: one instant, order not kept.
    assert sorted((t["asset"], t["event"], t["priority"]) for t in tickets) == [
        ("A-P1", "assigned", "P1"),
        ("A-P1", "opened", "P1"),
    ]
    alerts = server.query("SELECT * FROM alert")
    assert [(a["rule"], a["asset"], a["state"]) for a in alerts] == [("pump.dry_run", "A-P1", "firing")]

    reader = open_store(config, writer=False)
    desk = TicketDesk()
    desk.restore(reader.ticket_events())
    assert [(t.asset, t.rule, t.state) for t in desk.tickets.values()] == [("A-P1", "pump.dry_run", "open")]
    restarted = build_core(config, SystemClock(), reader)
    restarted.restore(reader.ticket_events())
    assert restarted.desk.open_counts() == {"P1": 1}

    listing = subprocess.run(
        [sys.executable, "-m", "monitord", "tickets", "--config", str(tmp_path / "site.yaml"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert "A-P1" in listing.stdout and "open" in listing.stdout


def test_an_influxdb_outage_loses_nothing(
    tmp_path: Path, mosquitto: int, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    server, proxy = influxdb
    config = load_config(site_yaml(tmp_path, mosquitto, proxy.url))
    produced: list[SampleBatch] = []

    async def scenario() -> None:
        async with running(config) as (site, app):
            app.bus.subscribe(produced.append)
            await eventually(lambda: good(app, "A-P1", "flow"), 15)
            server.kill()
            site.inject("A-P1", "dry_run")  # an incident while the store is down
            await eventually(lambda: app.core.desk.tickets, 20)
            store = app.store
            assert isinstance(store, InfluxStore)
            await eventually(lambda: store.spool.size > 0, 10)
            down = app.clock.now()
            await eventually(lambda: sample_time(app, "A-P2", "flow") > down + 3, 15)
            assert good(app, "A-P2", "flow"), "polling and alerting go on while the store is down"
            server.start()
            await eventually(lambda: len(store.spool) == 0, 60)
            store.flush()

    run(scenario(), timeout=180)
    for asset, measurement in (("A-P1", "pump"), ("A-E1", "elevator"), ("A-PM-MAIN", "power_meter")):
        want = sorted(round(b.ts * 1e6) for b in produced if b.asset == asset)
        assert stamps(server, measurement, asset) == want, asset
    events = server.query("SELECT * FROM ticket")
    # Opened and assigned in one evaluation: one instant, so the store keeps no order between them.
    assert sorted((e["asset"], e["event"]) for e in events) == [("A-P1", "assigned"), ("A-P1", "opened")]


def test_spooled_data_survives_kill_9_of_the_daemon(
    tmp_path: Path, mosquitto: int, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    server, proxy = influxdb
    path = site_yaml(tmp_path, mosquitto, proxy.url)
    config = load_config(path)
    spool = tmp_path / "spool"

    async def scenario() -> set[tuple[str, int]]:
        site = SimulatedSite(config)
        sim = asyncio.create_task(site.run())
        await site.ready.wait()
        server.kill()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitord", "run", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await eventually(lambda: len(list(spool.glob("*.batch"))) >= 3, 30)
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
        spooled = set()
        for f in spool.glob("*.batch"):
            for line in gzip.decompress(f.read_bytes()).decode().splitlines():
                series, _fields, ts = line.rsplit(" ", 2)
                if series.startswith("pump,"):
                    spooled.add((series.split("asset=")[1].split(",")[0], int(ts)))
        server.start()
        again = subprocess.Popen(
            [sys.executable, "-m", "monitord", "run", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await eventually(lambda: not list(spool.glob("*.batch")), 60)
        finally:
            again.send_signal(signal.SIGINT)
            again.wait(timeout=30)
            sim.cancel()
        return spooled

    spooled = run(scenario(), timeout=180)
    assert spooled, "the spool held pump samples when the daemon was killed"
    landed = {(r["asset"], r["time"]) for r in server.query("SELECT * FROM pump")}
    assert spooled <= landed


def test_audit_events_land_once_and_read_back(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    """Who changed what (the console's audit trail) goes to InfluxDB with the next round, keyed so the
    same event written twice lands once; a reader gets the events back as written."""
    server, proxy = influxdb
    target = InfluxTarget(proxy.url, "monitord")
    store = InfluxStore(target, "s1", {}, tmp_path / "spool", flush_interval=0.05)
    events = [
        AuditEvent(1_795_000_000.25, "wang", "technician", "link", "10.0.0.7", "ticket.ack", "WO-1", 200),
        AuditEvent(1_795_000_001.5, "li", "viewer", "token", "10.0.0.8", "start", "WO-1", 403, "a viewer"),
    ]
    store.write_audit(events)
    store.write_audit(events[:1])
    store.close()
    assert len(server.query("SELECT * FROM audit")) == 2
    assert InfluxStore(target, "s1", {}, tmp_path / "spool", writer=False).audit_events() == events
