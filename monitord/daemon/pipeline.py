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

from monitord.alerting.facts import Fact
from monitord.alerting.inference import Topology, Verdict
from monitord.alerting.mute import MuteStages
from monitord.alerting.tracker import FIRING, PENDING, AlertEvent, AlertTracker, Transition, fingerprint
from monitord.core.assets import Asset
from monitord.core.clock import Clock
from monitord.core.i18n import DEFAULT, translations, translator
from monitord.core.metrics import Metrics
from monitord.daemon.events import EventRoad
from monitord.ingest.state import StateTable
from monitord.rules.engine import CompiledRule, RuleEngine
from monitord.rules.spec import RuleSpec, TicketPolicy
from monitord.tickets.desk import Ticket, TicketDesk, TicketEvent, TicketPolicyView

log = logging.getLogger(__name__)
INHIBIT_WAIT = 30.0  # seconds a dependant's alert waits for a pending root cause upstream
#: Rule ids of the tickets inference opens (no rule file defines them; docs/incidents.md does).
SUPPLY_DARK = "topology.supply_dark"
PATH_SILENT = "topology.path_silent"
_PLAIN = RuleSpec(id="plain", applies_to={}, when="false")


def _is_silence(spec: RuleSpec) -> bool:
    """A rule that fires on a device's silence (``when: offline``): what a silent path explains."""
    return spec.when.strip() == "offline"


