"""Maintenance tickets, event-sourced: one ticket per incident.

Fifth stage. ``TicketDesk.on_alert`` turns alert events into ticket events:
a firing alert opens a ticket, or appends to the one already active for the
same alert; a resolved alert resolves its ticket when the rule's policy says
so. People move tickets along ``open → acknowledged → in_progress → resolved
→ closed`` (or ``cancelled``) with ``TicketDesk.act``. Every change is a
``TicketEvent`` with who, when and a note, written to the store; the current
state is the fold of those events (``TicketDesk.apply``), so a restart
rebuilds it.

Beyond one alert, one ticket (rules of inference in docs/incidents.md): an
alert may be ``explained`` on an upstream root cause's ticket, noted as a
``symptom`` on the open ticket of a graver incident of the same asset, and two
tickets may be ``linked`` (a life-safety ticket and the outage behind it, both
ways). A re-fire within the reopen window after an automatic resolve
``recurred``: the same ticket, open again, its repeat count up and marked
flapping, but no new page; only a re-fire after a person resolved it
(``reopened``) or after the window (a new ticket) is news.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from monitord.alerting.tracker import AlertEvent, fingerprint
from monitord.core.i18n import N_, Worded
from monitord.tickets.forms import LOW_SATISFACTION, RepairRequest
from monitord.tickets.sla import Sla

EventKind = Literal[
    "opened",
    "appended",
    "flapping",
    "explained",
    "acknowledged",
    "started",
    "commented",
    "assigned",
    "escalated",
    "resolved",
    "closed",
    "cancelled",
    "reopened",
    "recurred",
    "symptom",
    "linked",
    "breached",
    "undelivered",
    # the duty desk's own (docs/desk.md): a resident's request, the follow-up call, complaints
    "reported",  # a resident's report of what an active ticket already is: on it, not a ticket of its own
    "followed_up",
    "complained",
    "complaint_closed",
    "complaint_dismissed",
]
Source = Literal["alert", "request"]
TicketState = Literal["open", "acknowledged", "in_progress", "resolved", "closed", "cancelled"]
ACTIVE: frozenset[str] = frozenset({"open", "acknowledged", "in_progress"})
#: What a person may do, and in which states: action → (event, new state, allowed from).
ACTIONS: dict[str, tuple[EventKind, TicketState | None, frozenset[str]]] = {
    "ack": ("acknowledged", "acknowledged", frozenset({"open"})),
    "start": ("started", "in_progress", frozenset({"open", "acknowledged"})),
    "comment": ("commented", None, ACTIVE | {"resolved"}),
    "assign": ("assigned", None, ACTIVE),
    "resolve": ("resolved", "resolved", ACTIVE),
    "close": ("closed", "closed", frozenset({"resolved"})),
    "cancel": ("cancelled", "cancelled", ACTIVE),
}
#: Every state: complaints may come at any time, after the close too.
ANY_STATE: frozenset[str] = ACTIVE | {"resolved", "closed", "cancelled"}
#: ``WO-<site code>-YYYYMMDD-NNNN``; ids from before site codes (``WO-YYYYMMDD-NNNN``) still parse, so
#: a restored desk keeps them and numbers on from them (docs/storage.md#ticket-ids).
_ID = re.compile(r"^WO-(?:(.+)-)?(\d{8})-(\d{4,})$")
#: What the desk tells people, in one place (for the message catalogs).
TEXT = {
    "state": N_("{ticket} is {state}: cannot {what}"),
    "satisfaction": N_("satisfaction must be 1 to 5"),
    "contact": N_("say whom you called (contact): this ticket has no reporter"),
    "complaint_closed": N_("{ticket} complaint {ref} is already closed"),
    "no_follow_up": N_("no follow-up within {hours:g} h of the fix: closed without one"),
    "unknown_action": N_("unknown action {action!r}; one of {actions}"),
    "assignee": N_("assign needs an assignee"),
}
#: What a person asked for, as the refusal of a ticket's state names it (``TEXT["state"]``'s ``what``).
WHAT = {
    "report": N_("add a report"),
    "follow_up": N_("follow up"),
    "complain": N_("log a complaint"),
    "close_complaint": N_("close a complaint"),
}


@dataclass(frozen=True, slots=True)
class TicketEvent:
    ts: float
    ticket: str
    key: str  # idempotency key: alert fingerprint + incident start
    event: EventKind
    state: TicketState
    asset: str
    rule: str
    priority: str
    category: str
    summary: str
    location: str = ""
    since: float = 0.0
    actor: str = "monitord"
    note: str = ""
    assignee: str = ""
    level: int = 0  # escalation level this event concerns (0: the on-call person)
    # "explained": the dependant's alert this incident explains (its asset, rule, since when)
    alert_asset: str = ""
    alert_rule: str = ""
    alert_since: float = 0.0
    source: Source = "alert"  # who opened the ticket: an alert, or a dispatcher for a resident (报修)
    # "opened" of a request: the resident who reported it (the phone is masked wherever it is logged)
    reporter: str = ""
    phone: str = ""
    contact: str = ""  # "followed_up": the person called; "complained": the complainant
    satisfaction: int = 0  # "followed_up": 1 (very unhappy) to 5
    ref: str = ""  # the complaint an event concerns (C1, C2, ... per ticket)


@dataclass(frozen=True, slots=True)
class Explained:
    """A dependant's alert noted on a root-cause ticket instead of a ticket of its own."""

    asset: str
    rule: str
    since: float
    summary: str


