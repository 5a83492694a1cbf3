"""Embedded store: one SQLite file in WAL mode, written by one thread.

Writers only append to an in-memory queue; a background thread commits the
queue every ``flush_interval`` (events at once, since people wait on them):
``writer.QueuedWriter``. A round the file cannot take now (locked past
``busy_timeout``, disk full, read-only, I/O error) goes to the on-disk spool
the InfluxDB backend uses (``spill.Spill``, as ``sqlite_rows.Rows``) and is
inserted, oldest first and before anything newer, once the file takes writes
again; any other failure is isolated by the writer, so one bad row never stops
it.
Samples are stored as frames: per flush, all batches of one read plan become
one row holding asset names and ts/values/qualities matrices as blobs. That
keeps both the write path and replay free of per-sample work; ``samples()``
unpacks frames into batches again. Alert and ticket events have unique keys,
so a repeated write lands once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from monitord.alerting.tracker import AlertEvent
from monitord.config.spoolcheck import default_spool
from monitord.core.errors import StoreError
from monitord.core.metrics import Metrics
from monitord.core.model import Frame, SampleBatch, in_time_order
from monitord.people.audit import AuditEvent
from monitord.store.spill import CorruptBatch
from monitord.store.spool import Spool
from monitord.store.sqlite_rows import KIND, AuditRow, Rows
from monitord.store.writer import QueuedWriter
from monitord.tickets.desk import TicketEvent

log = logging.getLogger(__name__)
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
CREATE TABLE IF NOT EXISTS spooled_rounds (id TEXT PRIMARY KEY);
"""


