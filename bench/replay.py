"""Benchmark: replay one day of 1,000 assets at 10 s resolution.

Builds a site of 1,000 assets (elevators, pumps, AHUs, SDM630 meters, 250 of
each) from the shipped profiles and packs, and a SQLite store holding one day
of their samples at 10 s (8.64 million batches; values from the simulators'
models plus noise, with dry-run episodes on a few pumps). The store is made
once and kept in the temp folder. Then ``monitord replay`` runs it through
rules, alert lifecycle and ticket decisions. Baseline in the same run: reading
the same frames from SQLite without doing anything with them.
"""

from __future__ import annotations

import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from monitord.config.site import CONFIG_DIR, load_config
from monitord.core.model import SampleBatch
from monitord.simulators.models import MODELS
from monitord.store.sqlite import SqliteStore
from monitord.tools.replay import Progress, replay, source_of

#: (type, profile, connection): each Modbus device on a line of its own (one unit per line and id)
KINDS = [
    ("elevator", "elevator-gbt24476", "mqtt: {{}}"),
    ("pump", "pump-set", "modbus: {{host: 10.1.0.{i}, unit: 1}}"),
    ("ahu", "ahu", "modbus: {{host: 10.2.0.{i}, unit: 1}}"),
    ("power_meter", "eastron-sdm630", "modbus: {{host: 10.3.0.{i}, unit: 1}}"),
]
PER_KIND, STEP, DAY = 250, 10.0, 86_400
START = 1_795_046_400.0  # a midnight


def site(folder: Path) -> Path:
    lines = ["site: {id: bench}", 'mqtt: {url: "mqtt://127.0.0.1:1883"}', "poll: 10s", "profiles:"]
    lines += [f"  - include: {CONFIG_DIR}/profiles/{p}.yaml" for _t, p, _c in KINDS]
    lines += [f"  - include: {CONFIG_DIR}/profiles/{p}.yaml" for p in ("fire-monitor", "chiller")]
    lines.append("assets:")
    for t, p, conn in KINDS:
        for i in range(PER_KIND):
            lines.append(f"  - {{id: {t}-{i}, type: {t}, profile: {p}, connection: {{{conn.format(i=i)}}}}}")
    lines.append("rules:")
    lines += [f"  - include: rules/packs/{k}.yaml" for k in ("elevator", "pump", "hvac", "power", "comms")]
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_day(config_path: Path, store_path: Path) -> None:
    config = load_config(config_path)
    rng = np.random.default_rng(7)
    store = SqliteStore(store_path, flush_interval=0.5)
    kinds = []
    for t, p, _c in KINDS:
        model = MODELS[t](f"{t}-model")
        for s in range(600):  # let the controllers settle
            model.step(START + 12 * 3600 + s, 1.0)
        profile = config.profile(p)
        points = tuple(profile.points)
        base = np.array([float(model.values.get(x, 0.0)) for x in points])
        analog = np.array([bool(profile.points[x].unit) for x in points])  # coded states get no noise
        kinds.append((t, points, base, analog))
    dry_pumps = {f"pump-{i}" for i in range(0, PER_KIND, 50)}
    suction = kinds[1][1].index("suction_pressure")
    heartbeat = kinds[0][1].index("heartbeat")
    quality = {t: np.zeros(len(pts), dtype=np.int8) for t, pts, _b, _a in kinds}
    for k in range(int(DAY / STEP)):
        now = START + k * STEP
        batch = []
        for t, points, base, analog in kinds:
            noise = rng.normal(0.0, 0.0003, (PER_KIND, len(base))) * base * analog
            values = base + noise
            if t == "elevator":
                values[:, heartbeat] = k % 65536  # the boxes' heartbeat counters keep counting
            for i in range(PER_KIND):
                asset = f"{t}-{i}"
                v = values[i]
                if asset in dry_pumps and 3600 * 14 <= now - START < 3600 * 14 + 600:
                    v = v.copy()
                    v[suction] = 0.01
                batch.append(SampleBatch(now, asset, points, v, quality[t]))
        store.write_samples(batch)
        if k % 864 == 0:
            print(f"\rmaking the day: {k * 100 // 8640}%", end="", file=sys.stderr, flush=True)
            store.flush(timeout=600)
    store.flush(timeout=600)
    store.close()
    print(file=sys.stderr)


def main() -> None:
    folder = Path(tempfile.gettempdir()) / "monitord-bench-replay"
    folder.mkdir(exist_ok=True)
    config_path = site(folder)
    store_path = folder / "day-v3.db"  # bump when the generated data or the store layout changes
    if not store_path.exists():
        make_day(config_path, store_path.with_suffix(".tmp"))
        store_path.with_suffix(".tmp").rename(store_path)
    config = load_config(config_path)

    t0 = time.perf_counter()
    db = sqlite3.connect(store_path)
    rows = sum(1 for _ in db.execute("SELECT * FROM frames ORDER BY ts_first"))
    db.close()
    read_only = time.perf_counter() - t0

    source, total = source_of(store_path)
    cpu0 = time.process_time()
    result = replay(config, source, step=STEP, progress=Progress(total))
    cpu = time.process_time() - cpu0
    fired = {(a.rule, a.asset) for a in result.alerts if a.state == "firing"}
    print(
        f"== one day, {len(config.assets):,} assets at {STEP:.0f} s: {result.batches:,} batches, "
        f"{result.samples:,} samples =="
    )
    print(f"bare SQLite read of the frames   {read_only:8.1f} s ({rows:,} frame rows)")
    print(
        f"monitord replay                  {result.seconds:8.1f} s wall, {cpu:.1f} s CPU "
        f"({result.samples / result.seconds:,.0f} samples/s)"
    )
    print(f"  ratio replay / bare read       {result.seconds / read_only:8.1f}x")
    opened = sum(1 for t in result.tickets if t.event == "opened")
    dry = len({a for r, a in fired if r == "pump.dry_run"})
    print(f"  alerts fired {len(fired)}, tickets opened {opened}; dry runs found on {dry} of 5 pumps")
    print(
        f"peak RSS                         {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024:8d} MB"
    )


if __name__ == "__main__":
    main()
