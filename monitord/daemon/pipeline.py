"""One evaluation step: rules → alert lifecycle → tickets → clocks, out by the event road.

``Pipeline.tick(now)`` is the same code live (called by the daemon's
evaluation loop when new data arrives, at least every ``max_interval``), in
tests with a manual clock, and in replay. It is synchronous and does no I/O of
its own: every event it makes leaves through the ``EventRoad`` (store queue,
metrics, listeners). After the ticket decisions it runs the clock steps —
SLA breaches and follow-up closes, and in the daemon escalation and roster
assignment — so those events take the same road.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitord.alerting.mute import MuteStages
from monitord.alerting.tracker import FIRING, PENDING, AlertEvent, AlertTracker, Transition, fingerprint
from monitord.core.assets import Asset
from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.daemon.events import EventRoad
from monitord.ingest.state import StateTable
from monitord.rules.engine import CompiledRule, RuleEngine
from monitord.tickets.desk import Ticket, TicketDesk, TicketEvent, TicketPolicyView

log = logging.getLogger(__name__)
INHIBIT_WAIT = 30.0  # seconds a dependant's alert waits for a pending root cause upstream
#: A step run after every evaluation once tickets are known: ticket events caused by time passing.
ClockStep = Callable[[float], Sequence[TicketEvent]]


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


class PointValue(float):
    """A point's value in a template; ``{code:name}`` shows the profile's name for a coded value."""

    states: Mapping[int, str] = {}

    def __format__(self, spec: str) -> str:
        if spec == "name":
            if self != self:  # NaN: no value
                return "?"
            return self.states.get(int(self), f"code {int(self)} (0x{int(self):04X})")
        return float.__format__(self, spec)


class _Fields(dict[str, Any]):
    """What a summary may name after a dot (``asset.name``, ``param.suction_min``): plain values only."""


class _SummaryFormatter(string.Formatter):
    """``str.format`` without the reach: a field is a point, ``asset.FIELD`` or ``param.NAME``.

    Plain ``vformat`` follows any attribute or index (``{speed.__class__...}``), which walks from a
    value to module globals and the environment; here nothing but the names above resolves.
    """

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        first, *rest = field_name.split(".")
        if "[" in field_name or not first or first.isdigit() or first.startswith("_"):
            raise KeyError(field_name)
        obj = self.get_value(first, args, kwargs)
        for name in rest:
            if not (isinstance(obj, _Fields) and name in obj):
                raise KeyError(field_name)
            obj = obj[name]
        return obj, first


_FORMATTER = _SummaryFormatter()


def render(
    template: str,
    asset: Asset,
    values: Mapping[str, float],
    states: Mapping[str, Mapping[int, str]] | None = None,
    params: Mapping[str, float] | None = None,
) -> str:
    """Fill a rule's summary with the asset's point values, its fields and the rule's params.

    A summary sees nothing else: ``{point}``, ``{point:name}``, ``{asset.id|name|type|location|<location
    key>}`` and ``{param.NAME}``. Anything else (another attribute, an index, a positional field) leaves
    the template as written and logs why.
    """
    fields = _Values()
    for name, value in values.items():
        v = PointValue(value)
        if states and name in states:
            v.states = states[name]
        fields[name] = v
    fields["asset"] = _Fields(
        {str(k): v if isinstance(v, int | float) else str(v) for k, v in asset.location.items()},
        id=asset.id,
        name=asset.label,
        type=asset.type,
        location=asset.where,
    )
    fields["param"] = _Fields({k: float(v) for k, v in (params or {}).items()})
    try:
        return _FORMATTER.vformat(template, (), fields)
    except (ValueError, AttributeError, IndexError, KeyError, TypeError) as exc:
        log.warning("summary template %r: cannot fill %s", template, exc)
        return template


def alert_transitions(
    engine: RuleEngine, tracker: AlertTracker, now: float
) -> list[tuple[CompiledRule, Transition]]:
    """Evaluate every rule once and apply the alert lifecycle: what changed, and by which rule."""
    out = []
    for res in engine.evaluate(now):
        spec = res.rule.spec
        for tr in tracker.update(
            res.rule.key,
            res.fire,
            res.clear,
            hold_for=spec.for_,
            clear_for=spec.clear_for,
            now=now,
            flap_window=spec.flapping.window,
            flap_transitions=spec.flapping.transitions,
        ):
            out.append((res.rule, tr))
    return out


@dataclass
class Pipeline:
    state: StateTable
    engine: RuleEngine
    tracker: AlertTracker
    desk: TicketDesk
    road: EventRoad
    assets: Mapping[str, Asset]
    metrics: Metrics
    clock: Clock
    #: asset → point → names of coded values (from the profile), for ``{code:name}`` in summaries
    point_states: Mapping[str, Mapping[str, Mapping[int, str]]] = field(default_factory=dict)
    #: asset → every asset it depends on, directly or not (topology for inhibition)
    ancestors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    mute: MuteStages | None = None
    #: asset → seconds its alerts wait for an upstream root cause to show (slowest upstream poll × 1.5)
    settle: Mapping[str, float] = field(default_factory=dict)
    #: run after every evaluation once tickets are known (SLA clocks, follow-up, escalation)
    clock_steps: list[ClockStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._specs = {r.spec.id: r.spec for r in self.engine.rules}
        # Ticket decisions wait until the desk knows the tickets already in the store (restore);
        # alerts meanwhile are held, in order, so none is lost and none opens a second ticket.
        self.tickets_ready = True
        self._held: list[AlertEvent] = []
        self._root_rules = [r for r in self.engine.rules if r.spec.root_cause]

    def decide_held(self) -> list[TicketEvent]:
        """Decide the alerts held while tickets were not ready, and send the events on their road."""
        self.tickets_ready = True
        tickets = self.decide_tickets(self.clock.now())
        self.road.emit(tickets=tickets)
        return tickets

    def decide_tickets(self, now: float) -> list[TicketEvent]:
        """Turn held alert events into ticket events; returns them (the caller sends them on).

        Topology inhibition: a firing alert of an asset whose supply (``depends_on``, transitively)
        has an active root-cause ticket is noted on that ticket ("explained"), not ticketed or
        notified on its own; while such a root-cause alert is still pending, the dependant's alert
        waits here (at most ``INHIBIT_WAIT`` seconds), so one outage is one ticket, not twenty.
        """
        tickets: list[TicketEvent] = []
        held, self._held = self._held, []
        for ev in held:
            policy = self._specs[ev.rule].ticket
            if policy is None:
                continue
            if ev.state == "firing" and self.ancestors.get(ev.asset):
                root, pending = self._root_cause(ev.asset)
                if root is not None:
                    tickets.append(self.desk.explain(root, ev))
                    continue
                # Upstream devices may be polled less often than this one: until each has reported
                # since this condition began, it cannot have shown a root cause yet (bounded by settle).
                waited = now - ev.ts
                unseen = waited < self.settle.get(ev.asset, 0.0) and self._upstream_unseen(ev.asset, ev.since)
                if (pending and waited < INHIBIT_WAIT) or unseen:
                    self._held.append(ev)
                    continue
            if ev.state == "firing" and self.desk.open_ticket_for(ev.fingerprint) is None:
                reason = self.mute.mutes(ev.rule, self.assets[ev.asset], ev.ts) if self.mute else None
                if reason is not None:
                    log.info("alert %s on %s recorded but muted: %s", ev.rule, ev.asset, reason)
                    self.metrics.alerts_muted.labels(reason.split()[0]).inc()
                    continue
                work = self.desk.in_progress_on(ev.asset, policy.skill)
                if work is not None:  # a technician is on it: add to their ticket, tell nobody
                    tickets.append(self.desk.explain(work, ev))
                    continue
            view = TicketPolicyView(policy.priority, policy.skill, policy.auto_resolve)
            tickets += self.desk.on_alert(ev, view, self.assets[ev.asset].where)
        return tickets

    def _upstream_unseen(self, asset: str, since: float) -> bool:
        for upstream in self.ancestors.get(asset, ()):
            located = self.state.where.get(upstream)
            if located is not None and not located[0].last_good[located[1]] >= since:
                return True
        return False

    def _root_cause(self, asset: str) -> tuple[Ticket | None, bool]:
        """An active root-cause ticket upstream of ``asset``, else whether one is pending."""
        pending = False
        for upstream in self.ancestors.get(asset, ()):
            for rule in self._root_rules:
                if upstream not in rule.assets:
                    continue
                ticket = self.desk.open_ticket_for(fingerprint(rule.spec.id, upstream))
                if ticket is not None:
                    return ticket, False
                pending |= self.tracker.state_of(rule.key, rule.assets.index(upstream)) in (PENDING, FIRING)
        return None, pending

    def tick(self, now: float | None = None) -> tuple[list[AlertEvent], list[TicketEvent]]:
        now = self.clock.now() if now is None else now
        with self.metrics.rule_eval.time():
            changes = alert_transitions(self.engine, self.tracker, now)
        alerts = [
            AlertEvent(
                ts=now,
                rule=rule.spec.id,
                asset=rule.assets[tr.index],
                state=tr.state,
                severity=rule.spec.severity,
                since=tr.since,
                summary=self._summary(rule, rule.assets[tr.index]),
            )
            for rule, tr in changes
        ]
        self._held += alerts
        tickets: list[TicketEvent] = []
        if self.tickets_ready:
            tickets = self.decide_tickets(now)
            for step in self.clock_steps:
                tickets += step(now)
        self.road.emit(alerts, tickets)
        return alerts, tickets

    def _summary(self, rule: CompiledRule, asset_id: str) -> str:
        asset = self.assets[asset_id]
        template = rule.spec.summary or f"{rule.spec.id} on {{asset.name}}"
        values = {k: v for k, (v, _ts, _q) in self.state.latest(asset_id).items()}
        params = {**rule.spec.params, **asset.params}  # the rule's defaults, the asset's overrides
        return render(template, asset, values, self.point_states.get(asset_id), params)
