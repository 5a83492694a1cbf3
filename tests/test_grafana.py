"""Every Grafana panel query returns data from a real InfluxDB and a real Prometheus.

A simulated site runs against the daemon with the InfluxDB store; Debian's
Prometheus scrapes the daemon's /metrics every second. Then each InfluxQL
query of each dashboard (panels, annotations, template variables) runs against
InfluxDB and each PromQL query against Prometheus's HTTP API, with the
template variables substituted, and each must return data: a dashboard that
names a measurement, field or metric that does not exist fails here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import CONFIG_DIR, load_config
from monitord.core.model import Quality, SampleBatch
from monitord.store.influx import InfluxStore, InfluxTarget
from monitord.tickets.desk import TicketDesk, TicketPolicyView
from tests.support import (
    InfluxServer,
    V2WriteProxy,
    eventually,
    free_port,
    good,
    run,
    running,
    site_yaml,
    wait_port,
)

POLICY = TicketPolicyView("P1", "plumbing", auto_resolve=True)
DASHBOARDS = sorted((CONFIG_DIR / "grafana" / "dashboards").glob("*.json"))


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(prometheus port, the metrics port it scrapes); the daemon must serve metrics there."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; `make test` installs Debian's prometheus as root")
        pytest.skip("prometheus is not installed (Debian package 'prometheus')")
    port, target = free_port(), free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: monitord
    static_configs: [{{targets: ['127.0.0.1:{target}']}}]
""")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={conf}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, 30)
        yield port, target
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def promql(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def influxql_cases() -> list[tuple[str, str, str]]:
    """(dashboard, where, query) for every InfluxQL text in every dashboard."""
    cases = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        texts = [
            (f"panel {p['title']!r}", t["query"]) for p in d["panels"] for t in p["targets"] if "query" in t
        ]
        texts += [(f"annotation {a['name']!r}", a["query"]) for a in d["annotations"]["list"]]
        texts += [
            (f"variable ${v['name']}", v["query"])
            for v in d["templating"]["list"]
            if v.get("datasource", {}).get("type") == "influxdb"
        ]
        cases += [(path.name, where, q) for where, q in texts]
    return cases


def promql_cases() -> list[tuple[str, str, str]]:
    return [
        (path.name, p["title"], t["expr"])
        for path in DASHBOARDS
        for p in json.loads(path.read_text())["panels"]
        for t in p["targets"]
        if "expr" in t
    ]


def prometheus_variables() -> list[tuple[str, str, str, str]]:
    """(dashboard, variable, selector, label) of every ``label_values(selector, label)`` variable."""
    out = []
    for path in DASHBOARDS:
        for v in json.loads(path.read_text())["templating"]["list"]:
            if v.get("datasource", {}).get("type") == "prometheus":
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
                assert m, v
                out.append((path.name, v["name"], m.group(1), m.group(2)))
    return out


def label_values(port: int, selector: str, label: str) -> set[str]:
    """What Grafana's ``label_values(selector, label)`` lists: the label's values among the series."""
    url = f"http://127.0.0.1:{port}/api/v1/series?" + urllib.parse.urlencode({"match[]": selector})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return {s[label] for s in body["data"] if label in s}


ASSET_OF_TYPE = {"elevator": "A-E1", "pump": "A-P1", "ahu": "A-AHU1", "power_meter": "A-PM-MAIN"}


def substitute(
    query: str, site: str = "tower-a", building: str = "A", assets: dict[str, str] = ASSET_OF_TYPE
) -> str:
    """The query as Grafana sends it with these variables chosen (a regex like ``.*`` for All)."""
    measurement = re.search(r'FROM "(\w+)"', query)
    mtype = measurement.group(1) if measurement and measurement.group(1) in assets else "pump"
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "5s")
        .replace("$site", site)
        .replace("$building", building)
        .replace("$type", mtype)
        .replace("$asset", assets[mtype])
    )


def test_every_panel_query_returns_data(
    tmp_path: Path, mosquitto: int, influxdb: tuple[InfluxServer, V2WriteProxy], prometheus: tuple[int, int]
) -> None:
    server, proxy = influxdb
    prom_port, metrics_port = prometheus
    config = load_config(site_yaml(tmp_path, mosquitto, proxy.url))
    config = config.model_copy(update={"metrics": config.metrics.model_copy(update={"port": metrics_port})})

    async def scenario() -> list[str]:
        async with running(config, metrics_port=metrics_port) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow") and good(app, "A-E1", "floor"), 15)
            site.inject("A-P1", "dry_run")
            site.inject("A-P2", "silent")  # driver errors and an offline device for the health panels
            await eventually(lambda: len(app.core.desk.tickets) >= 2, 30)
            site.clear("A-P2", "silent")
            await asyncio.sleep(8)
            assert app.store is not None
            app.store.flush()
            # Query while the daemon still runs: Prometheus marks a vanished target's series stale.
            await eventually(lambda: promql(prom_port, "monitord_tickets_open"), 30)
            return await asyncio.to_thread(empty_queries, server, prom_port, f"127.0.0.1:{metrics_port}")

    empty = run(scenario(), timeout=180)
    assert empty == [], "\n".join(empty)
    assert len(influxql_cases()) > 15 and len(promql_cases()) > 8


