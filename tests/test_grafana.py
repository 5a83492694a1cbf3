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
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitord.config.site import CONFIG_DIR, load_config
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


ASSET_OF_TYPE = {"elevator": "A-E1", "pump": "A-P1", "ahu": "A-AHU1", "power_meter": "A-PM-MAIN"}


def substitute(query: str) -> str:
    measurement = re.search(r'FROM "(\w+)"', query)
    mtype = measurement.group(1) if measurement and measurement.group(1) in ASSET_OF_TYPE else "pump"
    return (
        query.replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "5s")
        .replace("$site", "tower-a")
        .replace("$type", mtype)
        .replace("$asset", ASSET_OF_TYPE[mtype])
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
            return await asyncio.to_thread(empty_queries, server, prom_port)

    empty = run(scenario(), timeout=180)
    assert empty == [], "\n".join(empty)
    assert len(influxql_cases()) > 15 and len(promql_cases()) > 8


def empty_queries(server: InfluxServer, prom_port: int) -> list[str]:
    empty = []
    for dashboard, where, query in influxql_cases():
        if not server.query(substitute(query), db="monitord"):
            empty.append(f"{dashboard} {where}: {substitute(query)}")
    for dashboard, title, expr in promql_cases():
        if not promql(prom_port, expr):
            empty.append(f"{dashboard} panel {title!r}: {expr}")
    return empty