_NOTE = re.compile(r"^(?P<asset>[^:]+): (?P<summary>.*) \((?P<rule>[^()]+)\)$")


def explained_of(ev: TicketEvent) -> Explained:
    """What an "explained" event absorbed; events stored before the fields existed keep it in the note."""
    if ev.alert_asset:
        summary = ev.note.removeprefix(f"{ev.alert_asset}: ").removesuffix(f" ({ev.alert_rule})")
        return Explained(ev.alert_asset, ev.alert_rule, ev.alert_since, summary)
    m = _NOTE.match(ev.note)
    if m is None:
        return Explained("", "", ev.ts, ev.note)
    return Explained(m["asset"], m["rule"], ev.ts, m["summary"])


@dataclass(frozen=True, slots=True)
class FollowUp:
    """回访: who called whom, when, how satisfied (1–5), and what was said."""

    by: str
    contact: str
    at: float
    satisfaction: int
    note: str


@dataclass(slots=True)
class Complaint:
    """投诉 about a ticket: who complained, about what, when; closed with a resolution, or dismissed
    as not valid (it then leaves the 有效投诉 count)."""

    id: str
    by: str  # the complainant
    logged_by: str  # the dispatcher who took it
    at: float
    text: str
    closed_at: float | None = None
    closed_by: str = ""
    resolution: str = ""
    valid: bool = True


class TicketActionError(Worded, ValueError):
    """A person asked for a transition the ticket's state does not allow (``what`` they asked for is
    said in their words too)."""

    translated = ("what",)


class NoSuchTicket(KeyError):
    """A person named a ticket (or a complaint on it: ``ticket/C1``) the desk does not have."""


class TicketInputError(TicketActionError):
    """A person's action the state allows, given with something missing or out of range."""


@dataclass
class Ticket:
    id: str
    key: str
    asset: str
    rule: str
    priority: str
    category: str
    summary: str
    location: str
    since: float
    opened_at: float
    state: TicketState = "open"
    updated_at: float = 0.0
    alert_count: int = 1
    assignee: str = ""
    level: int = 0
    acknowledged_at: float | None = None
    explained: list[str] = field(default_factory=list)  # dependants' alerts this incident explains
    explains: list[Explained] = field(default_factory=list)  # the same, as asset, rule, since
    breached: list[str] = field(default_factory=list)  # SLA clocks missed: ack, start, resolve
    repeats: int = 0  # times the same alert came back within the reopen window
    flapping: bool = False  # it went in and out: the tracker said so, or it recurred after a resolve
    symptoms: list[str] = field(default_factory=list)  # lesser alerts of this asset during the incident
    links: list[str] = field(default_factory=list)  # "<ticket id>: why" of tickets linked to this one
    started_at: float | None = None
    resolved_at: float | None = None
    closed_at: float | None = None
    source: Source = "alert"
    reporter: str = ""
    phone: str = ""
    follow_up: FollowUp | None = None  # the 回访 call that closed it; None: closed without one, or open
    complaints: list[Complaint] = field(default_factory=list)
    events: list[TicketEvent] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def low_satisfaction(self) -> bool:
        """Flag for the dispatcher: the follow-up call found the resident unhappy (≤ 2 of 5)."""
        return self.follow_up is not None and self.follow_up.satisfaction <= LOW_SATISFACTION