class SqliteStore(QueuedWriter):
    idle_every = 0.2  # between rounds, keep inserting the spool once the file takes writes again
    #: seconds the writer waits for another connection's lock before a round goes to the spool
    busy_timeout: ClassVar[float] = 5.0
    #: seconds between two tries to insert the spool while the file refuses it
    drain_every: ClassVar[float] = 1.0
    #: seconds an audit row waits for the file before it goes with the writer's next round
    audit_wait: ClassVar[float] = 0.5

    def __init__(
        self,
        path: Path,
        *,
        spool_dir: Path | None = None,
        spool_max_bytes: int = 512 * 2**20,
        flush_interval: float = 1.0,
        writer: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        """``writer=False`` for readers (CLI, replay): no thread and no spool."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # kept by the file: readers never wait for the writer
            db.executescript(_SCHEMA)
        finally:
            db.close()
        self._point_sets: dict[tuple[str, ...], int] = {}
        label = f"sqlite store {path}"
        super().__init__(label, "sqlite-writer", flush_interval, start=False, metrics=metrics)
        self._drain_at = 0.0
        self._audits: list[AuditRow] = []  # audit rows the file refused at once (under the writer's lock)
        if writer:  # a reader leaves the writer's spool alone
            spool = Spool(spool_dir or default_spool(path), spool_max_bytes, self.losses)
            self.spill = self._spill_to(spool)
            if spool_waiting := len(spool):  # a previous run's: in the file before anyone reads it
                self._open()
                try:
                    self.spill.drain(self._send)
                finally:
                    self._shut()
                log.info("%s: %d spooled rounds at start, %d left", self._label, spool_waiting, len(spool))
            self._thread.start()

    # -- the writer thread (queue and rounds: QueuedWriter; spool: Spill) -----
    def _open(self) -> None:
        # WAL is the file's own setting (made at creation); this connection only needs its wait and sync.
        self._db = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=NORMAL")

    def _shut(self) -> None:
        self._db.close()

    def _write_round(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None:
        self._idle()  # what waits goes first
        with self._lock:
            audits, self._audits = self._audits, []
        rows = Rows.of(samples, alerts, tickets, audits)
        if not rows:
            return
        waiting = self.spill.waiting  # then this goes behind it, to keep order
        if not waiting:
            try:
                self._insert(rows)
                return
            except sqlite3.OperationalError as exc:  # locked, full, read-only: the file, not the rows
                self._log_failure(exc)
        self.spill.keep(rows.encode(), rows.lines, KIND, self._send, sent=not waiting)

    def _idle(self) -> None:
        """Insert what waits, unless the last try failed less than ``drain_every`` ago: each try may
        wait ``busy_timeout`` for a lock, and new rounds go behind what waits anyway."""
        if self.spill.waiting and time.monotonic() >= self._drain_at and not self.spill.drain(self._send):
            self._drain_at = time.monotonic() + self.drain_every

    def _send(self, payload: bytes, lines: int, kind: str) -> bool:
        """A spooled round into the file: ``spill.Send``."""
        if kind != KIND:
            raise CorruptBatch(f"not a SQLite round (a {kind!r} batch)")
        try:
            rows = Rows.decode(payload)
        except (OSError, EOFError, ValueError) as exc:
            raise CorruptBatch(str(exc)) from exc
        try:
            self._insert(rows)
        except sqlite3.OperationalError as exc:
            self._log_failure(exc)
            return False
        except sqlite3.Error as exc:  # not the file being away: this round cannot be written, ever
            self.losses.count("unwritable", lines, f"spooled round: {exc}")
        return True

    def _insert(self, rows: Rows) -> None:
        """One transaction; the point sets it adds are remembered only once it commits."""
        db, added = self._db, dict[tuple[str, ...], int]()
        with db:
            if rows.round_id:
                if db.execute("SELECT 1 FROM spooled_rounds WHERE id = ?", (rows.round_id,)).fetchone():
                    return  # written before a crash kept its spool file
                db.execute("INSERT INTO spooled_rounds VALUES (?)", (rows.round_id,))
            if rows.frames:
                values = []
                for points, *rest in rows.frames:
                    pid = self._point_sets.get(points) or added.get(points) or self._point_set(db, points)
                    added[points] = pid
                    values.append((rest[0], rest[1], pid, *rest[2:]))
                db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
            if rows.alerts:
                db.executemany("INSERT OR IGNORE INTO alert_events VALUES (?, ?, ?, ?, ?, ?, ?)", rows.alerts)
            if rows.tickets:
                db.executemany("INSERT OR IGNORE INTO ticket_events VALUES (?, ?, ?, ?)", rows.tickets)
            if rows.audits:
                db.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?)", rows.audits)
        self._point_sets.update(added)

    @staticmethod
    def _point_set(db: sqlite3.Connection, points: tuple[str, ...]) -> int:
        text = json.dumps(points)
        db.execute("INSERT OR IGNORE INTO point_sets(points) VALUES (?)", (text,))
        return int(db.execute("SELECT id FROM point_sets WHERE points = ?", (text,)).fetchone()[0])

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
        waiting = [a for r in self._spooled() for a in r.alerts]
        rows = self._read(
            "SELECT ts, rule, asset, state, severity, since, summary FROM alert_events ORDER BY ts"
        )
        return [AlertEvent(*r) for r in _behind(rows, waiting, key=lambda r: r[0])]

    def ticket_events(self) -> list[TicketEvent]:
        """With the ticket events still in the spool: a restart while the file is locked restores them
        too, instead of opening a second ticket for an incident that has one."""
        waiting = [(t[3],) for r in self._spooled() for t in r.tickets]
        rows = self._read("SELECT body FROM ticket_events ORDER BY ts, rowid")
        events = [TicketEvent(**json.loads(r[0])) for r in _behind(rows, waiting, key=lambda r: 0.0)]
        return sorted(events, key=lambda e: e.ts)  # stable: the file's order within one instant

    def _spooled(self) -> list[Rows]:
        """The rounds in this writer's spool, not yet in the file (read before the file: a round
        inserted meanwhile is then in both, and ``_behind`` keeps it once)."""
        if not hasattr(self, "spill"):  # a reader has no spool of its own to look at
            return []
        out = []
        for payload in self.spill.spool.contents():
            with contextlib.suppress(ValueError):  # not a round: the drain counts it when it meets it
                out.append(Rows.decode(payload))
        return out

    def write_audit(self, events: Sequence[AuditEvent]) -> None:
        """Written at once on its own connection (a person's change is rare and must stay, and is read
        back at once); when the file will not take it within ``audit_wait`` (it is called on the event
        loop), it goes with the writer's next round, spooled like the rest."""
        rows = [(a.ts, a.actor, a.action, a.target, json.dumps(dataclasses.asdict(a))) for a in events]
        try:
            db = sqlite3.connect(self.path, timeout=self.audit_wait)
            try:
                with db:
                    db.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?)", rows)
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            if not hasattr(self, "spill"):  # a reader: nowhere to keep it
                raise StoreError(f"sqlite store {self.path}: audit: {exc}") from exc
            self._log_failure(exc)
            with self._lock:
                self._audits.extend(rows)
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
                    frame = Frame(
                        points,
                        np.array(assets.split("\n"), dtype=object),
                        np.frombuffer(ts, dtype="<f8"),
                        np.frombuffer(vals, dtype="<f8").reshape(rows, len(points)),
                        np.frombuffer(quality, dtype=np.int8).reshape(rows, len(points)),
                    )
                    if (part := frame.within(since, until)) is not None:
                        yield part
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from exc

    def samples(
        self, asset: str | None = None, since: float | None = None, until: float | None = None
    ) -> Iterator[SampleBatch]:
        """Batches in time order, optionally of one asset; streams, whatever the store's size."""
        return in_time_order(self.frames(since, until), asset)


def _behind(rows: list[Any], waiting: list[Any], key: Callable[[Any], float]) -> list[Any]:
    """The file's rows, then the spooled ones it does not hold yet, each once."""
    seen = {tuple(r) for r in rows}
    extra = [w for w in dict.fromkeys(tuple(w) for w in waiting) if w not in seen]
    return sorted([*map(tuple, rows), *extra], key=key)