#: A step run after every evaluation once tickets are known: ticket events caused by time passing.
ClockStep = Callable[[float], Sequence[TicketEvent]]
#: Told of an alert explained by another shard's ticket (the fact that names it): the shard link
#: sends it to the owner, which notes it on that ticket.
RemoteExplained = Callable[[AlertEvent, Fact], None]


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
    #: asset → the shared path it reports through (one per MQTT broker connection), and path → label
    paths: Mapping[str, str] = field(default_factory=dict)
    path_names: Mapping[str, str] = field(default_factory=dict)
    #: asset → seconds its alerts wait for an upstream root cause to show (slowest upstream poll × 1.5)
    settle: Mapping[str, float] = field(default_factory=dict)
    #: run after every evaluation once tickets are known (SLA clocks, follow-up, escalation)
    clock_steps: list[ClockStep] = field(default_factory=list)
    #: the site's language: rule summaries are filled from the catalog's template for it
    locale: str = DEFAULT
    #: sharded site: assets of other shards → their owners' facts (docs/scale-out.md#sharded-campus)
    remote: dict[str, Fact] = field(default_factory=dict)
    remote_explained: list[RemoteExplained] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._specs = {r.spec.id: r.spec for r in self.engine.rules}
        watched: dict[str, list[tuple[str, int]]] = {}
        for r in self.engine.rules:
            for i, a in enumerate(r.assets):
                watched.setdefault(a, []).append((r.key, i))
        self.topology = Topology(
            self.state, self.tracker, self.ancestors, self.paths, watched, remote=self.remote
        )
        # A life-safety ticket's page must not wait for its peers: it is never explained away.
        # Ticket decisions wait until the desk knows the tickets already in the store (restore);
        # alerts meanwhile are held, in order, so none is lost and none opens a second ticket.
        self.tickets_ready = True
        self._held: list[AlertEvent] = []
        self._root_rules = [r for r in self.engine.rules if r.spec.root_cause]
        self._root_keys = {r.key: r.spec.id for r in self._root_rules}
        self.touched: set[str] = set()  # assets with alert or ticket events in the current evaluation

    def forget(self) -> None:
        """Back to knowing nothing (an HA instance taking over again): tickets, alerts, held alerts."""
        self.desk.forget()
        self.tracker.forget()
        self._held.clear()
        self.tickets_ready = False

    def decide_held(self) -> list[TicketEvent]:
        """Decide the alerts held while tickets were not ready, and send the events on their road."""
        self.tickets_ready = True
        tickets = self.decide_tickets(self.clock.now())
        self.road.emit(tickets=tickets)
        return tickets

    def decide_tickets(self, now: float) -> list[TicketEvent]:
        """Turn held alert events into ticket events; returns them (the caller sends them on).

        The rules of inference (docs/incidents.md), in order, for a firing alert:

        1. **life safety** (``life_safety: true``): always its own ticket and page, at once; never
           explained, joined, suppressed or muted by a maintenance window (only by a silence naming
           the rule); if an upstream cause has a ticket, the two are linked both ways;
        2. **root cause upstream**: an asset whose supply (``depends_on``, transitively) has an
           active root-cause ticket — a ``root_cause`` rule's, or an inferred dark supply's — or
           whose shared path is silent is noted on that ticket ("explained"), not ticketed;
           while a peer may still show such a cause, the alert waits (``Topology.undecided``);
        3. **dark supply / silent path**: a supply that is dark itself with most of its
           dependants, or an MQTT connection most of whose devices fell silent together, gets one
           ticket ("supply lost or supply meter dark" / "shared path silent") explaining them;
        4. muting (maintenance windows, silences), then ticket-driven suppression (someone is
           working on the asset in the same trade);
        5. **same asset**: while the asset has an active ticket of a graver priority from another
           rule, the alert is a symptom on it.
        """
        tickets: list[TicketEvent] = []
        # A root cause may be decided after the alerts that wait for it (they came first): one more
        # pass over those still waiting explains them in this evaluation, not the next.
        for _ in range(2):
            held, self._held = self._held, []
            opened = len(tickets)
            for ev in held:
                spec = self._specs[ev.rule]
                if spec.ticket is None:
                    continue
                if ev.state == "firing":
                    decided = self._decide_firing(ev, spec, now)
                    if decided is None:
                        self._held.append(ev)
                        continue
                    tickets += decided
                else:
                    tickets += self._on_alert(ev, spec.ticket)
            if not self._held or len(tickets) == opened:
                break
        tickets += self._inferred_back(now)
        return tickets

    def _on_alert(self, ev: AlertEvent, policy: TicketPolicy) -> list[TicketEvent]:
        view = TicketPolicyView(policy.priority, policy.skill, policy.auto_resolve)
        asset = self.assets.get(ev.asset)
        return self.desk.on_alert(ev, view, asset.where if asset else self.path_names.get(ev.asset, ""))

    def _decide_firing(self, ev: AlertEvent, spec: RuleSpec, now: float) -> list[TicketEvent] | None:
        """Ticket events for one firing alert, or None: wait for its peers to show their state."""
        policy = spec.ticket
        assert policy is not None
        if self.desk.open_ticket_for(ev.fingerprint) is not None:
            return self._on_alert(ev, policy)
        out: list[TicketEvent] = []
        cause = self._known_cause(ev.asset)
        if spec.life_safety:
            cause = cause or self._inferred_cause(ev, spec, now, out)
            asset = self.assets[ev.asset]
            reason = self.mute.mutes(ev.rule, asset, ev.ts, life_safety=True) if self.mute else None
            if reason is not None:
                log.warning("life-safety alert %s on %s muted: %s", ev.rule, ev.asset, reason)
                self.metrics.alerts_muted.labels(reason.split()[0]).inc()
                return out
            out += self._on_alert(ev, policy)
            if cause is not None:
                out += self._link(self.desk.tickets[out[-1].ticket], cause, now)
            return out
        if cause is None and (fact := self._remote_cause(ev.asset)) is not None:
            return self._explained_remotely(ev, fact)
        if cause is None:
            if self._waits(ev, spec, now):
                return None
            cause = self._inferred_cause(ev, spec, now, out)
        if cause is not None:
            return [*out, self.desk.explain(cause, ev, now)]
        reason = self.mute.mutes(ev.rule, self.assets[ev.asset], ev.ts) if self.mute else None
        if reason is not None:
            log.info("alert %s on %s recorded but muted: %s", ev.rule, ev.asset, reason)
            self.metrics.alerts_muted.labels(reason.split()[0]).inc()
            return []
        work = self.desk.in_progress_on(ev.asset, policy.skill)
        if work is not None:  # a technician is on it: add to their ticket, tell nobody
            return [self.desk.explain(work, ev, now)]
        graver = self._graver_incident(ev.asset, ev.rule, policy.priority)
        if graver is not None:
            return [self.desk.symptom(graver, ev, now)]
        return self._on_alert(ev, policy)

    def _known_cause(self, asset: str) -> Ticket | None:
        """The active ticket of a cause upstream of ``asset``: a root-cause rule's, or an inferred one."""
        root, _pending = self._root_cause(asset)
        if root is not None:
            return root
        for subject in [asset, *self.ancestors.get(asset, ()), self.paths.get(asset, "")]:
            for rule in (SUPPLY_DARK, PATH_SILENT):
                if subject and (t := self.desk.open_ticket_for(fingerprint(rule, subject))) is not None:
                    return t
        return None

    def _remote_cause(self, asset: str) -> Fact | None:
        """A supply of ``asset`` owned by another shard whose owner has a ticket explaining it."""
        return next(
            (f for up in self.ancestors.get(asset, ()) if (f := self.remote.get(up)) and f.ticket), None
        )

    def _explained_remotely(self, ev: AlertEvent, fact: Fact) -> list[TicketEvent]:
        """No ticket here: the owner of the supply has it, and is told to note this alert on it."""
        log.info(
            "alert %s on %s explained by %s on shard %d (%s)",
            ev.rule,
            ev.asset,
            fact.ticket,
            fact.shard,
            fact.asset,
        )
        for tell in self.remote_explained:
            tell(ev, fact)
        return []

    def cause_ticket(self, asset: str) -> Ticket | None:
        """The active ticket on ``asset`` that explains what depends on it: a root-cause rule's or a
        dark supply's (what another shard's dependants are explained by)."""
        rules = [SUPPLY_DARK, *(rule for rule, _key, _row in self._roots_of(asset))]
        return next((t for rule in rules if (t := self.desk.open_ticket_for(fingerprint(rule, asset)))), None)

    def root_causes_firing(self, asset: str) -> tuple[str, ...]:
        """The root-cause rules pending or firing on ``asset``."""
        return tuple(
            rule
            for rule, key, row in self._roots_of(asset)
            if self.tracker.state_of(key, row) in (PENDING, FIRING)
        )

    def _roots_of(self, asset: str) -> list[tuple[str, str, int]]:
        """(rule id, rule key, row) of every root-cause rule watching ``asset``."""
        return [
            (self._root_keys[key], key, row)
            for key, row in self.topology.watched_by.get(asset, ())
            if key in self._root_keys
        ]

    def _inferred_cause(
        self, ev: AlertEvent, spec: RuleSpec, now: float, out: list[TicketEvent]
    ) -> Ticket | None:
        """Open the ticket of a dark supply (first) or a silent path that explains ``ev``, if due."""
        verdict = self.topology.dark_supply(ev.asset, now)
        if verdict is not None:
            policy_of = self._supply_policy(verdict.subject, spec)
            return self._open_inferred(SUPPLY_DARK, verdict, policy_of, now, out)
        if _is_silence(spec) and (verdict := self.topology.silent_path(ev.asset, now)) is not None:
            return self._open_inferred(PATH_SILENT, verdict, spec, now, out)
        return None

    def _waits(self, ev: AlertEvent, spec: RuleSpec, now: float) -> bool:
        """Whether ``ev`` must wait: a root cause pending upstream, or a peer not yet heard from."""
        _root, pending = self._root_cause(ev.asset)
        # A supply of another shard that is dark or at fault, its owner not yet decided: wait for it.
        pending |= any(
            not f.decided() for up in self.ancestors.get(ev.asset, ()) if (f := self.remote.get(up))
        )
        if pending and now - ev.ts < INHIBIT_WAIT:
            return True
        settle = self.settle.get(ev.asset, 0.0)
        return now - ev.ts < INHIBIT_WAIT and self.topology.undecided(
            ev.asset, ev.since, now, settle, _is_silence(spec)
        )

    def _supply_policy(self, supply: str, spec: RuleSpec) -> RuleSpec:
        """Whose trade a dark supply is: the gravest root-cause rule watching it, else the alert's."""
        watching = [r.spec for r in self._root_rules if supply in r.assets and r.spec.ticket is not None]
        return min(watching, key=lambda s: s.ticket.priority if s.ticket else "P9", default=spec)

    def _open_inferred(
        self, rule: str, verdict: Verdict, like: RuleSpec, now: float, out: list[TicketEvent]
    ) -> Ticket:
        """Open the ticket of an inferred cause (with the trade and priority of ``like``'s policy)."""
        assert like.ticket is not None
        _ = translator(self.locale)
        if rule == SUPPLY_DARK:
            name = self.assets[verdict.subject].label
            summary = _("{name}: supply lost or supply meter dark").format(name=name)
        else:
            name = self.path_names.get(verdict.subject, verdict.subject)
            summary = _("{name}: every device behind it fell silent (broker or connection lost)").format(
                name=name
            )
        counts = {"down": len(verdict.down), "total": verdict.total, "normal": len(verdict.normal)}
        summary += _(" — {down} of {total} silent or faulted with it").format(**counts)
        if verdict.normal:
            summary += _(", {normal} still normal").format(**counts)
        alert = AlertEvent(now, rule, verdict.subject, "firing", like.severity, verdict.since, summary)
        opened = self._on_alert(alert, like.ticket)
        out += opened
        ticket = self.desk.tickets[opened[-1].ticket]
        out += self._link_life_safety(ticket, now)
        return ticket

    def _inferred_back(self, now: float) -> list[TicketEvent]:
        """Resolve inferred tickets whose supply answers again, or whose path's devices mostly do."""
        out: list[TicketEvent] = []
        for t in list(self.desk.live.values()):
            if not t.active or t.rule not in (SUPPLY_DARK, PATH_SILENT):
                continue
            if t.rule == SUPPLY_DARK:
                back = not self.topology.offline(t.asset, now) if t.asset in self.assets else True
            else:
                devices = self.topology.behind.get(t.asset, ())
                back = 2 * sum(self.topology.offline(d, now) for d in devices) <= len(devices)
            if back:
                alert = AlertEvent(now, t.rule, t.asset, "resolved", "major", t.since, t.summary)
                view = TicketPolicyView(t.priority, t.category, True)
                out += self.desk.on_alert(alert, view, t.location)
        return out

    def _link(self, safety: Ticket, cause: Ticket, now: float) -> list[TicketEvent]:
        return self.desk.link(safety, cause, now, "life-safety incident during an upstream incident")

    def _link_life_safety(self, cause: Ticket, now: float) -> list[TicketEvent]:
        """Link a newly opened cause to the active life-safety tickets of what it explains."""
        topo = self.topology
        below = set(topo.dependants.get(cause.asset, ())) | set(topo.behind.get(cause.asset, ()))
        out: list[TicketEvent] = []
        for t in list(self.desk.live.values()):
            if t.active and t.asset in below and self._specs.get(t.rule, _PLAIN).life_safety:
                out += self._link(t, cause, now)
        return out

    def _graver_incident(self, asset: str, rule: str, priority: str) -> Ticket | None:
        """An active ticket on ``asset`` from another rule with a graver priority (P1 < P2 < ...)."""
        graver = [
            t
            for t in self.desk.live.values()
            if t.asset == asset and t.active and t.rule != rule and t.priority < priority
        ]
        return min(graver, key=lambda t: (t.priority, t.opened_at), default=None)

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
                summary=self._summary(rule, rule.assets[tr.index], recovered=tr.state == "resolved"),
            )
            for rule, tr in changes
        ]
        self._held += alerts
        tickets: list[TicketEvent] = []
        if self.tickets_ready:
            tickets = self.decide_tickets(now)
            # What this evaluation changed, for the steps that follow (a shard's facts).
            self.touched = {ev.asset for ev in alerts} | {t.asset for t in tickets}
            for step in self.clock_steps:
                tickets += step(now)
        self.road.emit(alerts, tickets)
        return alerts, tickets

    def _summary(
        self, rule: CompiledRule, asset_id: str, *, recovered: bool = False, locale: str | None = None
    ) -> str:
        catalog = translations(locale or self.locale)
        _ = catalog.gettext
        asset = self.assets[asset_id]
        # A pack's summary is a msgid of the catalogs; a site's own rule may write it in its language.
        template = _(rule.spec.summary) if rule.spec.summary else f"{rule.spec.id} on {{asset.name}}"
        values = {k: v for k, (v, _ts, _q) in self.state.latest(asset_id).items()}
        if recovered:  # the firing text would describe a fault that is over: say so, with the readings now
            read = sorted(rule.when.points | (rule.clear.points if rule.clear else set()))
            now = ", ".join(f"{p} {{{p}:.4g}}" for p in read)
            template = _("recovered; now {readings}").format(readings=now) if read else _("recovered")
        params = {**rule.spec.params, **asset.params}  # the rule's defaults, the asset's overrides
        # A coded value's name ({door:name}) is a msgid with its point as context: a door's "open"
        # and a safety circuit's "open" are different words in Chinese.
        states = {
            point: {code: catalog.pgettext(point, name) for code, name in names.items()}
            for point, names in self.point_states.get(asset_id, {}).items()
        }
        return render(template, asset, values, states, params)

    def summary_in(self, ticket: Ticket, locale: str) -> str | None:
        """A ticket's summary in another language, filled with the asset's values now (for a person
        whose language is not the site's); None for a ticket no rule of this pipeline wrote."""
        for rule in self.engine.rules:
            if rule.spec.id == ticket.rule and ticket.asset in rule.assets:
                return self._summary(rule, ticket.asset, locale=locale)
        return None
