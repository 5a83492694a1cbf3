"""The evaluation core every runner shares: bus, state table, rules, alerts, tickets, one event road.

``build_core(config, clock, store)`` wires what turns samples into alerts and
tickets, and nothing that talks to devices or people: the daemon adds drivers,
the API and people on top of it; replay, ``rules explain`` and the tests use
it as it is. SLA clocks and follow-up closes are steps of its tick; a person's
action (``act``) takes the same road as the tick's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitord.alerting.mute import MuteStages
from monitord.alerting.tracker import AlertTracker, fingerprint
from monitord.config.mqtt import publishes_changes
from monitord.config.site import AssetConfig, SiteConfig, site_zone
from monitord.core.assets import Asset
from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.daemon.events import EventRoad
from monitord.daemon.pipeline import Pipeline
from monitord.ingest.bus import SampleBus
from monitord.ingest.state import AssetSlot, StateTable
from monitord.rules.engine import RuleEngine
from monitord.store.base import Store
from monitord.tickets.desk import TicketDesk, TicketEvent


def asset_points(config: SiteConfig, asset: AssetConfig) -> tuple[str, ...]:
    return tuple(config.profile(asset.profile).points)


def ancestors(config: SiteConfig) -> dict[str, tuple[str, ...]]:
    """Every asset an asset depends on, directly or through others (``depends_on``)."""
    direct = {a.id: a.depends_on for a in config.assets}
    out: dict[str, tuple[str, ...]] = {}
    for asset in direct:
        seen: list[str] = []
        todo = list(direct[asset])
        while todo:
            up = todo.pop()
            if up not in seen and up != asset:
                seen.append(up)
                todo += direct.get(up, [])
        out[asset] = tuple(seen)
    return out


def shared_paths(config: SiteConfig) -> tuple[dict[str, str], dict[str, str]]:
    """Asset → the shared path it reports through, and path → its label (docs/incidents.md).

    Every MQTT device shares the daemon's one broker connection. Modbus gateways are assets of
    their own (``daemon.app.with_gateways``), watched by ``comms.gateway_down``."""
    if config.mqtt is None:
        return {}, {}
    host, port = config.mqtt.host_port
    path = f"MQTT-{host}-{port}"
    # Synthetic gateway assets carry an empty mqtt connection but are reported by the poller.
    behind = {a.id: path for a in config.assets if a.connection.mqtt and a.type != "gateway"}
    return behind, ({path: f"MQTT broker {host}:{port}"} if behind else {})


@dataclass
class Core:
    config: SiteConfig
    clock: Clock
    store: Store
    metrics: Metrics
    assets: dict[str, Asset]
    state: StateTable
    engine: RuleEngine
    tracker: AlertTracker
    desk: TicketDesk
    road: EventRoad
    pipeline: Pipeline
    bus: SampleBus

    def restore(self, events: list[TicketEvent]) -> None:
        """Rebuild tickets from stored events; alerts with an open ticket count as firing."""
        self.desk.restore(events)
        for t in self.desk.tickets.values():
            if t.state != "open":
                continue
            for rule in self.engine.rules:
                if rule.spec.id == t.rule and t.asset in rule.assets:
                    self.tracker.restore(rule.key, len(rule.assets), rule.assets.index(t.asset), t.since)

    def act(
        self, ticket_id: str, action: str, *, actor: str, note: str = "", assignee: str = ""
    ) -> TicketEvent:
        """A person's action (API, CLI): recorded, stored and told like any ticket event."""
        ev = self.desk.act(ticket_id, action, actor=actor, now=self.clock.now(), note=note, assignee=assignee)
        self.road.emit(tickets=[ev])
        return ev

    def firing_alerts(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        core = self
        for rule in core.engine.rules:
            for i in np.flatnonzero(core.tracker.firing(rule.key)):
                asset = rule.assets[int(i)]
                t = core.desk.open_ticket_for(fingerprint(rule.spec.id, asset))
                out.append(
                    {
                        "rule": rule.spec.id,
                        "asset": asset,
                        "severity": rule.spec.severity,
                        "ticket": t.id if t else None,
                    }
                )
        return out

    def asset_states(self) -> list[dict[str, object]]:
        firing = {(a["asset"]) for a in self.firing_alerts()}
        out: list[dict[str, object]] = []
        now = self.clock.now()
        for table in self.state.tables.values():
            offline = table.offline(now)
            for row, asset in enumerate(table.assets):
                state = "offline" if offline[row] else "alerting" if asset in firing else "ok"
                a = self.assets[asset]
                out.append(
                    {
                        "id": asset,
                        "name": a.label,
                        "type": a.type,
                        "location": a.where,
                        "state": state,
                        "last_good": float(table.last_good[row]),
                    }
                )
        return out


def build_core(
    config: SiteConfig,
    clock: Clock,
    store: Store,
    *,
    metrics: Metrics | None = None,
    silences: Path | None = None,
    whole: SiteConfig | None = None,
) -> Core:
    """The evaluation core for a site. ``silences``: where silences are kept (the daemon); None: none.
    ``whole``: in a sharded site, the whole site, whose topology reaches the other shards' assets
    (``config`` is then this shard's share)."""
    c = config
    metrics = metrics or Metrics()
    assets = c.domain_assets()
    metrics.set_asset_types({a.id: a.type for a in assets.values()})
    metrics.site_info.labels(c.site.id).set(1)
    stale = c.engine.offline_after_polls
    state = StateTable(
        [
            AssetSlot(a.id, a.type, asset_points(c, a), stale * c.poll_of(a), publishes_changes(c, a))
            for a in c.assets
        ],
        started=clock.now(),
        columns=c.columns(),
        clock=clock.now,
    )
    engine = RuleEngine(c.rules, state, list(assets.values()), tz=site_zone(c))
    tracker = AlertTracker()
    desk = TicketDesk(c.site.ticket_code)
    desk.reopen_window = c.tickets.reopen_window
    road = EventRoad(store, metrics, desk, engine, tracker)
    site = whole or c
    tops = ancestors(site)  # every asset's, so a supply here sees its dependants on other shards
    polls = {a.id: site.poll_of(a) for a in site.assets}
    paths, path_names = shared_paths(c)
    pipeline = Pipeline(
        state,
        engine,
        tracker,
        desk,
        road,
        assets,
        metrics,
        clock,
        point_states={
            a.id: {n: p.states for n, p in c.profile(a.profile).points.items() if p.states} for a in c.assets
        },
        ancestors=tops,
        mute=MuteStages(c.maintenance, silences, c.roster.timezone if c.roster else "UTC"),
        paths=paths,
        path_names=path_names,
        # An alert waits for its upstream devices to report since it began: 1.5 of their slowest poll.
        settle={a: 1.5 * max(polls[u] for u in ups) for a, ups in tops.items() if ups}
        | {a: 1.5 * polls[a] for a, ups in tops.items() if not ups},
        clock_steps=[lambda now: desk.check_clocks(now, c.sla_of, c.tickets.follow_up)],
        locale=c.site.locale,
    )
    # Drivers hand batches to the bus: the state table, the store and the metrics each take them.
    bus = SampleBus()
    bus.subscribe_many(state.apply_many)
    bus.subscribe_health(state.apply_health)  # what a device says of itself (MQTT status topics)
    bus.subscribe_many(store.write_samples)
    bus.subscribe_many(metrics.count_batches)
    attach = getattr(store, "attach_metrics", None)  # a queueing backend counts its losses here
    if attach is not None:
        attach(metrics)
    return Core(c, clock, store, metrics, assets, state, engine, tracker, desk, road, pipeline, bus)
