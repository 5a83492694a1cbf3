"""Embedded store: one SQLite file in WAL mode, written by one thread.

Writers only append to an in-memory queue; a background thread commits the
queue every ``flush_interval`` (events at once, since people wait on them):
``writer.QueuedWriter``: a commit that fails because the file cannot be
written now (locked, disk full, I/O error) is retried on the next round; any
other failure is isolated there, so one bad row never stops the writer.
Samples are stored as frames: per flush, all batches of one read plan become
one row holding asset names and ts/values/qualities matrices as blobs. That
keeps both the write path and replay free of per-sample work; ``samples()``
unpacks frames into batches again. Alert and ticket events have unique keys,
so a repeated write lands once.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitord.alerting.tracker import AlertEvent
from monitord.core.errors import StoreError
from monitord.core.model import Frame, SampleBatch
from monitord.people.audit import AuditEvent
from monitord.store.writer import QueuedWriter
from monitord.tickets.desk import TicketEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS point_sets (id INTEGER PRIMARY KEY, points TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS frames (
    ts_first REAL NOT NULL, ts_last REAL NOT NULL, point_set INTEGER NOT NULL, rows INTEGER NOT NULL,
    assets TEXT NOT NULL, ts BLOB NOT NULL, vals BLOB NOT NULL, quality BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS frames_ts ON frames(ts_first);
CREATE TABLE IF NOT EXISTS alert_events (
    ts REAL NOT NULL, rule TEXT NOT NULL, asset TEXT NOT NULL, state TEXT NOT NULL,
    severity TEXT NOT NULL, since REAL NOT NULL, summary TEXT NOT NULL,
    UNIQUE (rule, asset, ts, state));
CREATE TABLE IF NOT EXISTS ticket_events (
    ts REAL NOT NULL, ticket TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
    UNIQUE (ticket, ts, event, body));
CREATE TABLE IF NOT EXISTS audit_events (
    ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, body TEXT NOT NULL);
"""


class SqliteStore(QueuedWriter):
    retry_on = (sqlite3.OperationalError,)  # locked, disk full, I/O error: the data is fine, the file is not

    def __init__(self, path: Path, *, flush_interval: float = 1.0, writer: bool = True) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._point_sets: dict[tuple[str, ...], int] = {}
        # readers (CLI, replay) need no writer thread
        super().__init__(f"sqlite store {path}", "sqlite-writer", flush_interval, start=writer)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- the writer thread (queue, rounds and retries: QueuedWriter) ---------
    def _open(self) -> None:
        self._db = self._connect()

    def _shut(self) -> None:
        self._db.close()

    def _point_set(self, db: sqlite3.Connection, points: tuple[str, ...]) -> int:
        pid = self._point_sets.get(points)
        if pid is None:
            text = json.dumps(points)
            db.execute("INSERT OR IGNORE INTO point_sets(points) VALUES (?)", (text,))
            row = db.execute("SELECT id FROM point_sets WHERE points = ?", (text,)).fetchone()
            pid = self._point_sets[points] = int(row[0])
        return pid

    def _write_round(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None:
        if not (samples or alerts or tickets):
            return
        db = self._db
        with db:
            if samples:
                by_plan: dict[tuple[str, ...], list[SampleBatch]] = {}
                for b in samples:
                    by_plan.setdefault(b.points, []).append(b)
                frames = [Frame.of(group) for group in by_plan.values()]
                db.executemany(
                    "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            float(f.ts[0]),
                            float(f.ts[-1]),
                            self._point_set(db, f.points),
                            len(f),
                            "\n".join(f.assets),
                            f.ts.astype("<f8").tobytes(),
                            f.values.astype("<f8").tobytes(),
                            f.quality.tobytes(),
                        )
                        for f in frames
                    ],
                )
            if alerts:
                db.executemany(
                    "INSERT OR IGNORE INTO alert_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(a.ts, a.rule, a.asset, a.state, a.severity, a.since, a.summary) for a in alerts],
                )
            if tickets:
                db.executemany(
                    "INSERT OR IGNORE INTO ticket_events VALUES (?, ?, ?, ?)",
                    [(t.ts, t.ticket, t.event, json.dumps(dataclasses.asdict(t))) for t in tickets],
                )

    # -- reads (caller's thread, own connection) -----------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                return db.execute(sql, args).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def last_sample_time(self) -> float | None:
        row = self._read("SELECT max(ts_last) FROM frames")[0][0]
        return None if row is None else float(row)

    def count_batches(self) -> int:
        return int(self._read("SELECT coalesce(sum(rows), 0) FROM frames")[0][0])

    def alert_events(self) -> list[AlertEvent]:
        rows = self._read(
            "SELECT ts, rule, asset, state, severity, since, summary FROM alert_events ORDER BY ts"
        )
        return [AlertEvent(*r) for r in rows]

    def ticket_events(self) -> list[TicketEvent]:
        rows = self._read("SELECT body FROM ticket_events ORDER BY ts, rowid")
        return [TicketEvent(**json.loads(r[0])) for r in rows]

    def write_audit(self, events: Sequence[AuditEvent]) -> None:
        """Written at once on its own connection, not queued: a person's change is rare and must stay."""
        rows = [(a.ts, a.actor, a.action, a.target, json.dumps(dataclasses.asdict(a))) for a in events]
        try:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                with db:
                    db.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?)", rows)
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: audit: {exc}") from exc

    def audit_events(self) -> list[AuditEvent]:
        rows = self._read("SELECT body FROM audit_events ORDER BY ts, rowid")
        return [AuditEvent(**json.loads(r[0])) for r in rows]

    def frames(self, since: float | None = None, until: float | None = None) -> Iterator[Frame]:
        """Stored frames in time order, trimmed to ``[since, until)``: the fast path for replay."""
        sets = {int(i): tuple(json.loads(p)) for i, p in self._read("SELECT id, points FROM point_sets")}
        where, args = ["1=1"], []
        if since is not None:
            where.append("ts_last >= ?")
            args.append(since)
        if until is not None:
            where.append("ts_first < ?")
            args.append(until)
        sql = "SELECT point_set, rows, assets, ts, vals, quality FROM frames WHERE " + " AND ".join(where)
        try:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                for ps, rows, assets, ts, vals, quality in db.execute(sql + " ORDER BY ts_first", args):
                    points = sets[ps]
                    frame: Frame | None = Frame(
                        points,
                        np.array(assets.split("\n"), dtype=object),
                        np.frombuffer(ts, dtype="<f8"),
                        np.frombuffer(vals, dtype="<f8").reshape(rows, len(points)),
                        np.frombuffer(quality, dtype=np.int8).reshape(rows, len(points)),
                    )
                    if frame is not None and since is not None:
                        frame = frame.split(since)[1]
                    if frame is not None and until is not None:
                        frame = frame.split(until)[0]
                    if frame is not None:
                        yield frame
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def samples(
        self, asset: str | None = None, since: float | None = None, until: float | None = None
    ) -> Iterator[SampleBatch]:
        """Batches in time order, optionally of one asset; streams, whatever the store's size."""
        waiting: list[tuple[float, int, SampleBatch]] = []  # frames of one flush overlap in time
        n = 0
        for frame in self.frames(since, until):
            start = float(frame.ts[0])
            while waiting and waiting[0][0] < start:  # later frames start later: these are final
                yield heapq.heappop(waiting)[2]
            for b in frame.batches():
                if asset in (None, b.asset):
                    heapq.heappush(waiting, (b.ts, n, b))
                    n += 1
        while waiting:
            yield heapq.heappop(waiting)[2]
