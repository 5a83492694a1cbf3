"""Tests that read like timelines: the daemon's pipeline on a manual clock.

In the spirit of Alertmanager's acceptance tests: a test says what arrives when, and what must (or
must not) come out in which interval::

    tl = Timeline(SITE_YAML, tmp_path)
    tl.at(0).push("P1", running=1, suction_pressure=0.15)
    for t in range(1, 20):
        tl.at(t).push("P1", running=1, suction_pressure=0.02)
    tl.expect_nothing(until=5.5)                                    # `for: 5s` still holding
    tl.expect_alerts(between=(5.5, 7), firing=[("pump.dry_run", "P1")])
    tl.expect_tickets(between=(5.5, 7), opened=[("pump.dry_run", "P1")])

Times are seconds from the timeline's start. Pushes are scheduled; ``run_until`` (which every
expectation calls) moves the MANUAL clock forward, hands each batch to the core's sample bus when
its time comes, and evaluates when the daemon's loop would: as soon as data arrived, but no sooner
than ``engine.min_interval`` after the last evaluation (the daemon also waits nine times what that
evaluation cost, which on manual time is nothing); the moment a ``for`` / ``clear_for`` timer
runs out; and at least every ``min_interval + max_interval``. Each evaluation is one ``Pipeline.tick``, the
same round the daemon's loop runs: rules, alerts, tickets, then the clock steps (SLA clocks,
follow-up close). ``expect_nothing`` is a negative check over manual time: it evaluates through the
whole interval and fails on any alert or ticket event in it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitord.alerting.tracker import AlertEvent
from monitord.config.shards import own_share
from monitord.config.site import SiteConfig, load_config
from monitord.core.clock import ManualClock
from monitord.core.model import Quality, SampleBatch
from monitord.daemon.core import Core, build_core
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketEvent

T0 = 1_795_000_000.0  # 2026-11-18 (UTC): a fixed start, so ticket numbers and days are fixed too


def pump_site(assets: str, rules: str, site: str = "timeline") -> str:
    """A site of pumps that read only ``running`` and ``suction_pressure`` (over MQTT, polled every
    second), with the given ``assets:`` and ``rules:`` list items (YAML, indented two spaces)."""
    return (
        f"site: {{id: {site}}}\n"
        "mqtt: {url: 'mqtt://127.0.0.1:1'}\n"
        "poll: 1s\n"
        "profiles:\n"
        "  - profile: two-points\n"
        "    asset_type: pump\n"
        "    mqtt: {topic: '{site}/{asset}'}\n"
        "    points: {running: {}, suction_pressure: {}}\n"
        f"assets:\n{assets}rules:\n{rules}"
    )


def restored_core(
    config: SiteConfig, clock: ManualClock, store: SqliteStore, whole: SiteConfig | None = None
) -> Core:
    """The daemon's evaluation core (no drivers, no people), with its tickets restored from the store
    (``whole``: the whole site when ``config`` is one shard's share)."""
    core = build_core(config, clock, store, whole=whole)
    core.restore(store.ticket_events())
    return core


@dataclass(frozen=True)
class Seen:
    """An alert or ticket event as the timeline saw it, at a time relative to the start."""

    t: float
    kind: str  # "alert" or "ticket"
    what: str  # the alert's state ("firing", "resolved", "flapping") or the ticket event
    rule: str
    asset: str
    ticket: str = ""
    note: str = ""

    def key(self) -> tuple[str, ...]:
        """How expectations name it: (rule, asset), and a breach also says which clock."""
        return (self.rule, self.asset, self.note) if self.what == "breached" else (self.rule, self.asset)


@dataclass
class _Push:
    t: float
    asset: str
    points: dict[str, float]
    quality: Quality


class _At:
    def __init__(self, timeline: Timeline, t: float) -> None:
        self.timeline, self.t = timeline, t

    def push(self, asset: str, quality: Quality = Quality.GOOD, **points: float) -> _At:
        self.timeline.push(self.t, asset, points, quality)
        return self


class Timeline:
    """A site's pipeline on a manual clock, a SQLite store in ``folder``, and what it emitted."""

    def __init__(
        self,
        config: SiteConfig | str,
        folder: Path,
        *,
        start: float = T0,
        name: str = "timeline",
        shard: int | None = None,
    ) -> None:
        """``shard``: run that shard's share of a sharded site (its topology still the whole site's)."""
        if isinstance(config, str):
            path = folder / f"{name}.yaml"
            path.write_text(config)
            config = load_config(path)
        whole = None
        if shard is not None:
            whole, config = config, own_share(config, shard)
        self.config = config
        self.folder = folder
        self.start = start
        self.clock = ManualClock(start)
        self.db = folder / f"{name}.db"
        self.store = SqliteStore(self.db, flush_interval=0.05)
        self.core = restored_core(config, self.clock, self.store, whole)
        self.seen: list[Seen] = []
        self._pending: list[_Push] = []
        self._last_eval: float | None = None
        self._arrived = False  # data since the last evaluation (the daemon's bus.wake)
        self.min_interval = config.engine.min_interval
        self.max_interval = config.engine.max_interval

    # -- input -----------------------------------------------------------------------------------

    def at(self, t: float) -> _At:
        return _At(self, t)

    def push(self, t: float, asset: str, points: dict[str, float], quality: Quality = Quality.GOOD) -> None:
        """Schedule a sample batch of ``asset`` at ``t`` (a NaN value for a failed read)."""
        if t < self.now:
            raise ValueError(f"cannot push at {t:g}s: the timeline is already at {self.now:g}s")
        self._pending.append(_Push(t, asset, dict(points), quality))
        self._pending.sort(key=lambda p: p.t)

    def act(self, t: float, ticket: str, action: str, *, actor: str, note: str = "") -> TicketEvent:
        """A person's action on a ticket at ``t`` (the API's path: recorded, stored, told)."""
        self.run_until(t)
        ev = self.core.act(ticket, action, actor=actor, note=note)
        self._record([], [ev])
        return ev

    # -- time ------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._rel(self.clock.now())

    def _rel(self, ts: float) -> float:
        return round(ts - self.start, 6)

    def _next_evaluation(self) -> float:
        """When the daemon's loop would evaluate next (relative), given what is scheduled."""
        if self._last_eval is None:  # the loop's first round runs as soon as it starts
            return self.now
        earliest = round(self._last_eval + self.min_interval, 6)  # it sleeps min_interval after each
        latest = round(earliest + self.max_interval, 6)  # then waits for data, at most max_interval
        # a `for`/`clear_for` timer running out is not held back by min_interval (as in the daemon)
        timer = max(self._last_eval, round(self._rel(self.core.tracker.next_due()), 6))
        if self._arrived:
            return min(earliest, timer)
        arrival = self._pending[0].t if self._pending else math.inf
        return min(latest, max(earliest, arrival), timer)

    def run_until(self, t: float) -> None:
        """Move the manual clock to ``t``, delivering data and evaluating as the daemon would."""
        if t < self.now:
            raise ValueError(f"cannot run until {t:g}s: the timeline is already at {self.now:g}s")
        while (nxt := self._next_evaluation()) <= t:
            self.clock.set(self.start + nxt)
            self._deliver(nxt)
            alerts, tickets = self.core.pipeline.tick(self.clock.now())
            self._record(alerts, tickets)
            self._last_eval, self._arrived = nxt, False
        self.clock.set(self.start + t)
        self._deliver(t)

    def _deliver(self, upto: float) -> None:
        while self._pending and self._pending[0].t <= upto:
            p = self._pending.pop(0)
            names = tuple(p.points)
            values = np.array([p.points[n] for n in names], dtype=float)
            quality = np.full(len(names), int(p.quality), dtype=np.int8)
            self.core.bus.publish(SampleBatch(self.start + p.t, p.asset, names, values, quality))
            self._arrived = True

    def _record(self, alerts: Iterable[AlertEvent], tickets: Iterable[TicketEvent]) -> None:
        for a in alerts:
            self.seen.append(Seen(self._rel(a.ts), "alert", a.state, a.rule, a.asset))
        for e in tickets:
            self.seen.append(Seen(self._rel(e.ts), "ticket", e.event, e.rule, e.asset, e.ticket, e.note))

    # -- what came out ---------------------------------------------------------------------------

    def alerts(self, between: tuple[float, float] | None = None) -> list[Seen]:
        return [s for s in self._within(between) if s.kind == "alert"]

    def tickets(self, between: tuple[float, float] | None = None) -> list[Seen]:
        return [s for s in self._within(between) if s.kind == "ticket"]

    def _within(self, between: tuple[float, float] | None) -> list[Seen]:
        if between is None:
            return list(self.seen)
        t0, t1 = between
        return [s for s in self.seen if t0 <= s.t <= t1]

    def firing(self) -> set[tuple[str, str]]:
        """(rule, asset) of every alert firing now, as the daemon's API would list it."""
        return {(str(a["rule"]), str(a["asset"])) for a in self.core.firing_alerts()}

    # -- expectations ----------------------------------------------------------------------------

    def expect_alerts(
        self, between: tuple[float, float], **by_state: Sequence[tuple[str, str]]
    ) -> list[Seen]:
        """Run to the end of ``between``; the alert events in it are exactly those given, by state
        (``firing=[(rule, asset)]``, ``resolved=[...]``, ``flapping=[...]``); unnamed states: none."""
        self.run_until(max(between[1], self.now))
        got = self.alerts(between)
        _same(f"alert events in {_span(between)}", got, by_state)
        return got

    def expect_tickets(
        self, between: tuple[float, float], **by_event: Sequence[tuple[str, ...]]
    ) -> list[Seen]:
        """Run to the end of ``between``; the ticket events in it are exactly those given, by event
        (``opened=[(rule, asset)]``, ``breached=[(rule, asset, clock)]``, ...); unnamed: none."""
        self.run_until(max(between[1], self.now))
        got = self.tickets(between)
        _same(f"ticket events in {_span(between)}", got, by_event)
        return got

    def expect_nothing(self, until: float) -> None:
        """Evaluate through (now, ``until``] on the manual clock: no alert and no ticket event."""
        since, mark = self.now, len(self.seen)
        self.run_until(until)
        new = self.seen[mark:]
        assert new == [], f"expected nothing in ({since:g}s, {until:g}s], got {_show(new)}"

    # -- lifetime --------------------------------------------------------------------------------

    def restart(self) -> None:
        """Stop (flushing the store) and build the pipeline again from the same store, as a restarted
        daemon does; the clock and what is still scheduled carry on."""
        self.store.flush()
        self.store.close()
        self.store = SqliteStore(self.db, flush_interval=0.05)
        self.core = restored_core(self.config, self.clock, self.store)
        self._last_eval, self._arrived = None, False

    def stored(self) -> tuple[list[AlertEvent], list[TicketEvent]]:
        """What reached the store so far (flushed first)."""
        self.store.flush()
        return self.store.alert_events(), self.store.ticket_events()

    def close(self) -> None:
        self.store.flush()
        self.store.close()


def _span(between: tuple[float, float]) -> str:
    return f"[{between[0]:g}s, {between[1]:g}s]"


def _show(events: Iterable[Seen]) -> str:
    return ", ".join(f"{s.t:g}s {s.kind} {s.what} {'/'.join(s.key())}" for s in events) or "nothing"


def _same(where: str, got: list[Seen], want: Mapping[str, Sequence[tuple[str, ...]]]) -> None:
    expected = Counter((what, tuple(key)) for what, keys in want.items() for key in keys)
    actual = Counter((s.what, s.key()) for s in got)
    assert actual == expected, f"{where}: expected {_describe(expected)}, got {_show(got)}"


def _describe(c: Counter[tuple[str, tuple[str, ...]]]) -> str:
    return ", ".join(f"{what} {'/'.join(key)}" for (what, key), n in c.items() for _ in range(n)) or "nothing"
