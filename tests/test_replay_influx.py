"""`monitord replay --from-store` on a site that stores to InfluxDB: the real InfluxDB, written by the
real InfluxStore writer, shared with another site; what it reads is what SQLite and CSV replay."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.model import Quality, SampleBatch
from monitord.simulators.record import record
from monitord.simulators.scenario import Scenario, Step
from monitord.store.open import open_store
from monitord.store.samples_csv import write_csv
from monitord.store.sqlite import SqliteStore
from tests.support.influx import InfluxServer, V2WriteProxy, influx_with_proxy
from tests.support.net import free_port

START = 1_795_000_000.0
RULES = CONFIG_DIR.parent / "rules" / "packs"


def site_yaml(folder: Path, site: str, code: str, url: str) -> Path:
    """Two pumps P1, P2 storing to InfluxDB at ``url``; every site uses the same asset ids."""
    folder.mkdir(parents=True, exist_ok=True)
    pumps = "".join(
        f"  - {{id: P{u}, type: pump, profile: pump-set, location: {{building: B{u}}},\n"
        f"     connection: {{modbus: {{host: 127.0.0.1, port: 1502, unit: {u}}}}}}}\n"
        for u in (1, 2)
    )
    path = folder / "site.yaml"
    path.write_text(
        f"site: {{id: {site}, code: {code}}}\n"
        f"store: {{kind: influxdb, url: '{url}', bucket: monitord, spool: '{folder}/spool',"
        " flush_interval: 200ms}\n"
        f"notify: {{log: '{folder}/notifications.db'}}\npoll: 1s\n"
        f"profiles:\n  - include: {CONFIG_DIR}/profiles/pump-set.yaml\n"
        f"assets:\n{pumps}"
        f"rules:\n  - include: {RULES}/pump.yaml\n  - include: {RULES}/comms.yaml\n"
    )
    return path


def store_samples(config: SiteConfig, batches: list[SampleBatch]) -> None:
    """Through the site's own writer (InfluxStore, the daemon's), as the daemon would."""
    store = open_store(config)
    for i in range(0, len(batches), 500):
        store.write_samples(batches[i : i + 500])
    store.flush(timeout=60)
    store.close()


def monitord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitord", *args], capture_output=True, text=True, timeout=300
    )


def test_replay_from_the_sites_influxdb_fires_what_sqlite_and_csv_fire_and_reads_no_other_site(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    _server, proxy = influxdb
    north = site_yaml(tmp_path / "north", "north-tower", "N", proxy.url)
    south = site_yaml(tmp_path / "south", "south-tower", "S", proxy.url)
    here = load_config(north)
    # this site: P1 runs dry 2:00-4:00, P2 stops answering 5:00-6:00 (rows of bad points only)
    ours = list(
        record(
            here,
            START,
            600,
            1.0,
            Scenario(
                scenario="north",
                timeline=[
                    Step(at=120, asset="P1", fault="dry_run"),
                    Step(at=240, asset="P1", clear="dry_run"),
                    Step(at=300, asset="P2", fault="offline"),
                    Step(at=360, asset="P2", clear="offline"),
                ],
            ),
        )
    )
    # the other site, same database, same asset ids, same hours: P2 runs dry, P1 goes offline
    theirs = list(
        record(
            load_config(south),
            START,
            600,
            1.0,
            Scenario(
                scenario="south",
                timeline=[
                    Step(at=60, asset="P2", fault="dry_run"),
                    Step(at=400, asset="P1", fault="offline"),
                ],
            ),
        )
    )
    store_samples(here, ours)
    store_samples(load_config(south), theirs)
    db = tmp_path / "north.db"
    sqlite = SqliteStore(db, flush_interval=0.2)
    sqlite.write_samples(ours)
    sqlite.flush(timeout=60)
    sqlite.close()
    csv = tmp_path / "north.csv"
    write_csv(SqliteStore(db, writer=False).samples(), csv)
    spool = tmp_path / "north" / "spool"
    assert not any(spool.iterdir()), "the writer sent everything"
    spool.rmdir()

    from_store = monitord("replay", "--config", str(north), "--from-store")
    from_db = monitord("replay", "--config", str(north), "--from", str(db))
    from_csv = monitord("replay", "--config", str(north), "--from", str(csv))
    for out in (from_store, from_db, from_csv):
        assert out.returncode == 0, out.stderr
    head, *alerts = from_store.stdout.splitlines()
    assert "(1,200 batches" in head, head  # 600 s of two pumps: none of the other site's 1,200
    assert not spool.exists(), "a reader leaves the writer's spool alone"
    fired = sorted((line.split()[4], line.split()[5]) for line in alerts)  # date, time, zone, severity
    assert ("pump.dry_run", "P1") in fired, from_store.stdout
    assert ("comms.device_offline", "P2") in fired, from_store.stdout
    assert ("pump.dry_run", "P2") not in fired, "the other site's dry run was read"
    assert ("comms.device_offline", "P1") not in fired, "the other site's outage was read"
    for other in (from_db, from_csv):
        other_head, *other_alerts = other.stdout.splitlines()
        assert other_alerts == alerts
        assert _counts(other_head) == _counts(head)

    # a window of it, 1:40 to 5:00: the dry run and not the outage, as SQLite replays that window
    window = ["--since", str(START + 100), "--until", str(START + 300)]
    w_store = monitord("replay", "--config", str(north), "--from-store", *window)
    w_db = monitord("replay", "--config", str(north), "--from", str(db), *window)
    assert w_store.returncode == 0 and w_db.returncode == 0, w_store.stderr + w_db.stderr
    w_head, *w_alerts = w_store.stdout.splitlines()
    assert "(400 batches" in w_head, w_head
    assert ("pump.dry_run", "P1") in [(line.split()[4], line.split()[5]) for line in w_alerts]
    assert not [line for line in w_alerts if "comms.device_offline" in line], w_store.stdout
    assert w_db.stdout.splitlines()[1:] == w_alerts
    assert _counts(w_db.stdout.splitlines()[0]) == _counts(w_head)

    empty = monitord("replay", "--config", str(north), "--from-store", "--since", str(START + 3600))
    assert empty.returncode == 1
    assert re.fullmatch(
        r"monitord: no samples in site north-tower's store from \S+ \S+ \S+: nothing to replay\n",
        empty.stderr,
    ), empty.stderr

    # samples export reads the site's store too: the SQLite export's rows, a failed read "stale"
    exported = tmp_path / "from-influx.csv"
    out = monitord("samples", "export", "--config", str(north), "--csv", str(exported))
    assert out.returncode == 0, out.stderr
    assert exported.read_text() == csv.read_text().replace(",comm_error\n", ",stale\n")
    assert ",comm_error\n" in csv.read_text()


def _counts(head: str) -> str:
    """ "N alerts fired, M tickets opened" of a replay's first line."""
    found = re.search(r"— (.*)$", head)
    assert found, head
    return found.group(1)


