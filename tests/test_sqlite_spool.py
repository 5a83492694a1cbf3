"""A SQLite store that cannot be written spills to the spool and loses nothing.

Real parts: the demo site's simulators over real sockets, real Mosquitto, the
daemon in this process, a real SQLite file locked by a second connection's
exclusive transaction (as a backup tool or a stuck reader-writer would), real
webhook receivers for the pages. Unit tests of the spooled round's codec and
of a start-up spool that is not a folder are at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from monitord.alerting.tracker import AlertEvent
from monitord.core.errors import StoreError
from monitord.core.model import SampleBatch
from monitord.people.audit import AuditEvent
from monitord.store.spool import Spool
from monitord.store.sqlite import SqliteStore
from monitord.store.sqlite_rows import KIND, Rows
from monitord.tickets.desk import TicketEvent
from tests.support import TOKEN, WebhookReceiver, demo_site, eventually, good, post, run, running, with_people
from tests.support.configs import GOOD, problems

MAX_QUEUED = 400  # points the writer keeps in memory: the outage below produces several times that


def test_a_locked_sqlite_file_spills_to_the_spool_and_everything_lands_in_order_once(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SqliteStore, "max_queued", MAX_QUEUED)
    monkeypatch.setattr(SqliteStore, "busy_timeout", 0.5)
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    produced: list[SampleBatch] = []
    alerts: list[AlertEvent] = []
    tickets: list[TicketEvent] = []
    during: dict[str, float] = {}

    async def scenario() -> None:
        async with running(config) as (site, app):
            app.bus.subscribe(produced.append)
            app.core.road.alert_listeners.append(alerts.append)
            app.core.road.ticket_listeners.append(tickets.append)
            store = app.store
            assert isinstance(store, SqliteStore)
            spill = store.spill
            await eventually(lambda: good(app, "A-P1", "flow"), 15)
            lock = sqlite3.connect(store.path, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")  # another program holds the file
            try:
                before = len(produced)
                site.inject("A-P1", "dry_run")  # an incident while the file is locked
                page = await eventually(lambda: webhooks.to("plumbing-tech"), 30)
                assert page[0]["asset"] == "A-P1", "alerting and paging go on while the store is locked"
                ticket = app.core.desk.open_ticket_for_rule("pump.dry_run", "A-P1")
                assert ticket is not None
                asked = time.monotonic()  # a person's action: its audit row cannot be written now either
                url = f"{app.api_url}/tickets/{ticket.id}/comment"
                status, _ = await asyncio.to_thread(post, url, {"note": "valve checked"}, TOKEN)
                assert status == 200 and time.monotonic() - asked < 5, "the API does not wait for the lock"
                await eventually(lambda: len(spill.spool) > 0, 15)
                # Long enough that the memory queue alone would have dropped the oldest samples.
                await eventually(lambda: points(produced[before:]) > 4 * MAX_QUEUED, 40)
                during["points"] = points(produced[before:])
                assert store.health() == [], "spooling is the plan, not a fault"
            finally:
                lock.execute("COMMIT")
                lock.close()
            await eventually(lambda: not spill.waiting, 30)
            await eventually(lambda: tickets and alerts, 5)
            during["spooled"] = metric(app, "monitord_store_spooled_total")
            during["dropped"] = sum(
                metric(app, "monitord_store_points_dropped_total", {"reason": r})
                for r in ("queue_full", "spool_full", "disk_full", "unwritable", "shutdown", "unreadable")
            )

    run(scenario(), timeout=150)
    assert during["dropped"] == 0
    assert during["spooled"] >= MAX_QUEUED, during
    reader = SqliteStore(tmp_path / "store.db", writer=False)
    stored = [(b.asset, b.ts) for b in reader.samples()]
    # Every sample once, in time order per asset, as the drivers produced them.
    for asset in ("A-P1", "A-E1", "A-PM-MAIN"):
        want = sorted(b.ts for b in produced if b.asset == asset)
        assert [ts for a, ts in stored if a == asset] == want, asset
    assert len(stored) == len(produced)
    made = {(b.asset, b.ts): b for b in produced}
    for b in reader.samples():  # and each as it was read: values and qualities, not just times
        assert np.array_equal(b.values, made[b.asset, b.ts].values, equal_nan=True), (b.asset, b.ts)
        assert np.array_equal(b.quality, made[b.asset, b.ts].quality), (b.asset, b.ts)
    assert reader.ticket_events() == tickets  # in the order they were made, none twice
    assert sorted(reader.alert_events(), key=key) == sorted(alerts, key=key)
    assert any(t.event == "opened" and t.asset == "A-P1" for t in tickets)
    assert any(t.event == "commented" and t.note == "valve checked" for t in tickets)
    trail = [(a.actor, a.action, a.outcome) for a in reader.audit_events()]
    assert ("api", "ticket.comment", 200) in trail, trail


def points(batches: list[SampleBatch]) -> int:
    return sum(len(b) for b in batches)


def key(a: AlertEvent) -> tuple[float, str, str, str]:
    return (a.ts, a.rule, a.asset, a.state)


def metric(app: object, name: str, labels: dict[str, str] | None = None) -> float:
    value = app.metrics.registry.get_sample_value(name, labels or {})  # type: ignore[attr-defined]
    return float(value or 0.0)


def test_a_spooled_round_lands_once_and_a_corrupt_spool_file_is_counted_not_written(tmp_path: Path) -> None:
    """A round inserted just before a crash keeps its spool file: at the next start it is inserted again,
    and lands once. Bytes that are not a round (torn, or an InfluxDB batch) are given up and counted."""
    batch = SampleBatch(5.0, "A-P1", ("flow", "p"), np.array([1.5, np.nan]), np.array([0, 2], dtype=np.int8))
    alert = AlertEvent(5.0, "pump.dry_run", "A-P1", "firing", "critical", 4.0, "dry")
    login = AuditEvent(5.0, "duty-manager", "admin", "token", "::1", "login", "tower-a", 200)
    audit = (login.ts, login.actor, login.action, login.target, json.dumps(dataclasses.asdict(login)))
    rows = Rows.of([batch], [alert], [], [audit])
    payload = rows.encode()
    back = Rows.decode(payload)
    assert (back.frames, back.alerts, back.tickets, back.audits) == (rows.frames, rows.alerts, [], [audit])
    assert back.round_id and rows.lines == 4
    two = Rows.of(
        [batch, SampleBatch(6.0, "A-P2", ("q",), np.array([3.0]), np.zeros(1, dtype=np.int8))], [], []
    )
    again = Rows.decode(two.encode())
    assert again.frames == two.frames and len(again.frames) == 2
    for torn in (payload[:-1], payload + b"x", payload[:30], gzip.compress(payload)):
        with pytest.raises(ValueError):
            Rows.decode(torn)
    spool = Spool(tmp_path / "s.db.spool", 2**20)
    assert spool.append(payload, rows.lines, KIND) and spool.append(payload, rows.lines, KIND)
    assert spool.append(payload[:-3], 1, KIND) and spool.append(gzip.compress(b"cpu v=1 1"), 1, "us")
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    store.close()
    assert len(Spool(tmp_path / "s.db.spool", 2**20)) == 0
    assert store.losses.counts == {"unreadable": 2}
    reader = SqliteStore(tmp_path / "s.db", writer=False)
    assert [(b.ts, b.asset) for b in reader.samples()] == [(5.0, "A-P1")]
    assert reader.alert_events() == [alert]
    assert reader.audit_events() == [login]


def test_a_spool_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the spool's folder should be")
    with pytest.raises(StoreError, match=r"spool folder .*blocker/spool"):
        SqliteStore(tmp_path / "s.db", spool_dir=tmp_path / "blocker" / "spool")
    spool = tmp_path / "blocker" / "spool"
    bad = problems(tmp_path, GOOD + f"store: {{kind: sqlite, path: '{tmp_path}/s.db', spool: '{spool}'}}\n")
    assert len(bad) == 1 and bad[0].startswith("site.yaml:") and "store.spool" in bad[0], bad
    assert "is a file" in bad[0], bad


def test_a_read_only_spool_folder_is_refused_by_check_and_at_start_up(tmp_path: Path) -> None:
    """A spool on a read-only file system (here a tmpfs mounted read-only: root may write anywhere
    else): ``monitord check`` names store.spool at its line, and a store started anyway refuses to."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
    try:
        bad = problems(
            tmp_path, GOOD + f"store: {{kind: sqlite, path: '{tmp_path}/s.db', spool: '{mount}'}}\n"
        )
        assert len(bad) == 1 and "store.spool" in bad[0] and f"cannot write in {mount}" in bad[0], bad
        with pytest.raises(StoreError, match="cannot write in it: Read-only file system"):
            SqliteStore(tmp_path / "s.db", spool_dir=mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_sqlite_file_spools_to_another_and_loses_nothing(tmp_path: Path) -> None:
    """The database on a 1 MiB tmpfs that fills up, its spool on another disk: every round waits in
    the spool and lands, in order, once the disk has room again."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
    points = tuple(f"p{i}" for i in range(20))

    def second(s: int) -> list[SampleBatch]:
        q = np.zeros(len(points), dtype=np.int8)
        return [
            SampleBatch(s + d / 10, f"M{d}", points, np.full(len(points), s + d / 10), q) for d in range(10)
        ]

    try:
        store = SqliteStore(mount / "s.db", spool_dir=tmp_path / "spool", flush_interval=0.05)
        try:
            store.write_samples(second(0))
            store.flush()
            stat = os.statvfs(mount)
            (mount / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize))
            for s in range(1, 31):  # 30 rounds of 1.6 KiB of values each: more than the disk has left
                store.write_samples(second(s))
                store.flush()
            assert len(store.spill.spool) > 0 and store.losses.total == 0
            (mount / "filler").unlink()
            run(eventually(lambda: not store.spill.waiting, 30), timeout=40)
        finally:
            store.close()
        reader = SqliteStore(mount / "s.db", writer=False)
        got = [(b.asset, b.ts) for b in reader.samples()]
        assert got == [(b.asset, b.ts) for s in range(31) for b in second(s)]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_restart_while_the_file_is_locked_restores_the_tickets_still_in_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon stopped with a ticket's opening still spooled and starts while the file is still
    locked: reading the tickets back includes it (else the firing alert would open a second ticket),
    and once the file takes writes it is there once."""
    monkeypatch.setattr(SqliteStore, "busy_timeout", 0.2)
    first = TicketEvent(
        10.0, "WO-TA-20261201-0001", "k", "opened", "open", "A-P1", "pump.dry_run", "P1", "water", "dry"
    )
    second = TicketEvent(
        11.0, "WO-TA-20261201-0001", "k", "assigned", "open", "A-P1", "pump.dry_run", "P1", "water", "dry"
    )
    spool = Spool(tmp_path / "s.db.spool", 2**20)
    SqliteStore(tmp_path / "s.db", writer=False).close()  # the file exists
    stored = Rows.of([], [], [first])
    assert spool.append(stored.encode(), stored.lines, KIND)
    lock = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    store = SqliteStore(tmp_path / "s.db", flush_interval=0.05)
    try:
        assert len(store.spill.spool) == 1, "not inserted: the file is locked"
        store.write_tickets([second])
        run(eventually(lambda: len(store.spill.spool) == 2, 10), timeout=15)
        assert store.ticket_events() == [first, second]
        lock.execute("COMMIT")
        run(eventually(lambda: not store.spill.waiting, 10), timeout=15)
        assert store.ticket_events() == [first, second]
    finally:
        lock.close()
        store.close()
    assert SqliteStore(tmp_path / "s.db", writer=False).ticket_events() == [first, second]
