"""Rules of inference over the topology: is a supply dark, is a shared path silent, must an alert wait?

Between the alert tracker and the ticket desk (used by ``daemon.pipeline`` at
ticket time). It reads receive times from the state table and firing alerts
from the tracker, and says nothing to people. The rules and their window are
documented in docs/incidents.md:

- a **supply** (any asset others ``depends_on``) is *dark* when it is offline
  itself and a strict majority of its dependants are *down with it*: offline
  with their last good sample within ``window`` of the supply's, or with an
  alert that began no earlier than ``window`` before the supply fell silent.
  Dependants still reporting normally count against it (they are in the
  denominator and not in the count);
- a **shared path** (one MQTT broker connection) is *silent* when it carries at
  least two devices and a strict majority of them are offline with their last
  good samples within ``window`` of each other;
- a firing alert *waits* while one of its peers (its supplies; for a silence
  alert also its dependants and path mates) has neither reported since the
  alert's condition began nor been offline long enough to count, bounded by
  that peer's offline limit plus ``settle``.

In a sharded site an asset another shard owns is judged by its ``Fact``
(``alerting.facts``), published by its owner; only a supply this shard owns is
ever judged dark here (its owner opens the ticket).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from monitord.alerting.facts import Fact
from monitord.alerting.tracker import FIRING, AlertTracker
from monitord.ingest.state import StateTable

SUPPLY_WINDOW = 60.0  # seconds: dependants falling silent this close to their supply fell with it


@dataclass(frozen=True)
class Verdict:
    """A supply or path judged dark: which, and the evidence for and against."""

    subject: str  # the supply's asset id, or the path's name
    down: tuple[str, ...]  # dependants (or devices) that fell with it
    normal: tuple[str, ...]  # dependants still reporting without an alert: evidence against
    total: int
    since: float  # when the subject (or the first of its devices) fell silent


@dataclass
class Topology:
    state: StateTable
    tracker: AlertTracker
    #: asset → every asset it depends on, directly or not
    ancestors: Mapping[str, tuple[str, ...]]
    #: asset → name of the shared path it reports through (e.g. ``MQTT-127.0.0.1-1883``)
    paths: Mapping[str, str] = field(default_factory=dict)
    #: asset → (rule key, row in that rule) of every rule that watches it
    watched_by: Mapping[str, Sequence[tuple[str, int]]] = field(default_factory=dict)
    window: float = SUPPLY_WINDOW
    #: asset owned by another shard → what its owner last said of it (kept current by the daemon)
    remote: Mapping[str, Fact] = field(default_factory=dict)

    def __post_init__(self) -> None:
        deps: dict[str, list[str]] = {}
        for asset, ups in self.ancestors.items():
            for up in ups:
                deps.setdefault(up, []).append(asset)
        self.dependants: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in deps.items()}
        mates: dict[str, list[str]] = {}
        for asset, path in self.paths.items():
            mates.setdefault(path, []).append(asset)
        self.behind: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in mates.items()}

    # -- facts from the state table (receive times) and the tracker -----------------------------

    def _last_good(self, asset: str) -> float | None:
        located = self.state.where.get(asset)
        if located is None:
            fact = self.remote.get(asset)
            return None if fact is None else fact.seen()
        return float(located[0].last_good[located[1]])

    def _stale_after(self, asset: str) -> float:
        located = self.state.where.get(asset)
        if located is None:
            fact = self.remote.get(asset)
            return 0.0 if fact is None else fact.stale_after
        return float(located[0].stale_after[located[1]])

    def offline(self, asset: str, now: float) -> bool:
        """As the state table judges it: a device's own word where it gave one, else silence (for an
        asset of another shard: as its owner last said)."""
        located = self.state.where.get(asset)
        if located is None:
            fact = self.remote.get(asset)
            return fact is not None and fact.offline
        return located[0].is_offline(located[1], now)

    def fault_since(self, asset: str) -> float | None:
        """When the earliest alert firing on the asset began, or None."""
        if asset not in self.state.where and asset in self.remote:
            return self.remote[asset].fault_since
        starts = [
            self.tracker.since_of(key, row)
            for key, row in self.watched_by.get(asset, ())
            if self.tracker.state_of(key, row) == FIRING
        ]
        return min(starts) if starts else None

    # -- the rules --------------------------------------------------------------------------------

    def dark_supply(self, asset: str, now: float) -> Verdict | None:
        """The widest dark supply that explains ``asset`` (itself, or one it depends on), if any."""
        # A supply of another shard is judged by its owner, which alone opens its ticket.
        candidates = [
            s
            for s in (asset, *self.ancestors.get(asset, ()))
            if s in self.dependants and s in self.state.where
        ]
        verdicts = [v for s in candidates if (v := self._supply_verdict(s, now)) is not None]
        return max(verdicts, key=lambda v: v.total, default=None)

    def _supply_verdict(self, supply: str, now: float) -> Verdict | None:
        fell = self._last_good(supply)
        if fell is None or not self.offline(supply, now):
            return None
        down, normal = [], []
        for d in self.dependants[supply]:
            last, fault = self._last_good(d), self.fault_since(d)
            silent_with_it = self.offline(d, now) and last is not None and abs(last - fell) <= self.window
            if silent_with_it or (fault is not None and fault >= fell - self.window):
                down.append(d)
            elif not self.offline(d, now) and fault is None:
                normal.append(d)
        total = len(self.dependants[supply])
        if 2 * len(down) <= total:
            return None
        return Verdict(supply, tuple(down), tuple(normal), total, fell)

    def silent_path(self, asset: str, now: float) -> Verdict | None:
        """The shared path of ``asset`` if most devices behind it fell silent together."""
        path = self.paths.get(asset)
        devices = self.behind.get(path, ()) if path else ()
        if len(devices) < 2:
            return None
        last = {d: self._last_good(d) for d in devices}
        silent = {d: t for d, t in last.items() if t is not None and self.offline(d, now)}
        if not silent:
            return None
        latest = max(silent.values())
        together = tuple(d for d, t in silent.items() if t >= latest - self.window)
        if 2 * len(together) <= len(devices) or path is None:
            return None
        normal = tuple(d for d in devices if d not in silent and self.fault_since(d) is None)
        return Verdict(path, together, normal, len(devices), min(silent[d] for d in together))

    def undecided(self, asset: str, since: float, now: float, settle: float, silence: bool) -> bool:
        """Whether a peer of ``asset`` may still turn out to share the cause of its alert.

        A peer is undecided while it has not reported since ``since`` (the alert's condition began)
        and has not yet been silent for its offline limit; the wait for it ends at that limit plus
        ``settle``. A peer of another shard that its owner last said reports normally is undecided
        until a silence would have been said (``Fact.may_go_quiet``)."""
        peers = list(self.ancestors.get(asset, ()))
        if silence:
            peers += self.dependants.get(asset, ())
            path = self.paths.get(asset)
            peers += [d for d in self.behind.get(path, ()) if d != asset] if path else []
        waited = now - since
        for p in peers:
            last = self._last_good(p)
            if last is None or self.offline(p, now):
                continue
            if last >= since:
                # Another shard's asset reports "just now" until its owner says it went quiet.
                fact = None if p in self.state.where else self.remote.get(p)
                if fact is not None and fact.may_go_quiet(waited):
                    return True
                continue
            if waited < self._stale_after(p) + settle:
                return True
        return False
