"""Replay: recorded samples through the full pipeline, faster than real time.

``replay`` feeds stored batches (a SQLite store file, a CSV export, or the site's own store, SQLite
or InfluxDB, read in time windows) in time order into the
same evaluation core the daemon uses (``build_core``) — state table, rules, alert
lifecycle, ticket decisions — on a ``ManualClock``, with no drivers and no
notifications. Samples are applied in groups of one read plan per step and the
pipeline ticks once per step (default 1 s), so a day of a thousand assets
replays in seconds. ``compare`` runs two rule sets over the same data and
says which alerts and tickets differ.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import SiteConfig
from monitord.core.clock import ManualClock
from monitord.core.model import Frame, SampleBatch
from monitord.daemon.core import Core, build_core
from monitord.rules.spec import RuleSpec
from monitord.tickets.desk import TicketEvent

TickHook = Callable[[Core, float], None]


class EventLog:
    """A store that keeps events in memory and lets samples pass: replay's output."""

    def __init__(self) -> None:
        self.alerts: list[AlertEvent] = []
        self.tickets: list[TicketEvent] = []

    def write_samples(self, batches: Sequence[SampleBatch]) -> None:
        pass

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        self.alerts.extend(events)

    def write_tickets(self, events: Sequence[TicketEvent]) -> None:
        self.tickets.extend(events)

    def alert_events(self) -> list[AlertEvent]:
        return list(self.alerts)

    def ticket_events(self) -> list[TicketEvent]:
        return list(self.tickets)

    def samples(
        self, asset: str | None = None, since: float | None = None, until: float | None = None
    ) -> Iterator[SampleBatch]:
        return iter(())

    def frames(self, since: float | None = None, until: float | None = None) -> Iterator[Frame]:
        return iter(())

    def flush(self, timeout: float = 10.0) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class ReplayResult:
    alerts: list[AlertEvent]
    tickets: list[TicketEvent]
    samples: int = 0
    batches: int = 0
    seconds: float = 0.0
    span: tuple[float, float] = (0.0, 0.0)
    core: Core | None = field(default=None, repr=False)


class Progress:
    """A one-line progress bar on a terminal, a line per 10 % elsewhere; with no total (an InfluxDB
    store is not counted first: that would read it twice), the batches so far, every few seconds."""

    def __init__(self, total: int | None, out: TextIO = sys.stderr) -> None:
        self.known = total is not None
        self.total, self.out = max(total or 0, 1), out
        self.tty = out.isatty()
        self.shown = -1
        self.started = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.known:
            self._count(done)
            return
        pct = min(100, done * 100 // self.total)
        step = 1 if self.tty else 10
        if pct // step == self.shown // step and pct != 100:
            return
        if pct == self.shown:
            return
        self.shown = pct
        bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
        text = f"replay [{bar}] {pct:3d}% {done:,} batches {time.perf_counter() - self.started:.1f}s"
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=self.out, flush=True)
        if self.tty and pct == 100:
            print(file=self.out)

    def _count(self, done: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        text = f"replay {done:,} batches {now - self.started:.1f}s"
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=self.out, flush=True)

    def done(self, batches: int) -> None:
        """The end of the data: the bar at 100 %, or the final count; nothing for no data at all
        (the command says there was none)."""
        if not batches:
            return
        if self.known:
            self.update(self.total)
            return
        self._count(batches, final=True)
        if self.tty:
            print(file=self.out)


def replay(
    config: SiteConfig,
    source: Iterable[Frame],
    *,
    rules: list[RuleSpec] | None = None,
    step: float = 1.0,
    progress: Progress | None = None,
    on_tick: TickHook | None = None,
) -> ReplayResult:
    site = config if rules is None else config.model_copy(update={"rules": rules})
    clock = ManualClock(0.0)
    log = EventLog()
    core = build_core(site, clock, log)
    started = time.perf_counter()
    pending: list[Frame] = []
    next_tick: float | None = None
    first = last = 0.0
    n_batches = n_samples = 0

    def flush(now: float) -> None:
        """Apply every row older than ``now``, keep the rest, and tick."""
        keep = []
        for frame in pending:
            head, tail = frame.split(now)
            if head is not None:
                core.state.apply_frame(head)
            if tail is not None:
                keep.append(tail)
        pending[:] = keep
        clock.set(now)
        core.pipeline.tick(now)
        if on_tick:
            on_tick(core, now)

    for frame in source:  # in order of each frame's first row
        if next_tick is None:
            first = float(frame.ts[0])
            next_tick = (first // step + 1) * step
            for table in core.state.tables.values():  # nothing is offline before the data starts
                table.last_good[:] = first
        while frame.ts[0] >= next_tick:
            flush(next_tick)
            next_tick += step
        pending.append(frame)
        n_batches += len(frame)
        n_samples += len(frame) * len(frame.points)
        last = max(last, float(frame.ts[-1]))
        if progress:
            progress.update(n_batches)
    while pending and next_tick is not None:
        # The last tick is just after the newest sample: the end of the recording is not silence
        # (ticking on to the next step made every asset "offline" for want of data not yet recorded).
        flush(min(next_tick, float(np.nextafter(last, math.inf))))
        next_tick += step
    if progress:
        progress.done(n_batches)
    return ReplayResult(
        log.alerts, log.tickets, n_samples, n_batches, time.perf_counter() - started, (first, last), core
    )


def episodes(result: ReplayResult) -> set[tuple[str, str, int]]:
    """Alert episodes as (rule, asset, start rounded to the second): what a comparison compares."""
    return {(a.rule, a.asset, round(a.since)) for a in result.alerts if a.state == "firing"}


def ticket_keys(result: ReplayResult) -> set[tuple[str, str, int]]:
    return {(t.rule, t.asset, round(t.since)) for t in result.tickets if t.event == "opened"}


def compare(a: ReplayResult, b: ReplayResult) -> dict[str, set[tuple[str, str, int]]]:
    return {
        "alerts only in A": episodes(a) - episodes(b),
        "alerts only in B": episodes(b) - episodes(a),
        "tickets only in A": ticket_keys(a) - ticket_keys(b),
        "tickets only in B": ticket_keys(b) - ticket_keys(a),
    }


def source_of(
    path: Path, since: float | None = None, until: float | None = None
) -> tuple[Iterable[Frame], int]:
    """Frames in ``[since, until)`` from a SQLite store or a CSV export, with a batch count for the
    progress bar (the whole file's)."""
    if path.suffix.lower() == ".csv":
        from monitord.store.samples_csv import read_csv

        frames = [f for f in _trimmed(read_csv(path), since, until)]
        return frames, sum(len(f) for f in frames)
    from monitord.tools.storage import open_sqlite

    store = open_sqlite(path)
    return store.frames(since, until), store.count_batches()


def site_source(
    config: SiteConfig, since: float | None = None, until: float | None = None
) -> Iterator[Frame]:
    """Frames in ``[since, until)`` from the site's own store as its config names it: a SQLite file,
    or InfluxDB (only this site's samples, read in time windows). Opened to read: no writer, no
    spool."""
    from monitord.tools.storage import open_reader

    store = open_reader(config, None)
    try:
        yield from store.frames(since, until)
    finally:
        store.close()


def _trimmed(frames: Iterable[Frame], since: float | None, until: float | None) -> Iterator[Frame]:
    return (part for frame in frames if (part := frame.within(since, until)) is not None)
