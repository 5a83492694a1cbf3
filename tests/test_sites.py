"""Many sites, one store: three sites write to one real InfluxDB, each restores only its own.

Three ``Monitord`` instances in this process, each with its simulated pumps
served over real Modbus TCP sockets, all storing to one InfluxDB database (Debian's
1.6.7 behind the /api/v2/write proxy). The sites use the same asset ids on
purpose: only the ``site`` tag keeps them apart. Each opens tickets, stops,
starts again and restores exactly its own; ticket ids are unique across the
three because each carries its site's code.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.errors import ConfigError
from monitord.daemon.app import Monitord
from monitord.people.audit import AuditEvent
from monitord.people.logsite import claim
from monitord.store.influx import InfluxStore, InfluxTarget
from tests.support import (
    TOKEN,
    InfluxServer,
    V2WriteProxy,
    eventually,
    free_port,
    get,
    good,
    run,
    running,
    simulated,
)

RULES = CONFIG_DIR.parent / "rules" / "packs"
#: site id → (ticket code, pumps to run dry): each site opens a different number of tickets
SITES = {"north-tower": ("N", ["P1"]), "south-tower": ("S", ["P1", "P2"]), "east-mall": ("E", ["P2"])}


def site_config(tmp_path: Path, site: str, code: str, influx_url: str, api: int = 0) -> SiteConfig:
    """Two pumps of one site behind one Modbus TCP port, in two buildings, storing to the shared InfluxDB."""
    folder = tmp_path / site
    folder.mkdir(exist_ok=True)
    port = free_port()
    pumps = "".join(
        f"  - {{id: P{u}, type: pump, profile: pump-set, location: {{building: {code}{u}}},\n"
        f"     connection: {{modbus: {{host: 127.0.0.1, port: {port}, unit: {u}}}}}}}\n"
        for u in (1, 2)
    )
    path = folder / "site.yaml"
    path.write_text(
        f"site: {{id: {site}, code: {code}}}\n"
        f"store: {{kind: influxdb, url: '{influx_url}', bucket: monitord, spool: '{folder}/spool',"
        " flush_interval: 200ms}\n"
        f"notify: {{log: '{folder}/notifications.db'}}\n"
        f"metrics: {{port: 0}}\napi: {{port: {api}, token: {TOKEN}}}\npoll: 1s\n"
        f"profiles:\n  - include: {CONFIG_DIR}/profiles/pump-set.yaml\n"
        f"assets:\n{pumps}"
        f"rules:\n  - include: {RULES}/pump.yaml\n"
    )
    return load_config(path)


def has_tickets(app: Monitord, n: int) -> bool:
    return len(app.core.desk.tickets) == n


def tickets_ready(app: Monitord) -> bool:
    return app.core.pipeline.tickets_ready


def test_three_sites_share_one_influxdb_and_each_restores_only_its_own(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy], caplog: pytest.LogCaptureFixture
) -> None:
    server, proxy = influxdb
    configs = {s: site_config(tmp_path, s, code, proxy.url) for s, (code, _dry) in SITES.items()}

    async def first_run() -> dict[str, set[str]]:
        async with contextlib.AsyncExitStack() as stack:
            apps = {s: await stack.enter_async_context(running(c)) for s, c in configs.items()}
            for s, (sim, app) in apps.items():
                await eventually(functools.partial(good, app, "P1", "suction_pressure"), 20)
                for pump in SITES[s][1]:
                    sim.inject(pump, "dry_run")
            for s, (_sim, app) in apps.items():
                want = len(SITES[s][1])
                await eventually(functools.partial(has_tickets, app, want), 30)
            return {s: set(app.core.desk.tickets) for s, (_sim, app) in apps.items()}

    opened = run(first_run(), timeout=120)
    for s, ids in opened.items():
        code = SITES[s][0]
        assert all(re.fullmatch(rf"WO-{code}-\d{{8}}-\d{{4}}", t) for t in ids), ids
    every = [t for ids in opened.values() for t in ids]
    assert len(every) == len(set(every)) == 4, "ticket ids are unique across the three sites"
    stored = {r["site"] for r in server.query('SELECT "state", "site" FROM "ticket"')}
    assert stored == set(SITES), "one database holds the tickets of all three"

    # The second time a fourth site comes too, configured by mistake with north's code.
    configs["north-annex"] = site_config(tmp_path, "north-annex", "N", proxy.url)

    async def second_run() -> dict[str, set[str]]:
        async with contextlib.AsyncExitStack() as stack:
            apps = {s: await stack.enter_async_context(running(c)) for s, c in configs.items()}
            for _sim, app in apps.values():
                await eventually(functools.partial(tickets_ready, app), 30)
            return {s: set(app.core.desk.tickets) for s, (_sim, app) in apps.items()}

    restored = run(second_run(), timeout=120)
    assert restored == opened | {"north-annex": set()}, "each site restored exactly its own tickets"
    told = [
        r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "site.code" in r.getMessage()
    ]
    assert told == [
        "site.code N: site(s) north-tower of the same store also number tickets WO-N-...; "
        "give each site its own site.code, or ticket ids repeat across sites"
    ]

    # Every other read-back path is the site's own too: alert events and the audit trail.
    target = InfluxTarget(proxy.url, "monitord")
    for s, (code, dry) in SITES.items():
        store = InfluxStore(target, s, {}, tmp_path / s / "spool", writer=False)
        alerts = store.alert_events()
        assert {a.asset for a in alerts if a.rule == "pump.dry_run"} == set(dry)
        assert len(alerts) == len(server.query(f'SELECT "state" FROM "alert" WHERE "site" = \'{s}\''))
        assert {t.ticket for t in store.ticket_events()} == opened[s]
        writer = InfluxStore(target, s, {}, tmp_path / s / "spool2", flush_interval=0.05)
        writer.write_audit(
            [AuditEvent(1_795_000_000.0, f"duty-{code}", "admin", "token", "::1", "login", s, 200)]
        )
        writer.close()
    for s, (code, _dry) in SITES.items():
        audit = InfluxStore(target, s, {}, tmp_path / s / "spool", writer=False).audit_events()
        assert [a.actor for a in audit] == [f"duty-{code}"]
    annex = InfluxStore(target, "north-annex", {}, tmp_path / "annex", writer=False)
    assert annex.code_users("N") == {"north-tower"} and annex.code_users("W") == set()
    assert InfluxStore(target, "north-tower", {}, tmp_path / "annex", writer=False).code_users("N") == set()


def test_two_sites_never_share_a_notification_log(tmp_path: Path) -> None:
    """The log holds silences, the outbox and the link secret: a second site pointed at the first's
    (two instances started with default paths in one folder) is refused by name, before it reads it."""
    north = site_config(tmp_path, "north-tower", "N", "http://127.0.0.1:1")
    claim(north.notify_log, "north-tower")
    claim(north.notify_log, "north-tower")  # its own again: fine
    south = site_config(tmp_path, "south-tower", "S", "http://127.0.0.1:1")
    shared = south.model_copy(
        update={"notify": south.notify.model_copy(update={"log": str(north.notify_log)})}
    )
    with pytest.raises(ConfigError) as err:
        Monitord(shared)
    assert err.value.problems == [
        f"notify.log: {north.notify_log} is the notification log of site 'north-tower', not 'south-tower': "
        "give each site its own notify.log (and store.spool)"
    ]


def ticket_ids(api: int) -> set[str] | None:
    """The tickets a ``monitord run`` process holds (its read API), None while it does not answer."""
    try:
        return {t["id"] for t in get(f"http://127.0.0.1:{api}/tickets")}
    except OSError:
        return None


def holds(api: int, n: int) -> bool:
    ids = ticket_ids(api)
    return ids is not None and len(ids) == n


def test_three_monitord_processes_on_one_influxdb_restart_with_their_own_tickets(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    """The same as separate ``monitord run`` processes (the simulators in this process, over real
    Modbus TCP): each opens its tickets, is stopped (SIGINT), started again, and serves its own only."""
    _server, proxy = influxdb
    apis = {s: free_port() for s in SITES}
    configs = {s: site_config(tmp_path, s, code, proxy.url, apis[s]) for s, (code, _d) in SITES.items()}

    def start() -> list[subprocess.Popen[bytes]]:
        return [
            subprocess.Popen(
                [sys.executable, "-m", "monitord", "run", configs[s].source],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for s in SITES
        ]

    def stop(daemons: list[subprocess.Popen[bytes]]) -> None:
        for d in daemons:
            d.send_signal(signal.SIGINT)
        for d in daemons:
            assert d.wait(timeout=30) == 0

    async def scenario() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        async with contextlib.AsyncExitStack() as stack:
            sims = {s: await stack.enter_async_context(simulated(c)) for s, c in configs.items()}
            daemons = start()
            try:
                for s, (_code, dry) in SITES.items():
                    await eventually(functools.partial(holds, apis[s], 0), 30)
                    for pump in dry:
                        sims[s].inject(pump, "dry_run")
                for s, (_code, dry) in SITES.items():
                    await eventually(functools.partial(holds, apis[s], len(dry)), 40)
                opened = {s: ticket_ids(apis[s]) or set() for s in SITES}
            finally:
                stop(daemons)
            daemons = start()
            try:
                restored = {s: await eventually(functools.partial(ticket_ids, apis[s]), 30) for s in SITES}
            finally:
                stop(daemons)
            return opened, restored

    opened, restored = run(scenario(), timeout=150)
    every = [t for ids in opened.values() for t in ids]
    assert len(every) == len(set(every)) == 4
    assert restored == opened, "each process restored exactly its own tickets"