@dataclass(frozen=True)
class TicketPolicyView:
    """The part of a rule's ticket policy the desk needs."""

    priority: str
    category: str
    auto_resolve: bool


class TicketDesk:
    def __init__(self, code: str = "") -> None:
        """``code``: the site's short code in new ticket ids, so that sites sharing one store never
        hand out the same id; empty: the single-site form ``WO-YYYYMMDD-NNNN``."""
        self.code = code
        self.tickets: dict[str, Ticket] = {}
        self._open_by_alert: dict[str, str] = {}  # alert fingerprint → ticket id
        self._last_by_alert: dict[str, str] = {}  # alert fingerprint → its latest ticket, any state
        # Tickets not yet closed or cancelled: the only ones clocks and escalation look at, so the
        # per-evaluation checks do not grow with the whole history.
        self.live: dict[str, Ticket] = {}
        self.reopen_window = 3600.0  # a re-fire this soon after resolution is the same incident
        self._last_number: dict[str, int] = {}  # YYYYMMDD → highest number used, with a code or without

    def forget(self) -> None:
        """Drop every ticket (an HA instance that acted, stood by, and now restores them afresh)."""
        window = self.reopen_window
        self.__init__()  # type: ignore[misc]
        self.reopen_window = window

    def restore(self, events: Iterable[TicketEvent]) -> None:
        # Events of one evaluation share a timestamp, and a store may return ties in any order:
        # a ticket's opening comes first, whatever else happened to it in the same instant.
        for ev in sorted(events, key=lambda e: (e.ts, e.event != "opened")):
            self.apply(ev)

    def apply(self, ev: TicketEvent) -> None:
        """Fold one event into the current state (live and on restore alike)."""
        fp = ev.key.split("@", 1)[0]
        t = self.tickets.get(ev.ticket)
        if t is None:
            t = Ticket(
                id=ev.ticket,
                key=ev.key,
                asset=ev.asset,
                rule=ev.rule,
                priority=ev.priority,
                category=ev.category,
                summary=ev.summary,
                location=ev.location,
                since=ev.since,
                opened_at=ev.ts,
                alert_count=0,
                source=ev.source,
                reporter=ev.reporter,
                phone=ev.phone,
            )
            self.tickets[ev.ticket] = t
            if m := _ID.match(ev.ticket):
                day, number = m.group(2), int(m.group(3))
                self._last_number[day] = max(self._last_number.get(day, 0), number)
        if ev in t.events:
            return  # the very same event twice (retry, second instance): lands once
        t.events.append(ev)
        t.state, t.updated_at = ev.state, ev.ts
        if ev.event in ("opened", "appended", "reopened", "recurred"):
            t.alert_count += ev.source == "alert"  # a resident's request is no alert
            t.summary = ev.summary
        if ev.event in ("reopened", "recurred"):
            t.repeats += 1
            t.resolved_at = None
            t.flapping |= ev.event == "recurred"
        elif ev.event == "flapping":
            t.flapping = True
        elif ev.event == "symptom":
            t.symptoms.append(ev.note)
        elif ev.event == "linked":
            t.links.append(ev.note)
        elif ev.event == "acknowledged":
            t.acknowledged_at = ev.ts
        elif ev.event == "started":
            t.started_at = ev.ts
        elif ev.event == "resolved":
            t.resolved_at = ev.ts
        elif ev.event == "closed":
            t.closed_at = ev.ts
        elif ev.event == "reported":
            if not t.reporter:  # the 回访 call goes to the first resident who reported it
                t.reporter, t.phone = ev.reporter, ev.phone
        elif ev.event == "followed_up":
            t.closed_at = ev.ts
            t.follow_up = FollowUp(ev.actor, ev.contact, ev.ts, ev.satisfaction, ev.note)
        elif ev.event == "complained":
            t.complaints.append(Complaint(ev.ref, ev.contact, ev.actor, ev.ts, ev.note))
        elif ev.event in ("complaint_closed", "complaint_dismissed"):
            for c in t.complaints:
                if c.id == ev.ref:
                    c.closed_at, c.closed_by, c.resolution = ev.ts, ev.actor, ev.note
                    c.valid = ev.event == "complaint_closed"
        elif ev.event == "breached":
            t.breached.append(ev.note)
        elif ev.event == "explained":
            t.explained.append(ev.note)
            t.explains.append(explained_of(ev))
        elif ev.event == "escalated":
            t.level = max(t.level, ev.level)
        if ev.assignee:
            t.assignee = ev.assignee
        if ev.event in ("opened", "reopened", "recurred"):
            # The alert's latest ticket; a later note on an older one (a complaint) must not replace it.
            self._last_by_alert[fp] = t.id
        if t.state in ("closed", "cancelled"):
            self.live.pop(t.id, None)
        else:
            self.live[t.id] = t
        if t.active:
            self._open_by_alert[fp] = t.id
        elif self._open_by_alert.get(fp) == t.id:
            del self._open_by_alert[fp]

    def _new_id(self, ts: float) -> str:
        day = time.strftime("%Y%m%d", time.localtime(ts))
        number = self._last_number.get(day, 0) + 1
        self._last_number[day] = number
        return f"WO-{self.code}-{day}-{number:04d}" if self.code else f"WO-{day}-{number:04d}"

    def open_ticket_for(self, alert_fingerprint: str) -> Ticket | None:
        tid = self._open_by_alert.get(alert_fingerprint)
        return self.tickets[tid] if tid else None

    def open_ticket_for_rule(self, rule: str, asset: str) -> Ticket | None:
        """The active ticket of one rule on one asset (by its alert fingerprint)."""
        return self.open_ticket_for(fingerprint(rule, asset))

    def on_alert(self, alert: AlertEvent, policy: TicketPolicyView, location: str) -> list[TicketEvent]:
        """Ticket events caused by one alert event (already applied)."""
        current = self.open_ticket_for(alert.fingerprint)
        if alert.state == "flapping":
            if current is None:
                return []
            ev = self._event(alert, current.id, current.key, "flapping", current.state, policy, location)
        elif alert.state == "firing":
            if current is not None:
                ev = self._event(alert, current.id, current.key, "appended", current.state, policy, location)
            elif (last := self._recently_resolved(alert.fingerprint, alert.ts)) is not None:
                # Back after monitord resolved it: the same incident going in and out, already told.
                # Back after a person resolved it: the fix did not hold, which is news.
                kind: EventKind = "recurred" if self._resolved_by_monitord(last) else "reopened"
                ev = self._event(alert, last.id, last.key, kind, "open", policy, location)
            else:
                key = f"{alert.fingerprint}@{alert.since:.3f}"
                ev = self._event(alert, self._new_id(alert.ts), key, "opened", "open", policy, location)
        elif current is not None and policy.auto_resolve:
            ev = self._event(alert, current.id, current.key, "resolved", "resolved", policy, location)
        else:
            return []
        return [ev]

    def _event(
        self,
        alert: AlertEvent,
        ticket: str,
        key: str,
        kind: EventKind,
        state: TicketState,
        policy: TicketPolicyView,
        location: str,
    ) -> TicketEvent:
        # The ticket as this alert describes it: what the event is about, for the one builder.
        about = Ticket(
            id=ticket,
            key=key,
            asset=alert.asset,
            rule=alert.rule,
            priority=policy.priority,
            category=policy.category,
            summary=alert.summary,
            location=location,
            since=alert.since,
            opened_at=alert.ts,
        )
        return self._record(about, kind, state, alert.ts)

    def act(
        self, ticket_id: str, action: str, *, actor: str, now: float, note: str = "", assignee: str = ""
    ) -> TicketEvent:
        """A person's action on a ticket; raises ``TicketActionError`` when the state forbids it."""
        if ticket_id not in self.tickets:
            raise NoSuchTicket(ticket_id)
        if action not in ACTIONS:
            raise TicketActionError(TEXT["unknown_action"], action=action, actions=", ".join(ACTIONS))
        kind, new_state, allowed = ACTIONS[action]
        t = self._person_may(ticket_id, action, allowed)
        if action == "assign" and not assignee:
            raise TicketActionError(TEXT["assignee"])
        return self._record(t, kind, new_state or t.state, now, actor=actor, note=note, assignee=assignee)

    def _recently_resolved(self, fingerprint: str, now: float) -> Ticket | None:
        tid = self._last_by_alert.get(fingerprint)
        t = self.tickets.get(tid) if tid else None
        if t is None or t.state != "resolved" or t.resolved_at is None:
            return None
        return t if now - t.resolved_at <= self.reopen_window else None

    @staticmethod
    def _resolved_by_monitord(t: Ticket) -> bool:
        last = next((e for e in reversed(t.events) if e.event == "resolved"), None)
        return last is not None and last.actor == "monitord"

    def check_clocks(self, now: float, sla_of: Callable[[str], Sla], follow_up: float) -> list[TicketEvent]:
        """SLA breaches (each clock once) and the automatic follow-up close (回访) of resolved tickets."""
        out = []
        for t in list(self.live.values()):
            if t.active:
                sla = sla_of(t.priority)
                for clock, due, met in (
                    ("ack", sla.ack, t.acknowledged_at),
                    ("start", sla.start, t.started_at),
                    ("resolve", sla.resolve, t.resolved_at),
                ):
                    if clock not in t.breached and met is None and now > t.opened_at + due:
                        out.append(self._record(t, "breached", t.state, now, note=clock))
            elif t.state == "resolved" and t.resolved_at is not None and now - t.resolved_at >= follow_up:
                # Nobody called back within the window: closed, and counted against the 回访率.
                note = TEXT["no_follow_up"].format(hours=follow_up / 3600)
                out.append(self._record(t, "closed", "closed", now, actor="monitord (follow-up)", note=note))
        return out

    def in_progress_on(self, asset: str, category: str) -> Ticket | None:
        """A ticket someone is working on for this asset and category (ticket-driven suppression)."""
        return next(
            (
                t
                for t in self.tickets.values()
                if t.asset == asset and t.category == category and t.state == "in_progress"
            ),
            None,
        )

    def explain(self, root: Ticket, alert: AlertEvent, now: float | None = None) -> TicketEvent:
        """A dependant's alert explained by a root-cause incident: noted on the root's ticket, at the
        time of the decision ``now`` (a held alert is decided later than it fired), never before the
        root's ticket opened; the alert's own start is in ``alert_since``."""
        note = f"{alert.asset}: {alert.summary} ({alert.rule})"
        at = max(alert.ts if now is None else now, root.opened_at)
        return self._record(root, "explained", root.state, at, note=note, about=alert)

    def symptom(self, incident: Ticket, alert: AlertEvent, now: float | None = None) -> TicketEvent:
        """A lesser alert of the same asset during an open incident: noted on its ticket (``now``:
        when decided)."""
        began = time.strftime("%H:%M:%S", time.localtime(alert.since))
        note = f"{alert.asset}: {alert.summary} ({alert.rule}, since {began})"
        return self._record(incident, "symptom", incident.state, max(alert.ts, now or 0.0), note=note)

    def link(self, a: Ticket, b: Ticket, now: float, why: str) -> list[TicketEvent]:
        """Link two tickets both ways (each event names the other ticket); once per pair."""
        out = []
        for this, other in ((a, b), (b, a)):
            if not any(n.split(":", 1)[0] == other.id for n in this.links):
                out.append(self._record(this, "linked", this.state, now, note=f"{other.id}: {why}"))
        return out

    def escalate(self, t: Ticket, level: int, now: float, note: str) -> TicketEvent:
        return self._record(t, "escalated", t.state, now, note=note, level=level)

    def undelivered(self, t: Ticket, now: float, note: str, level: int) -> TicketEvent:
        """A page the outbox gave up on, shown on its ticket: who, which channel, why."""
        return self._record(t, "undelivered", t.state, now, actor="monitord (notify)", note=note, level=level)

    def _record(
        self,
        t: Ticket,
        kind: EventKind,
        state: TicketState,
        now: float,
        *,
        actor: str = "monitord",
        note: str = "",
        assignee: str = "",
        level: int = 0,
        about: AlertEvent | None = None,
        contact: str = "",
        satisfaction: int = 0,
        ref: str = "",
        reporter: str = "",
        phone: str = "",
    ) -> TicketEvent:
        """The one place a ``TicketEvent`` is built (and applied): about ``t``, its ticket (the
        reporter and phone: the ticket's on a request's opening, else those given)."""
        ev = TicketEvent(
            ts=now,
            ticket=t.id,
            key=t.key,
            event=kind,
            state=state,
            asset=t.asset,
            rule=t.rule,
            priority=t.priority,
            category=t.category,
            summary=t.summary,
            location=t.location,
            since=t.since,
            actor=actor,
            note=note,
            assignee=assignee,
            level=level,
            alert_asset=about.asset if about else "",
            alert_rule=about.rule if about else "",
            alert_since=about.since if about else 0.0,
            source=t.source,
            reporter=t.reporter if kind == "opened" else reporter,
            phone=t.phone if kind == "opened" else phone,
            contact=contact,
            satisfaction=satisfaction,
            ref=ref,
        )
        self.apply(ev)
        return ev

    # -- the duty desk: 报修, 回访, 投诉 (docs/desk.md) ---------------------------------------------

    def open_request(self, req: RepairRequest, *, actor: str, now: float) -> TicketEvent:
        """A resident's repair request (报修), opened by a dispatcher: a ticket like an alert's, in the
        same queue, for the roster's ``trade`` skill; its key names no alert."""
        tid = self._new_id(now)
        about = Ticket(
            id=tid,
            key=f"request:{tid}",
            asset="",
            rule="",
            priority=req.priority,
            category=req.trade,
            summary=req.description,
            location=req.location,
            since=now,
            opened_at=now,
            source="request",
            reporter=req.reporter,
            phone=req.phone,
        )
        return self._record(about, "opened", "open", now, actor=actor)

    def add_report(self, ticket_id: str, req: RepairRequest, *, actor: str, now: float) -> TicketEvent:
        """A resident reports what an active ticket already is (the lift the monitoring found stuck):
        the report goes on that ticket — one incident, one ticket, one page — and its reporter is the
        one the 回访 call goes to if the ticket had none."""
        t = self._person_may(ticket_id, WHAT["report"], ACTIVE)
        where = req.location
        note = f"{where}: {req.description}" if where else req.description
        return self._record(
            t, "reported", t.state, now, actor=actor, note=note, reporter=req.reporter, phone=req.phone
        )

    def follow_up(
        self, ticket_id: str, *, actor: str, contact: str, satisfaction: int, note: str, now: float
    ) -> TicketEvent:
        """The follow-up call (回访) on a resolved ticket; it closes the ticket. ``contact`` defaults to
        a request's reporter."""
        t = self._person_may(ticket_id, WHAT["follow_up"], frozenset({"resolved"}))
        if not 1 <= satisfaction <= 5:
            raise TicketInputError(TEXT["satisfaction"])
        whom = contact or t.reporter
        if not whom:
            raise TicketInputError(TEXT["contact"])
        return self._record(
            t, "followed_up", "closed", now, actor=actor, note=note, contact=whom, satisfaction=satisfaction
        )

    def complain(self, ticket_id: str, *, actor: str, complainant: str, text: str, now: float) -> TicketEvent:
        """A complaint (投诉) about a ticket, in whatever state it is; numbered C1, C2, ... per ticket."""
        t = self._person_may(ticket_id, WHAT["complain"], ANY_STATE)
        ref = f"C{len(t.complaints) + 1}"
        return self._record(
            t, "complained", t.state, now, actor=actor, note=text, contact=complainant, ref=ref
        )

    def close_complaint(
        self, ticket_id: str, ref: str, *, actor: str, resolution: str, valid: bool, now: float
    ) -> TicketEvent:
        """A complaint closed with its resolution (办结), or dismissed as not valid (``valid=False``)."""
        t = self._person_may(ticket_id, WHAT["close_complaint"], ANY_STATE)
        c = next((c for c in t.complaints if c.id == ref), None)
        if c is None:
            raise NoSuchTicket(f"{ticket_id}/{ref}")
        if c.closed_at is not None:
            raise TicketActionError(TEXT["complaint_closed"], ticket=ticket_id, ref=ref)
        kind: EventKind = "complaint_closed" if valid else "complaint_dismissed"
        return self._record(t, kind, t.state, now, actor=actor, note=resolution, ref=ref)

    def _person_may(self, ticket_id: str, what: str, allowed: frozenset[str]) -> Ticket:
        """The ticket a person acts on: ``KeyError`` if there is none, ``TicketActionError`` if its
        state does not allow ``what``."""
        t = self.tickets.get(ticket_id)
        if t is None:
            raise NoSuchTicket(ticket_id)
        if t.state not in allowed:
            raise TicketActionError(TEXT["state"], ticket=ticket_id, state=t.state, what=what)
        return t

    def open_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tickets.values():
            if t.active:
                counts[t.priority] = counts.get(t.priority, 0) + 1
        return counts
