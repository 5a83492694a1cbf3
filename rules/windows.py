"""History for windowed rule functions, in bounded numpy buckets.

A ``Window`` keeps, for every asset a rule covers, the samples of one series
over one time window, folded into ``BUCKETS`` time buckets (count, sum, sum
of squares, min, max, first, last). Memory is fixed: rows ×
(BUCKETS + 1) × 10 floats, whatever the poll rate. Edges are as precise as one
bucket (window / 30). A series is fed only the samples that are new since the
last evaluation and of good quality, so a stale value is never counted twice.

``EventWindow`` is for counting rules that must be exact at their limit (starts
per hour): it keeps the time and size of each event itself, up to ``EVENTS`` per
asset, and counts those in the half-open window (now − w, now], so a pump that
starts exactly N times an hour counts N at every moment, never N ± 1.

Estimates (``avg``, ``stddev``, ``rate``, and ``zscore`` built on them) are NaN
— no verdict — for a row until its series has been watched for the whole
window: a start-up, or a return after a gap longer than the window, would
otherwise be judged on a few transient samples. Counts (``count``,
``delta``, ``min``, ``max``) report what the window holds so far.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
BUCKETS = 30
#: Aggregates that estimate a level or spread of the whole window: no value until it is covered.
ESTIMATES = frozenset({"avg", "stddev", "rate"})


class Window:
    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a window must be longer than 0 s")
        self.seconds = seconds
        self.width = seconds / BUCKETS
        self.slots = BUCKETS + 1
        self.n = -1

    def _alloc(self, n: int) -> None:
        shape = (n, self.slots)
        self.n = n
        self.ids = np.full(self.slots, -(2**62), dtype=np.int64)
        self.count = np.zeros(shape)
        self.sum = np.zeros(shape)
        self.sumsq = np.zeros(shape)
        self.min = np.full(shape, math.inf)
        self.max = np.full(shape, -math.inf)
        self.first = np.full(shape, math.nan)
        self.first_ts = np.full(shape, math.inf)
        self.last = np.full(shape, math.nan)
        self.last_ts = np.full(shape, -math.inf)
        self.seen_ts = np.full(n, -math.inf)
        # start of the series' current unbroken run of good samples (a gap longer than the window
        # leaves nothing of the old run in the buckets, so the run starts again)
        self.since = np.full(n, math.inf)

    @property
    def nbytes(self) -> int:
        if self.n < 0:
            return 0
        arrays = (
            self.count,
            self.sum,
            self.sumsq,
            self.min,
            self.max,
            self.first,
            self.first_ts,
            self.last,
            self.last_ts,
        )
        return sum(a.nbytes for a in arrays) + self.seen_ts.nbytes + self.since.nbytes

    def add(self, now: float, values: F, ts: F, good: B) -> None:
        """Fold in the rows whose sample is newer than the last one folded in."""
        if self.n != len(values):
            self._alloc(len(values))
        new = good & (ts > self.seen_ts) & np.isfinite(values)
        cur = int(now // self.width)
        k = cur % self.slots
        if self.ids[k] != cur:
            self.ids[k] = cur
            for arr, fill in (
                (self.count, 0.0),
                (self.sum, 0.0),
                (self.sumsq, 0.0),
                (self.min, math.inf),
                (self.max, -math.inf),
                (self.first, math.nan),
                (self.first_ts, math.inf),
                (self.last, math.nan),
                (self.last_ts, -math.inf),
            ):
                arr[:, k] = fill
        if not new.any():
            return
        v, t = values[new], ts[new]
        first = self.count[new, k] == 0
        rows = np.flatnonzero(new)
        self.first[rows[first], k] = v[first]
        self.first_ts[rows[first], k] = t[first]
        self.count[new, k] += 1
        self.sum[new, k] += v
        self.sumsq[new, k] += v * v
        self.min[new, k] = np.minimum(self.min[new, k], v)
        self.max[new, k] = np.maximum(self.max[new, k], v)
        self.last[new, k] = v
        self.last_ts[new, k] = t
        restart = t - self.seen_ts[new] > self.seconds
        self.since[rows[restart]] = t[restart]
        self.seen_ts[new] = t

    def _live(self, now: float) -> B:
        cur = int(now // self.width)
        live: B = (self.ids > cur - self.slots) & (self.ids <= cur)
        return live

    def covered(self, now: float) -> B:
        """Rows whose series has been watched for the whole window (to within one bucket)."""
        if self.n < 0:
            return np.zeros(0, dtype=np.bool_)
        watched: B = now - self.since >= self.seconds - self.width
        return watched

    def aggregate(self, kind: str, now: float) -> F:
        out = self._aggregate(kind, now)
        if kind in ESTIMATES:
            out = np.where(self.covered(now), out, math.nan)
        return out

    def _aggregate(self, kind: str, now: float) -> F:
        live = self._live(now)
        if kind == "count":
            out: F = self.count[:, live].sum(axis=1)
            return out
        if kind == "sum":  # count_true: the series is 0/1, so its sum counts the samples where it held
            out = self.sum[:, live].sum(axis=1)
            return out
        n = self.count[:, live].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if kind == "avg":
                out = np.where(n > 0, self.sum[:, live].sum(axis=1) / n, math.nan)
            elif kind == "min":
                out = np.where(n > 0, self.min[:, live].min(axis=1, initial=math.inf), math.nan)
            elif kind == "max":
                out = np.where(n > 0, self.max[:, live].max(axis=1, initial=-math.inf), math.nan)
            elif kind == "stddev":
                mean = self.sum[:, live].sum(axis=1) / n
                var = self.sumsq[:, live].sum(axis=1) / n - mean * mean
                out = np.where(n > 1, np.sqrt(np.maximum(var, 0.0)), math.nan)
            elif kind in ("delta", "rate"):
                first_ts = self.first_ts[:, live]
                last_ts = self.last_ts[:, live]
                oldest = np.argmin(first_ts, axis=1) if first_ts.size else np.zeros(self.n, dtype=np.intp)
                newest = np.argmax(last_ts, axis=1) if last_ts.size else np.zeros(self.n, dtype=np.intp)
                r = np.arange(self.n)
                first = self.first[:, live][r, oldest] if first_ts.size else np.full(self.n, math.nan)
                last = self.last[:, live][r, newest] if last_ts.size else np.full(self.n, math.nan)
                delta = np.where(n > 1, last - first, math.nan)
                if kind == "delta":
                    out = delta
                else:
                    span = last_ts[r, newest] - first_ts[r, oldest] if first_ts.size else np.ones(self.n)
                    out = np.where(span > 0, delta / span, math.nan)
            else:
                raise ValueError(kind)
        return out


#: Events an ``EventWindow`` keeps per asset; beyond that the oldest are forgotten (the count then
#: stays at least this high, far above any starts-per-hour limit).
EVENTS = 128


class EventWindow:
    """Exact event counts over a sliding window: ``rises`` (false → true), ``changes``, ``increase``."""

    def __init__(self, seconds: float, kind: str) -> None:
        if seconds <= 0:
            raise ValueError("a window must be longer than 0 s")
        if kind not in ("rises", "increase", "changes"):
            raise ValueError(kind)
        self.seconds, self.kind = seconds, kind
        self.n = -1

    def _alloc(self, n: int) -> None:
        self.n = n
        self.ts = np.full((n, EVENTS), -math.inf)
        self.size = np.zeros((n, EVENTS))
        self.next = np.zeros(n, dtype=np.intp)
        self.prev = np.full(n, math.nan)
        self.seen_ts = np.full(n, -math.inf)

    @property
    def nbytes(self) -> int:
        if self.n < 0:
            return 0
        return self.ts.nbytes + self.size.nbytes + self.next.nbytes + self.prev.nbytes + self.seen_ts.nbytes

    def add(self, values: F, ts: F, good: B) -> None:
        """Record an event for each row whose new good sample rises (or whose counter went up)."""
        if self.n != len(values):
            self._alloc(len(values))
        new = good & (ts > self.seen_ts) & np.isfinite(values)
        if not new.any():
            return
        prev = self.prev[new]
        v = values[new]
        if self.kind == "rises":
            size = ((np.nan_to_num(prev) == 0) & np.isfinite(prev) & (v != 0)).astype(np.float64)
        elif self.kind == "changes":
            size = (np.isfinite(prev) & (prev != v)).astype(np.float64)
        else:  # a counter: only increases count; a reset (value went down) starts from the new value
            size = np.where(np.isfinite(prev) & (v > prev), v - prev, 0.0)
        rows = np.flatnonzero(new)[size > 0]
        if len(rows):
            slot = self.next[rows]
            self.ts[rows, slot] = ts[rows]
            self.size[rows, slot] = size[size > 0]
            self.next[rows] = (slot + 1) % EVENTS
        self.prev[new] = v
        self.seen_ts[new] = ts[new]

    def total(self, now: float) -> F:
        """Per row, the events in (now − window, now]; NaN before the first sample."""
        inside = (self.ts > now - self.seconds) & (self.ts <= now)
        out: F = np.where(np.isfinite(self.prev), (self.size * inside).sum(axis=1), math.nan)
        return out
