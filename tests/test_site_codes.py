"""Two sites with one ticket code are found by ``monitord check``, not first at start-up.

``monitord check`` in a process of its own, as a person runs it, on several
site files; ``--online`` against Debian's real InfluxDB 1.6.7 (behind the
/api/v2/write proxy), where another site's tickets were written by a real
``InfluxStore`` writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from monitord.store.influx import InfluxStore, InfluxTarget
from monitord.tickets.desk import TicketEvent
from tests.support import InfluxServer, V2WriteProxy
from tests.support.configs import GOOD, write
from tests.support.net import free_port


def check(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitord", "check", *(a.name if isinstance(a, Path) else a for a in args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ),
        timeout=60,
    )


def site(tmp_path: Path, name: str, head: str, store: str = "") -> Path:
    """GOOD with its own ``site:`` line (line 1) and a ``store:`` line: ``store``, else a SQLite file
    in a folder of its own (sites do not share files: see the last test)."""
    store = store or f"{{kind: sqlite, path: ./{Path(name).stem}/store.db}}"
    return write(tmp_path, GOOD.replace("site: {id: t1, name: Test}", head) + f"store: {store}\n", name)


def test_two_sites_with_one_code_are_refused_at_the_second_files_line(tmp_path: Path) -> None:
    a = site(tmp_path, "a.yaml", "site: {id: north-tower, code: N}")
    b = site(tmp_path, "b.yaml", "site: {id: north-annex, code: W}")
    c = site(tmp_path, "c.yaml", "site:\n  id: new-wing\n  code: N")
    out = check(a, b, c, cwd=tmp_path)
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        "c.yaml:3 site.code: ticket code N is also site 'north-tower''s in a.yaml: ticket ids WO-N-... "
        "would repeat across the two sites; give each site its own site.code"
    ]
    assert "a.yaml: ok" in out.stdout and "c.yaml: ok" in out.stdout  # each file is fine on its own
    assert check(a, b, cwd=tmp_path).returncode == 0


def test_a_derived_code_clashes_too_and_one_sites_own_files_do_not(tmp_path: Path) -> None:
    """No ``site.code``: the code is the id in capitals, so ``ta`` and ``TA`` are one code. An HA pair's
    two files (one site id) share their code rightly."""
    a = site(tmp_path, "a.yaml", "site: {id: ta}")
    b = site(tmp_path, "b.yaml", "site: {id: tb, code: TA}")
    c = site(tmp_path, "c.yaml", "site: {id: TA}")
    out = check(a, b, c, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "b.yaml:1 site.code: ticket code TA is also site 'ta''s in a.yaml: ticket ids WO-TA-... would "
        "repeat across the two sites; give each site its own site.code",
        "c.yaml:1 site.id: ticket code TA (derived from site.id 'TA': set site.code) is also site 'ta''s "
        "in a.yaml: ticket ids WO-TA-... would repeat across the two sites; give each site its own site.code",
    ]
    pair = site(tmp_path, "a2.yaml", "site: {id: ta, name: standby}")
    assert check(a, pair, cwd=tmp_path).returncode == 0


def test_a_bad_file_among_several_reports_its_problem_and_the_clash_of_the_rest(tmp_path: Path) -> None:
    a = site(tmp_path, "a.yaml", "site: {id: north-tower, code: N}")
    bad = write(tmp_path, GOOD.replace("port: 1502", "port: 70000"), "bad.yaml")
    c = site(tmp_path, "c.yaml", "site: {id: new-wing, code: N}")
    out = check(a, bad, c, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "bad.yaml:10 assets[0].connection.modbus.port: must be 1..65535, got 70000"
    assert lines[1].startswith("c.yaml:1 site.code: ticket code N is also site 'north-tower''s")


def test_check_online_asks_the_shared_influxdb_as_start_up_does(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    """north-tower has numbered tickets WO-N-... in the database; a new site configured with code N
    is refused by ``check --online`` (exit 1, naming north-tower), not only logged once it runs."""
    _server, proxy = influxdb
    tower = InfluxStore(InfluxTarget(proxy.url, "monitord"), "north-tower", {}, tmp_path / "spool")
    now = time.time()
    tower.write_tickets(
        [
            TicketEvent(
                now, "WO-N-20261201-0001", "k", "opened", "open", "P1", "pump.dry", "P1", "plumbing", "dry"
            )
        ]
    )
    tower.flush()
    tower.close()

    def influx(folder: str) -> str:  # each site's spool in a folder of its own (its notify log beside)
        return f"{{kind: influxdb, url: '{proxy.url}', bucket: monitord, spool: '{tmp_path}/{folder}/spool'}}"

    wing = site(tmp_path, "wing.yaml", "site: {id: new-wing, code: N}", influx("wing"))
    annex = site(tmp_path, "annex.yaml", "site: {id: north-annex, code: W}", influx("annex"))
    own = site(
        tmp_path, "own.yaml", "site: {id: lone, code: L}", f"{{kind: sqlite, path: '{tmp_path}/l.db'}}"
    )

    out = check("--online", wing, annex, own, cwd=tmp_path)
    assert out.returncode == 1, out
    assert out.stdout.splitlines()[-3:] == [
        "error: wing.yaml: site(s) north-tower of the same store already number tickets WO-N-...; "
        "give each site its own site.code",
        "annex.yaml: no other site of the store numbers tickets WO-W-...",
        "own.yaml: the store is a SQLite file of its own; no other site to ask",
    ]
    assert not (tmp_path / "wing" / "spool").exists(), "a check leaves the spool alone"
    assert not (tmp_path / "l.db").exists(), "nor makes a store"
    assert check(wing, cwd=tmp_path).returncode == 0, "without --online nothing is asked"

    dead = f"{{kind: influxdb, url: 'http://127.0.0.1:{free_port()}', bucket: monitord}}"
    away = site(tmp_path, "away.yaml", "site: {id: new-wing, code: N}", dead)
    out = check("--online", away, cwd=tmp_path)
    assert out.returncode == 0, out
    assert out.stdout.splitlines()[-1].startswith(
        "warning: away.yaml: cannot ask the store whether ticket code N is this site's alone: "
    )


def test_two_sites_on_one_file_are_refused_and_one_sites_pair_is_not(tmp_path: Path) -> None:
    """A notification log, a SQLite file, a spool folder are one site's own: two sites left on the
    default store (./monitord-data/monitord.db) would share all three, and the daemon would refuse
    the second site's log only at start-up."""
    default = "{kind: sqlite}"
    a = site(tmp_path, "a.yaml", "site: {id: north-tower, code: N}", default)
    b = site(tmp_path, "b.yaml", "site: {id: north-annex, code: W}", default)
    out = check(a, b, cwd=tmp_path)
    assert out.returncode == 2, out
    db = tmp_path / "monitord-data" / "monitord.db"
    at = f"b.yaml:{b.read_text().splitlines().index('store: ' + default) + 1} store.path"
    assert out.stderr.strip().splitlines() == [
        f"{at}: notification log {db.parent / 'notifications.db'} (beside the store: set "
        "notify.log) is also site 'north-tower''s in a.yaml: give each site its own",
        f"{at}: SQLite store {db} is also site 'north-tower''s in a.yaml: give each site its own",
        f"{at}: spool folder {db}.spool (beside the store file: set store.spool) is also site "
        "'north-tower''s in a.yaml: give each site its own",
    ]
    # an InfluxDB store shared rightly, each with its own spool, but one notify.log named for both
    influx = "{kind: influxdb, url: 'http://127.0.0.1:8086', bucket: monitord, spool: ./SPOOL}"
    c = site(
        tmp_path,
        "c.yaml",
        "site: {id: east, code: E}\nnotify: {log: ./shared.db}",
        influx.replace("SPOOL", "c"),
    )
    d = site(
        tmp_path,
        "d.yaml",
        "site: {id: west, code: X}\nnotify: {log: ./shared.db}",
        influx.replace("SPOOL", "d"),
    )
    out = check(c, d, cwd=tmp_path)
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        f"d.yaml:2 notify.log: notification log {tmp_path / 'shared.db'} is also site 'east''s in c.yaml: "
        "give each site its own"
    ]
    pair = site(tmp_path, "a2.yaml", "site: {id: north-tower, code: N, name: standby}", default)
    assert check(a, pair, cwd=tmp_path).returncode == 0, "one site's two files share its files rightly"


def test_a_derived_code_that_is_another_sites_shard_code_is_refused(tmp_path: Path) -> None:
    """Shards of site TA number tickets WO-TA-S0-..., WO-TA-S1-...: a site with id ``ta-s1`` and no
    code of its own (derived: TA-S1) would repeat them."""
    campus = site(tmp_path, "campus.yaml", "site: {id: campus, code: TA}\nfleet: {mode: shard, shards: 2}")
    annex = site(tmp_path, "annex.yaml", "site: {id: ta-s1}")
    out = check(campus, annex, cwd=tmp_path)
    assert out.returncode == 2, out
    assert out.stderr.strip().splitlines() == [
        "annex.yaml:1 site.id: ticket code TA-S1 (derived from site.id 'ta-s1': set site.code) is also "
        "site 'campus''s in campus.yaml: ticket ids WO-TA-S1-... would repeat across the two sites; give "
        "each site its own site.code"
    ]
    out = check(annex, campus, cwd=tmp_path)
    assert out.stderr.strip().splitlines() == [
        "campus.yaml:1 site.code: ticket code TA-S1 (its shard 1's) is also site 'ta-s1''s in annex.yaml: "
        "ticket ids WO-TA-S1-... would repeat across the two sites; give each site its own site.code"
    ]
