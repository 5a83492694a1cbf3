"""Benchmark: replay the day of ``bench/replay.py`` (1,000 assets at 10 s) from InfluxDB and from SQLite.

The day is ``bench/replay.py``'s SQLite store (made there if missing). Its samples are loaded once,
as the InfluxStore writes them (its own line builder, ``sample_lines``), into a Debian influxd whose
data folder is kept in the temp folder (``monitord-bench-replay-influx``), beside them 100 assets of
another site in the same database over the same day, which the replay must skip. Then each replay
runs in its own process (so that peak memory is its own): ``--from-store`` on a site file that names
the InfluxDB, and ``--from`` the SQLite file, each timed around the replay itself. Needs `influxd`.
"""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from bench.replay import START, STEP, make_day, site
from monitord.config.site import load_config
from monitord.core.model import Frame
from monitord.store.influx import READ_WINDOW, InfluxStore, InfluxTarget
from monitord.store.open import open_store
from monitord.store.sqlite import SqliteStore
from monitord.tools.replay import Progress, replay, site_source, source_of
from tests.support.influx import InfluxServer

CHUNK = 10_000  # lines per POST while loading (influxd resets a connection whose body is too big)


def post(server: InfluxServer, lines: list[str]) -> None:
    body = gzip.compress("\n".join(lines).encode())
    request = urllib.request.Request(
        server.url + "/write?db=monitord&precision=u", data=body, headers={"Content-Encoding": "gzip"}
    )
    urllib.request.urlopen(request, timeout=600).close()


def load(server: InfluxServer, config_path: Path, day: Path, until: float) -> None:
    """The SQLite day up to ``until`` into InfluxDB as the writer's lines; another site's 100 assets
    beside it."""
    config = load_config(config_path)
    assets = {a.id: (a.type, "") for a in config.assets}
    ours = InfluxStore(InfluxTarget(server.url, "monitord"), "bench", assets, Path("-"), writer=False)
    other_assets = {a: v for a, v in list(assets.items())[::10]}
    theirs = InfluxStore(
        InfluxTarget(server.url, "monitord"), "elsewhere", other_assets, Path("-"), writer=False
    )
    lines: list[str] = []
    n = 0
    for frame in SqliteStore(day, writer=False).frames(until=until):
        batches = list(frame.batches())
        lines += ours.sample_lines(batches)
        lines += theirs.sample_lines(batches)
        if len(lines) >= CHUNK:  # a stored frame can hold tens of thousands of rows: sent in slices
            for i in range(0, len(lines), CHUNK):
                post(server, lines[i : i + CHUNK])
            n += len(lines)
            lines = []
            print(f"\rloading InfluxDB: {n:,} lines", end="", file=sys.stderr, flush=True)
    if lines:
        post(server, lines)
    print(file=sys.stderr)


def one(kind: str, config_path: str, source: str, until_text: str) -> None:
    """Child process: one replay, timed; prints a JSON line."""
    config = load_config(config_path)
    until = float(until_text)
    frames: Iterable[Frame]
    total: int | None
    if kind == "influxdb":
        frames, total = site_source(config, until=until), None
    else:
        frames, total = source_of(Path(source), until=until)
    if kind == "bare":  # the same queries, bodies read and dropped: what the server itself takes
        store = open_store(config, writer=False)
        assert isinstance(store, InfluxStore)
        span = store._span(store._where_site(), None, until)
        assert span is not None
        t0 = time.perf_counter()
        size = 0
        step = round(READ_WINDOW * 1e6)
        for start in range(span[0], span[1] + 1, step):
            for measurement in store._types:
                q = (
                    f'SELECT * FROM "{measurement}" WHERE {store._where_site()}'
                    f" AND time >= {start}u AND time < {min(start + step, span[1] + 1)}u"
                )
                params = urllib.parse.urlencode({"db": "monitord", "q": q, "epoch": "u"})
                with urllib.request.urlopen(f"{store.target.url}/query?{params}", timeout=600) as r:
                    size += len(r.read())
        print(json.dumps({"wall": time.perf_counter() - t0, "bytes": size}))
        return
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = replay(config, frames, step=STEP, progress=Progress(total))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    fired = sorted({(a.rule, a.asset) for a in result.alerts if a.state == "firing"})
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "batches": result.batches,
                "samples": result.samples,
                "fired": fired,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
        )
    )


def main(hours: float) -> None:
    """``hours`` of the day (default 24; loading InfluxDB took 170 s for 6 h, 2.4 M lines, on the
    shared 2-core machine: a whole day is about 11 minutes, once)."""
    until = START + hours * 3600
    shared = Path(tempfile.gettempdir()) / "monitord-bench-replay"
    shared.mkdir(exist_ok=True)
    day = shared / "day-v3.db"  # bench/replay.py's day
    folder = Path(tempfile.gettempdir()) / "monitord-bench-replay-influx"
    folder.mkdir(exist_ok=True)
    config_path = site(folder)
    if not day.exists():
        make_day(config_path, day.with_suffix(".tmp"))
        day.with_suffix(".tmp").rename(day)
    (folder / "influxdb").mkdir(exist_ok=True)
    server = InfluxServer(folder / "influxdb")
    server.start()
    try:
        loaded = folder / f"loaded-v1-{hours:g}h"
        if not loaded.exists():
            server.query("CREATE DATABASE monitord")
            t0 = time.perf_counter()
            load(server, config_path, day, until)
            print(f"loaded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            loaded.touch()
        influx_site = folder / "site-influx.yaml"
        influx_site.write_text(
            config_path.read_text()
            + f"store: {{kind: influxdb, url: '{server.url}', bucket: monitord, spool: '{folder}/spool'}}\n"
        )
        runs = {}
        for kind, cfg in (("sqlite", config_path), ("influxdb", influx_site), ("bare", influx_site)):
            out = subprocess.run(
                [sys.executable, "-m", "bench.replay_influx", "--one", kind, str(cfg), str(day), str(until)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[kind] = json.loads(out.stdout.splitlines()[-1])
    finally:
        server.kill()
    s, i, bare = runs["sqlite"], runs["influxdb"], runs.pop("bare")
    print(f"== {hours:g} h of 1,000 assets at {STEP:.0f} s from {START:.0f}: {s['batches']:,} batches ==")
    for kind, r in runs.items():
        print(
            f"replay from {kind:8}  {r['wall']:7.1f} s wall, {r['cpu']:6.1f} s CPU "
            f"({r['samples'] / r['wall']:,.0f} samples/s), peak RSS {r['rss_mb']} MB, "
            f"{r['batches']:,} batches, {len(r['fired'])} alert series fired"
        )
    print(f"  InfluxDB / SQLite            {i['wall'] / s['wall']:7.1f}x")
    print(
        f"bare InfluxDB read            {bare['wall']:7.1f} s wall (the same queries,"
        f" {bare['bytes'] / 2**20:,.0f} MiB of JSON read and dropped)"
    )
    print(f"  same batches: {i['batches'] == s['batches']}, same alerts fired: {i['fired'] == s['fired']}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        one(*sys.argv[2:6])
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 24.0)