def test_a_point_that_was_not_good_comes_back_not_good(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    _server, proxy = influxdb
    config = load_config(site_yaml(tmp_path / "north", "north-tower", "N", proxy.url))
    points = tuple(config.profile("pump-set").points)
    n = len(points)
    values = np.arange(1.0, n + 1.0)
    some_bad = np.zeros(n, dtype=np.int8)
    some_bad[1], some_bad[3] = Quality.COMM_ERROR, Quality.OUT_OF_RANGE
    store_samples(
        config,
        [
            SampleBatch(START, "P1", points, values, some_bad),
            SampleBatch(START, "P2", points, values * 10, np.zeros(n, dtype=np.int8)),
            SampleBatch(START + 1, "P1", points, values, np.full(n, int(Quality.COMM_ERROR), dtype=np.int8)),
        ],
    )
    reader = open_store(config, writer=False)
    try:
        back = {(b.ts, b.asset): b for b in reader.samples()}
    finally:
        reader.close()
    assert sorted(back) == [(START, "P1"), (START, "P2"), (START + 1, "P1")]
    for (ts, asset), written in [((START, "P1"), some_bad), ((START + 1, "P1"), None)]:
        b = back[(ts, asset)]
        assert b.points == points, "a row with bad points comes back with the asset's points"
        expect_bad = np.ones(n, dtype=bool) if written is None else written != Quality.GOOD
        assert ((b.quality != Quality.GOOD) == expect_bad).all(), (asset, ts, b.quality)
        assert np.isnan(b.values[expect_bad]).all(), "a point that was not good has no value"
        assert (b.values[~expect_bad] == values[~expect_bad]).all()
    p2 = back[(START, "P2")]
    assert p2.points == points and (p2.quality == Quality.GOOD).all() and (p2.values == values * 10).all()


def test_replay_from_a_store_that_does_not_answer_says_so(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    north = site_yaml(tmp_path / "north", "north-tower", "N", url)
    out = monitord("replay", "--config", str(north), "--from-store")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"monitord: influxdb {url}: query failed: "), out.stderr
    assert not (tmp_path / "north" / "spool").exists()


def test_a_window_the_server_answers_only_in_part_is_asked_again_in_halves(tmp_path: Path) -> None:
    """A real InfluxDB with ``max-row-limit = 40`` answers a 5-minute window of two pumps (600 rows)
    with 40 and ``partial``: the reader halves the window until each part fits, and every row comes
    back, once, in time order, with its values."""
    with influx_with_proxy(tmp_path, "  max-row-limit = 40") as (server, proxy):
        config = load_config(site_yaml(tmp_path / "north", "north-tower", "N", proxy.url))
        written = list(record(config, START, 600, 1.0, Scenario(scenario="quiet", timeline=[])))
        assert len(written) == 1200
        store_samples(config, written)
        assert len(server.query('SELECT * FROM "pump"')) == 40, "the limit is what the server answers"
        reader = open_store(config, writer=False)
        try:
            back = list(reader.samples())
        finally:
            reader.close()
    assert [(b.ts, b.asset) for b in back] == sorted((b.ts, b.asset) for b in written)
    by_key = {(b.ts, b.asset): b for b in written}
    for b in back:
        w = by_key[(b.ts, b.asset)]
        good = w.quality == Quality.GOOD
        assert dict(zip(b.points, b.values.tolist(), strict=True)) == dict(
            zip(np.array(w.points)[good].tolist(), w.values[good].tolist(), strict=True)
        )


def test_more_rows_in_one_microsecond_than_the_server_answers_is_an_error_not_a_gap(tmp_path: Path) -> None:
    with influx_with_proxy(tmp_path, "  max-row-limit = 1") as (_server, proxy):
        config = load_config(site_yaml(tmp_path / "north", "north-tower", "N", proxy.url))
        points = tuple(config.profile("pump-set").points)
        good = np.zeros(len(points), dtype=np.int8)
        values = np.ones(len(points))
        store_samples(config, [SampleBatch(START, a, points, values, good) for a in ("P1", "P2")])
        out = monitord("replay", "--config", str(config.source), "--from-store")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "max-row-limit" in out.stderr and "raise that limit" in out.stderr, out.stderr
