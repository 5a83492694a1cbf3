"""Benchmark: what the spool costs the SQLite store when its file is locked, and how fast it drains.

One second of 1,000 devices (20 points each) is one round. In the same run:

- baseline: rounds written straight into the file (``write_samples`` + ``flush`` per round);
- locked: the file held by a second connection's ``BEGIN EXCLUSIVE``: each round waits the
  writer's busy timeout (set to 0: the wait is a setting, not a cost) and is spooled (gzip JSON,
  fsynced file);
- drain: the lock released, the spooled rounds inserted, oldest first, by the writer thread.

Prints rounds/s and points/s of each, and the spooled and drain rates as ratios of the baseline.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from monitord.core.model import SampleBatch
from monitord.store.sqlite import SqliteStore

ROUNDS = 60
DEVICES = 1000
POINTS = tuple(f"p{i}" for i in range(20))


def round_of(second: int) -> list[SampleBatch]:
    rng = np.random.default_rng(second)
    quality = np.zeros(len(POINTS), dtype=np.int8)
    return [
        SampleBatch(1.8e9 + second + d / DEVICES, f"M{d}", POINTS, rng.random(len(POINTS)), quality)
        for d in range(DEVICES)
    ]


def timed(store: SqliteStore, rounds: list[list[SampleBatch]]) -> float:
    started = time.perf_counter()
    for batches in rounds:
        store.write_samples(batches)
        store.flush(timeout=120)
    return time.perf_counter() - started


def main() -> None:
    SqliteStore.busy_timeout = 0.0
    SqliteStore.drain_every = 0.0  # the writer tries again at once once the lock is gone
    rounds = [round_of(s) for s in range(ROUNDS)]
    points = DEVICES * len(POINTS)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "s.db", flush_interval=0.01)
        try:
            base = timed(store, rounds)
            lock = sqlite3.connect(Path(tmp) / "s.db", isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            spooled = timed(store, rounds)
            assert len(store.spill.spool) == ROUNDS, len(store.spill.spool)
            lock.execute("COMMIT")
            lock.close()
            started = time.perf_counter()
            while store.spill.waiting:  # the writer thread drains it
                time.sleep(0.001)
            drained = time.perf_counter() - started
        finally:
            store.close()
        stored = SqliteStore(Path(tmp) / "s.db", writer=False).count_batches()
        assert stored == 2 * ROUNDS * DEVICES, stored
    for name, seconds in (("direct", base), ("spooled", spooled), ("drain", drained)):
        print(
            f"{name:8s} {ROUNDS / seconds:7.1f} rounds/s  {ROUNDS * points / seconds / 1e6:5.2f} M points/s"
            f"  ({base / seconds:.2f}x direct)"
        )


if __name__ == "__main__":
    main()
