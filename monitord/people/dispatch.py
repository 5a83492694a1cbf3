"""From tickets to people: who is told, and when nobody answers or a page fails, who next.

Listens to ticket events: an opened (or reopened) ticket goes to the on-call
person for its skill. ``check`` runs with every evaluation: a ticket nobody
acknowledged within its priority's ack SLA escalates one level (team lead,
then duty manager), again after each further SLA period, and stops at
acknowledgement, resolution or cancellation. A page the ``Outbox`` gave up on
becomes an ``undelivered`` ticket event, and when the person was reached on
no channel at all the ticket escalates to the next person at once. Each
escalation is a ticket event; each message goes through the outbox, keyed
so it is sent once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from monitord.core.assets import Asset
from monitord.core.i18n import DEFAULT, normalise, translator
from monitord.core.units import format_time
from monitord.people.messages import page_text
from monitord.people.notify import Notification, Outbox
from monitord.people.roster import Contact, Roster
from monitord.tickets.desk import Ticket, TicketDesk, TicketEvent
from monitord.tickets.sla import Sla

log = logging.getLogger(__name__)


def notification_key(t: Ticket, level: int, person: str, channel: str) -> str:
    """The idempotency key of one message: sent once per ticket episode, level, person and channel.

    A ticket a person resolved that comes back (``reopened``: the fix did not hold) is a new episode
    and pages again; the first episode keeps the plain key, so logs written before stay valid.
    """
    episode = sum(ev.event == "reopened" for ev in t.events)
    return f"{t.id}:{level}:{person}:{channel}" + (f"#{episode}" if episode else "")


class Dispatcher:
    def __init__(
        self,
        roster: Roster,
        desk: TicketDesk,
        outbox: Outbox,
        assets: Mapping[str, Asset],
        api_url: str,
        sla_of: Callable[[str], Sla],
        link: Callable[[str, str, float], str] | None = None,
        locale: str = DEFAULT,
        summary_in: Callable[[Ticket, str], str | None] | None = None,
    ) -> None:
        """``link(person, ticket, now)``: the signed page a message carries (None: none)."""
        self.roster, self.desk, self.outbox, self.sla_of = roster, desk, outbox, sla_of
        self.link = link
        self.assets, self.api_url = assets, api_url.rstrip("/")
        self.locale = normalise(locale)  # the site's; a person's own ``locale`` comes first
        self._ = translator(self.locale)  # ticket notes are in the site's language, like its summaries
        # The ticket's summary in another language than the site's (the rule's template filled again).
        self.summary_in = summary_in

    def on_ticket(self, ev: TicketEvent) -> None:
        if ev.event in ("opened", "reopened"):
            t = self.desk.tickets[ev.ticket]
            self._tell(t, 0, ev.ts, ev.event)

    def resend(self, now: float) -> int:
        """Page each unacknowledged ticket's current level again under the same keys (an HA takeover:
        the dead instance may have queued a page it never delivered); the outbox drops every key
        already sent. How many tickets were looked at."""
        waiting = [t for t in self.desk.live.values() if t.state == "open"]
        for t in waiting:
            self._tell(t, t.level, now, "opened" if t.level == 0 else "escalated")
        return len(waiting)

    def check(self, now: float) -> list[TicketEvent]:
        """Pages given up, then tickets whose acknowledgement is overdue: their ticket events."""
        out = self._undelivered(now)
        for t in list(self.desk.live.values()):
            if t.active and not t.assignee:  # the skill picked the team, the rotation picks the person
                person = self.roster.oncall(t.category, t.opened_at)
                if person is not None:
                    out.append(
                        self.desk.act(
                            t.id,
                            "assign",
                            actor="monitord (roster)",
                            now=now,
                            assignee=person.name,
                            note=self._("on call"),
                        )
                    )
            if t.state != "open":
                continue  # acknowledged, in progress, or finished: nobody needs chasing
            chain = self.roster.chain(t.category, t.opened_at)
            if t.level + 1 >= len(chain):
                continue
            ack = self.sla_of(t.priority).ack
            if now >= t.opened_at + ack * (t.level + 1):
                nxt = chain[t.level + 1]
                ev = self.desk.escalate(
                    t,
                    t.level + 1,
                    now,
                    self._("not acknowledged within {seconds}s: escalated to {name}").format(
                        seconds=f"{ack:.0f}", name=nxt.name
                    ),
                )
                out.append(ev)
                self._tell(t, t.level, now, "escalated")
        return out

    def _undelivered(self, now: float) -> list[TicketEvent]:
        """Show each page the outbox gave up on; page the next person if this one heard nothing."""
        out: list[TicketEvent] = []
        for u in self.outbox.undelivered():
            n = u.notification
            t = self.desk.tickets.get(n.ticket)
            if t is None:  # the store lost the ticket (tickets are restored before this runs)
                log.warning("undelivered notification %s: no ticket %s", n.key, n.ticket)
                self.outbox.settle(n.key)
                continue
            note = self._(
                "{channel} to {recipient} undelivered after {attempts} attempt(s) in {seconds}s: {error}"
            ).format(
                channel=n.channel,
                recipient=n.recipient,
                attempts=u.attempts,
                seconds=f"{u.waited:.0f}",
                error=u.error,
            )
            out.append(self.desk.undelivered(t, now, note, n.level))
            self.outbox.settle(n.key)
            # Escalate only while the ticket waits on this very person and no other channel got through.
            if t.state != "open" or n.level < t.level or self._reached(t, n.level):
                continue
            chain = self.roster.chain(t.category, t.opened_at)
            if n.level + 1 < len(chain):
                nxt = chain[n.level + 1]
                note = self._("{recipient} could not be reached on any channel: escalated to {name}").format(
                    recipient=n.recipient, name=nxt.name
                )
                out.append(self.desk.escalate(t, n.level + 1, now, note))
                self._tell(t, t.level, now, "escalated")
        return out

    def _reached(self, t: Ticket, level: int) -> bool:
        """Whether the person at ``level`` got, or may still get, this ticket's page on some channel."""
        chain = self.roster.chain(t.category, t.opened_at)
        if level >= len(chain):
            return False
        person = chain[level]
        keys = (notification_key(t, level, person.name, channel) for channel, _ in person.channels())
        return any(self.outbox.status(k) in ("sent", "pending") for k in keys)

    def _tell(self, t: Ticket, level: int, now: float, event: str) -> None:
        chain = self.roster.chain(t.category, t.opened_at)
        if level >= len(chain):
            return
        person = chain[level]
        for channel, address in self._channels(person):
            self.outbox.submit(self._message(t, person, channel, address, level, event, now))

    @staticmethod
    def _channels(person: Contact) -> list[tuple[str, str]]:
        return person.channels()

    def _message(
        self, t: Ticket, person: Contact, channel: str, address: str, level: int, event: str, now: float
    ) -> Notification:
        asset = self.assets.get(t.asset)
        name = asset.label if asset else t.asset
        locale = normalise(person.locale) if person.locale else self.locale
        summary = t.summary
        if locale != self.locale and self.summary_in is not None:
            summary = self.summary_in(t, locale) or t.summary
        ack_url = f"{self.api_url}/tickets/{t.id}/ack"
        link = self.link(person.name, t.id, now) if self.link else ""
        text = page_text(
            t,
            name=name,
            summary=summary,
            since=format_time(t.since, self.roster.tz),  # the site's zone, as on every screen
            level=level,
            event=event,
            ack_url=ack_url,
            locale=locale,
            link=link,
        )
        return Notification(
            key=notification_key(t, level, person.name, channel),
            channel=channel,
            address=address,
            recipient=person.name,
            ticket=t.id,
            event=event,
            priority=t.priority,
            asset=t.asset,
            asset_name=name,
            location=t.location,
            summary=summary,
            since=t.since,
            level=level,
            ack_url=ack_url,
            text=text,
            locale=locale,
            source=t.source,
            reporter=t.reporter,
            phone=t.phone,
            link=link,
        )
