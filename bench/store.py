"""Benchmark: sustained write throughput of each store backend for the demo schema.

Feeds batches shaped like the demo site's (SDM630 meters, pumps, elevators)
through ``SqliteStore`` and ``InfluxStore`` (against Debian's influxd behind the
test support's /api/v2/write proxy), and, as the baseline in the same run,
POSTs the very same line-protocol batches (5,000 lines, gzip) straight to
InfluxDB's /write with urllib. Prints points/s, medians of three rounds.
Needs `influxd` (Debian package influxdb).
"""

from __future__ import annotations

import gzip
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from monitord.config.site import CONFIG_DIR, load_config
from monitord.core.model import SampleBatch
from monitord.store.influx import PRECISION, InfluxStore, InfluxTarget
from monitord.store.sqlite import SqliteStore
from tests.support.influx import InfluxServer, V2WriteProxy

#: InfluxDB 1.x spells the store's line precision its own way on /write
V1_PRECISION = {"us": "u"}.get(PRECISION, PRECISION)

SECONDS_OF_DATA = 200
ASSETS_PER_TYPE = 100


def batches(config_path: Path) -> list[list[SampleBatch]]:
    config = load_config(config_path)
    out = []
    rng = np.random.default_rng(3)
    plans = [(a.type, tuple(config.profile(a.profile).points)) for a in config.assets[:7]]
    for second in range(SECONDS_OF_DATA):
        step = []
        for t, points in plans:
            for i in range(ASSETS_PER_TYPE):
                step.append(
                    SampleBatch(
                        1_795_000_000.0 + second,
                        f"{t}-{i}",
                        points,
                        rng.random(len(points)),
                        np.zeros(len(points), dtype=np.int8),
                    )
                )
        out.append(step)
    return out


def main() -> None:
    config_path = CONFIG_DIR / "sites" / "demo.yaml"
    data = batches(config_path)
    points = sum(len(b) for step in data for b in step)
    assets = {b.asset: (b.asset.split("-")[0], "A") for b in data[0]}
    results: dict[str, list[float]] = {"sqlite": [], "influxdb": [], "raw POST": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "influx"
        folder.mkdir()
        server = InfluxServer(folder)
        server.start()
        server.query("CREATE DATABASE bench")
        proxy = V2WriteProxy(server.url)
        try:
            for r in range(3):
                sqlite = SqliteStore(Path(tmp) / f"s{r}.db", flush_interval=0.2)
                t0 = time.perf_counter()
                for step in data:
                    sqlite.write_samples(step)
                sqlite.flush(timeout=600)
                results["sqlite"].append(points / (time.perf_counter() - t0))
                sqlite.close()

                influx = InfluxStore(
                    InfluxTarget(proxy.url, "bench"),
                    "bench",
                    assets,
                    Path(tmp) / f"spool{r}",
                    flush_interval=0.2,
                )
                lines = [influx.sample_lines(step) for step in data]
                t0 = time.perf_counter()
                for step in data:
                    influx.write_samples(step)
                influx.flush(timeout=600)
                results["influxdb"].append(points / (time.perf_counter() - t0))
                influx.close()

                flat = [line for step in lines for line in step]
                t0 = time.perf_counter()
                for i in range(0, len(flat), 5000):
                    body = gzip.compress("\n".join(flat[i : i + 5000]).encode())
                    request = urllib.request.Request(
                        server.url + f"/write?db=bench&precision={V1_PRECISION}",
                        data=body,
                        headers={"Content-Encoding": "gzip"},
                    )
                    urllib.request.urlopen(request, timeout=60).close()
                results["raw POST"].append(points / (time.perf_counter() - t0))
        finally:
            proxy.close()
            server.kill()
    print(f"== {points:,} points ({SECONDS_OF_DATA} s of {7 * ASSETS_PER_TYPE} demo-shaped assets) ==")
    for name, values in results.items():
        print(f"{name:10} {statistics.median(values):12,.0f} points/s")
    ratio = statistics.median(results["influxdb"]) / statistics.median(results["raw POST"])
    print(
        f"influxdb store / raw line-protocol POST: {ratio:.2f} (the store also builds the lines and goes "
        "through the v2-write proxy)"
    )


if __name__ == "__main__":
    main()
