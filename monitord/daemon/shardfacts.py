"""A shard's side of cross-shard topology: the facts it owes the others, and what it does with theirs.

Daemon layer, beside ``pipeline``; no I/O (``daemon.shardlink`` carries the
messages over the site's MQTT broker). An asset is *exported* when an asset of
another shard depends on it or it depends on one: after every evaluation
(a clock step of the tick) its ``Fact`` is worked out again when one of its
inputs may have moved (offline or quiet flags, root-cause rules pending or
firing, alert or ticket events of the asset) and handed to ``send`` when it
changed — offline, quiet, firing alerts, root causes, the ticket that explains
its dependants; not every sample. A fact received for an asset of
another shard that this one has an edge with lands in ``Pipeline.remote``, where
the rules of inference read it, for as long as that shard's link is alive. An
alert another shard explained by one of this shard's tickets comes back as an
``explained`` note on that ticket, so the one ticket lists everything it
explains, as on a single instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from monitord.alerting.facts import QUIET_POLLS, Fact
from monitord.alerting.tracker import AlertEvent
from monitord.daemon.pipeline import Pipeline
from monitord.ingest.state import TypeTable
from monitord.tickets.desk import TicketEvent

log = logging.getLogger(__name__)


def edges(
    ancestors: Mapping[str, tuple[str, ...]], owner: Mapping[str, int], shard: int
) -> tuple[set[str], set[str]]:
    """This shard's assets with an edge to another shard's (exported), and those other assets."""
    exported: set[str] = set()
    imported: set[str] = set()
    for asset, ups in ancestors.items():
        for up in ups:
            a, u = owner.get(asset), owner.get(up)
            if a == u or a is None or u is None:
                continue
            if a == shard:
                exported.add(asset)
                imported.add(up)
            elif u == shard:
                exported.add(up)
                imported.add(asset)
    return exported, imported


@dataclass
class ShardFacts:
    pipeline: Pipeline
    shard: int
    #: every asset of the site → its shard
    owner: Mapping[str, int]
    #: asset → its poll interval, seconds (for "quiet")
    polls: Mapping[str, float]
    #: hands a changed fact to the link (retained, under the asset's topic)
    send: Callable[[Fact], None] = lambda fact: None
    #: hands an alert explained here by another shard's ticket to the link, for that shard
    tell_owner: Callable[[AlertEvent, Fact], None] = lambda ev, fact: None
    said: dict[str, Fact] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.pipeline
        self.exported, self.imported = edges(p.ancestors, self.owner, self.shard)
        self._notes: list[tuple[str, AlertEvent]] = []  # (supply, alert) explained elsewhere
        self.gone: set[int] = set()  # shards whose link died: their retained facts are history
        p.remote_explained.append(lambda ev, fact: self.tell_owner(ev, fact))
        p.clock_steps.append(self.step)
        # Between evaluations a person may resolve a ticket: that asset's fact is looked at next.
        self._marked: set[str] = set()
        self.look_again()  # the first step works out every fact
        p.road.ticket_listeners.append(lambda ev: self._mark(ev.asset))
        # A fact is rebuilt only when one of its inputs may have moved: offline and quiet (numpy over
        # the state table, per type), root-cause rules pending or firing (numpy over the tracker),
        # and alert or ticket events of the asset.
        located: dict[int, tuple[TypeTable, list[str], list[int]]] = {}
        for a in sorted(self.exported):
            table, row = p.state.where[a]
            _table, names, rows = located.setdefault(id(table), (table, [], []))
            names.append(a)
            rows.append(row)
        self._tables = [
            (table, np.array(rows), names, np.array([self.polls[a] for a in names]), np.full(len(names), -1))
            for table, names, rows in located.values()
        ]
        self._roots = []
        for rule in p.engine.rules:
            at = {a: i for i, a in enumerate(rule.assets) if a in self.exported}
            if rule.spec.root_cause and at:
                self._roots.append((rule.key, np.array(list(at.values())), list(at), np.zeros(len(at), bool)))

    def look_again(self) -> None:
        """Work out every exported fact at the next step, whatever moved."""
        self._marked |= self.exported

    def _mark(self, asset: str) -> None:
        if asset in self.exported:
            self._marked.add(asset)

    def _moved(self, now: float) -> set[str]:
        """The exported assets whose fact may have changed since the last step."""
        moved, self._marked = self._marked | (self.pipeline.touched & self.exported), set()
        for table, rows, names, polls, said in self._tables:
            flags = table.offline(now)[rows] * 2 + ((now - table.last_good[rows]) > QUIET_POLLS * polls)
            moved.update(names[int(i)] for i in np.flatnonzero(flags != said))
            said[:] = flags
        for key, rows, names, said in self._roots:
            active = self.pipeline.tracker.active(key)
            now_active = active[rows] if len(active) else np.zeros(len(rows), bool)
            moved.update(names[int(i)] for i in np.flatnonzero(now_active != said))
            said[:] = now_active
        return moved

    def fact(self, asset: str, now: float) -> Fact:
        """What this shard says of one of its assets now."""
        p, topo = self.pipeline, self.pipeline.topology
        located = p.state.where[asset]
        last = float(located[0].last_good[located[1]])
        ticket = p.cause_ticket(asset)
        return Fact(
            asset=asset,
            shard=self.shard,
            offline=topo.offline(asset, now),
            quiet=now - last > QUIET_POLLS * self.polls[asset],
            last_good=last,
            stale_after=float(located[0].stale_after[located[1]]),
            poll=self.polls[asset],
            fault_since=topo.fault_since(asset),
            causes=p.root_causes_firing(asset),
            ticket=ticket.id if ticket else None,
        )

    def step(self, now: float) -> list[TicketEvent]:
        """After every evaluation: send the facts that changed, note what others explained here."""
        for asset in sorted(self._moved(now)):
            fact = self.fact(asset, now)
            if self.said.get(asset) != fact:
                self.said[asset] = fact
                self.send(fact)
        out: list[TicketEvent] = []
        notes, self._notes = self._notes, []
        for supply, ev in notes:
            ticket = self.pipeline.cause_ticket(supply)
            if ticket is None:
                log.warning(
                    "%s on %s was explained by %s, which has no active ticket here", ev.rule, ev.asset, supply
                )
                continue
            out.append(self.pipeline.desk.explain(ticket, ev, now))
        return out

    def received(self, fact: Fact) -> bool:
        """A fact from another shard: kept if it is about an asset this shard has an edge with and
        comes from that asset's owner; False (ignored) otherwise."""
        if (
            fact.asset not in self.imported
            or self.owner.get(fact.asset) != fact.shard
            or fact.shard in self.gone
        ):
            return False
        self.pipeline.remote[fact.asset] = fact
        return True

    def shard_gone(self, shard: int) -> None:
        """Another shard's link died (its will): forget what it said, so a ticket it may never close
        explains nothing more here; its assets are judged as unknown (nothing waits for them)."""
        self.gone.add(shard)
        for asset in [a for a, f in self.pipeline.remote.items() if f.shard == shard]:
            del self.pipeline.remote[asset]

    def shard_back(self, shard: int) -> None:
        """It is back: what it says from now on counts (it sends every fact again as it starts)."""
        self.gone.discard(shard)

    def explained_here(self, supply: str, ev: AlertEvent) -> bool:
        """Another shard explained ``ev`` by the ticket of ``supply``, an asset of this shard."""
        if self.owner.get(supply) != self.shard or self.owner.get(ev.asset) == self.shard:
            return False
        self._notes.append((supply, ev))
        return True

    def resend(self) -> None:
        """Send every current fact again (a new broker session, or a broker that lost its retained)."""
        for fact in self.said.values():
            self.send(fact)