def empty_queries(server: InfluxServer, prom_port: int, instance: str) -> list[str]:
    empty = []
    for dashboard, where, query in influxql_cases():
        if not server.query(substitute(query), db="monitord"):
            empty.append(f"{dashboard} {where}: {substitute(query)}")
    for dashboard, title, expr in promql_cases():
        expr = expr.replace("$site", "tower-a").replace("$instance", instance)
        if not promql(prom_port, expr):
            empty.append(f"{dashboard} panel {title!r}: {expr}")
    for dashboard, name, selector, label in prometheus_variables():
        selector = selector.replace("$site", "tower-a")
        want = {"site": "tower-a", "instance": instance}[label]
        if label_values(prom_port, selector, label) != {want}:
            empty.append(f"{dashboard} variable ${name}: label_values({selector}, {label}) lacks {want}")
    return empty


#: Three sites' telemetry in one database: site → its buildings. east-mall never alerted.
FLEET = {"north-tower": ("N1", "N2"), "south-tower": ("S1",), "east-mall": ("E1", "E2")}
ALERTED = ("north-tower", "south-tower")


def write_fleet(tmp_path: Path, url: str) -> None:
    """Samples of every type the dashboards read, per site and building (one bad point in each fifth
    read), through monitord's own InfluxDB writer; an alert and its ticket for the sites in ALERTED."""
    demo = load_config(CONFIG_DIR / "sites" / "demo.yaml")
    points: dict[str, list[str]] = {}
    for a in demo.assets:  # one read per type with every point its profiles have
        names = points.setdefault(a.type, [])
        names += [p for p in demo.profile(a.profile).points if p not in names]
    now = time.time()
    for site, buildings in FLEET.items():
        assets = {f"{b}-{t}": (t, b) for b in buildings for t in ASSET_OF_TYPE}
        store = InfluxStore(InfluxTarget(url, "monitord"), site, assets, tmp_path / site, flush_interval=0.05)
        batches = []
        for asset, (mtype, _b) in assets.items():
            read = tuple(points[mtype])
            for k in range(20):
                quality = np.zeros(len(read), dtype=np.int8)
                quality[0] = Quality.COMM_ERROR if k % 5 == 0 else Quality.GOOD
                values = np.arange(len(read), dtype=np.float64) + k
                batches.append(SampleBatch(now - 600 + 30 * k, asset, read, values, quality))
        store.write_samples(batches)
        if site in ALERTED:
            pump = f"{buildings[0]}-pump"
            alert = AlertEvent(now - 300, "pump.dry_run", pump, "firing", "critical", now - 310, "dry")
            store.write_alerts([alert])
            store.write_tickets(TicketDesk(site[0].upper()).on_alert(alert, POLICY, buildings[0]))
        store.close()


def by_site_and_building(query: str) -> str:
    """The query with its series split by site and building, so each row says where it came from."""
    if "GROUP BY " in query:
        return query.replace("GROUP BY ", 'GROUP BY "site", "building", ', 1)
    return query + ' GROUP BY "site", "building"'


def test_dashboards_list_every_site_from_telemetry_and_show_the_chosen_one_only(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    server, proxy = influxdb
    write_fleet(tmp_path, proxy.url)
    variables = {
        (path.name, v["name"]): v["query"]
        for path in DASHBOARDS
        for v in json.loads(path.read_text())["templating"]["list"]
        if v.get("datasource", {}).get("type") == "influxdb"
    }
    sites = [q for (_d, name), q in variables.items() if name == "site"]
    assert len(sites) == 3  # overview, equipment, energy
    for q in sites:
        assert {r["value"] for r in server.query(q)} == set(FLEET), q
    for (_d, name), q in variables.items():
        if name == "building":
            for site, buildings in FLEET.items():
                assert {r["value"] for r in server.query(substitute(q, site))} == set(buildings), q

    checked = 0
    for site, buildings in FLEET.items():
        for building in (".*", buildings[-1]):
            assets = {t: f"{buildings[-1]}-{t}" for t in ASSET_OF_TYPE}
            for dashboard, where, query in influxql_cases():
                if where.startswith("variable"):
                    continue
                rows = server.query(by_site_and_building(substitute(query, site, building, assets)))
                events = re.search(r'FROM "(alert|ticket)"', query) is not None
                wanted = building in (".*", buildings[0]) and site in ALERTED if events else True
                assert bool(rows) == wanted, f"{dashboard} {where} for {site}/{building}: {len(rows)} rows"
                assert {r["site"] for r in rows} <= {site}, f"{dashboard} {where}: another site's data"
                if building != ".*":
                    assert {r["building"] for r in rows} <= {building}, (
                        f"{dashboard} {where}: other buildings"
                    )
                checked += bool(rows)
    assert checked > 60
