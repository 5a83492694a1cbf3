"""What the store layer had to give up, counted and logged: the one place a lost point is told.

Every store backend, its write queue and its spool report losses here by reason
(``spool_full``, ``disk_full``, ``queue_full``, ``bad_time``, ``unwritable``,
``shutdown``, ``crash_leftover``). Each loss adds to
``monitord_store_points_dropped_total{reason}`` and is logged: the first at
once, later ones of the same reason summed at most once a minute, so a full
disk shows in the log without flooding it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from monitord.core.metrics import Metrics

log = logging.getLogger(__name__)
LOG_EVERY = 60.0  # seconds between summary lines while losses go on


class Losses:
    def __init__(self, label: str) -> None:
        self.label = label
        self.counts: collections.Counter[str] = collections.Counter()
        self.metrics: Metrics | None = None
        self._lock = threading.Lock()
        self._unlogged: collections.Counter[str] = collections.Counter()
        self._last_log: dict[str, float] = {}  # reason → when a line about it was last written

    def attach(self, metrics: Metrics) -> None:
        """Count into ``metrics`` from now on, including what was lost before."""
        with self._lock:
            self.metrics = metrics
            for reason, n in self.counts.items():
                metrics.points_dropped.labels(reason).inc(n)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def count(self, reason: str, points: int, detail: str) -> None:
        """``points`` samples (or lines) lost for ``reason``; ``detail`` says what happened."""
        if points <= 0:
            return
        with self._lock:
            self.counts[reason] += points
            self._unlogged[reason] += points
            if self.metrics is not None:
                self.metrics.points_dropped.labels(reason).inc(points)
            now = time.monotonic()
            if now - self._last_log.get(reason, -LOG_EVERY) < LOG_EVERY:
                return
            self._last_log[reason] = now
            since_last = self._unlogged.pop(reason)
            total = self.counts[reason]
        log.warning(
            "%s: dropped %d points (%s): %s; %d dropped for %s since start",
            self.label,
            since_last,
            reason,
            detail,
            total,
            reason,
        )
