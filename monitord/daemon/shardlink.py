"""The shards' wire: cross-shard facts and explained notes, riding the instance's fleet connection.

Daemon layer, beside ``shardfacts`` (what is said; this module only carries
it) and on ``fleet``'s ``FleetLink`` (one paho connection per instance: its
presence, with the last will, and these). Topics, under ``{fleet.topic}/{site}``:

- ``facts/{asset}``: the owner's ``Fact`` of an exported asset, JSON, QoS 1,
  **retained**, so a shard that starts (or restarts) knows the state of its
  remote supplies and dependants at once;
- ``explained/{supply}``: an alert a shard explained by another shard's ticket
  on ``supply``, QoS 1, not retained (a note for the ticket, not a state);
- ``instances/{instance}`` (the fleet link's presences): a shard is alive while
  an instance of it is online; its will (1.5 keep-alives after a crash) or its
  clean stop says offline, and the others drop its facts, so a ticket it can no
  longer close explains nothing. Presences are subscribed before facts, so
  whose facts count is known before they arrive.

A shard that loses the broker drops every remote fact too (it can no longer
hear them change) until the retained ones come back with the presences.
Messages reach this module on the event loop, which alone touches the
pipeline. A payload that is not a fact or a note is logged and dropped, never
taken as a value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict

from monitord.alerting.facts import BadFact, Fact
from monitord.alerting.tracker import AlertEvent
from monitord.config.shards import ShardPlan, unit_of
from monitord.config.site import SiteConfig
from monitord.daemon.core import Core
from monitord.daemon.fleet import FleetLink
from monitord.daemon.fleet_messages import Presence
from monitord.daemon.shardfacts import ShardFacts

log = logging.getLogger(__name__)


def decode_note(payload: bytes) -> AlertEvent:
    """An ``explained`` note back into the alert it carries; ``BadFact`` if it is not one."""
    try:
        doc = json.loads(payload)
        ev = AlertEvent(**doc)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise BadFact(f"not an explained note: {exc}") from None
    numbers = (ev.ts, ev.since)
    if ev.state != "firing" or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in numbers
    ):
        raise BadFact("not an explained note: state and times")
    if not all(isinstance(x, str) for x in (ev.rule, ev.asset, ev.severity, ev.summary)):
        raise BadFact("not an explained note: names")
    return ev


class ShardLink:
    """Shard ``shard``'s facts and notes on ``link``'s connection (its ``Rider``); ``wake`` asks the
    daemon to evaluate now, with what just changed."""

    def __init__(self, facts: ShardFacts, link: FleetLink, shards: int, wake: Callable[[], None]) -> None:
        self.facts, self.link, self.wake = facts, link, wake
        self.shard = facts.shard
        self.prefix = f"{link.fleet.topic}/{link.site}"
        self.sent = self.received = self.refused = 0
        # Until an instance of a shard is heard online, its facts (a leftover retained) count for nothing.
        self.others = set(range(shards)) - {self.shard}
        facts.gone |= self.others
        facts.send = self._send_fact
        facts.tell_owner = self._send_note
        link.rider = self

    # -- the rider: told by the fleet link, on the event loop -----------------------------------
    def subscriptions(self) -> list[str]:
        return [f"{self.prefix}/facts/+", f"{self.prefix}/explained/+"]

    def connected(self) -> None:
        self.facts.resend()  # a new session (or a broker that lost its retained): say everything again

    def disconnected(self) -> None:
        lost = self.others - self.facts.gone
        if lost:
            log.warning(
                "fleet: broker lost; facts of shards %s no longer explain anything here", sorted(lost)
            )
        for k in sorted(lost):
            self.facts.shard_gone(k)
        self.wake()

    def presences(self, known: Mapping[str, Presence]) -> None:
        alive = {
            p.shard for p in known.values() if p.online and p.mode == "shard" and p.instance != self.link.me
        }
        for k in sorted(self.others):
            if k in alive and k in self.facts.gone:
                log.info("fleet: shard %d is online", k)
                self.facts.shard_back(k)  # it says every fact again as it connects
            elif k not in alive and k not in self.facts.gone:
                log.warning("fleet: shard %d is gone; its facts no longer explain anything here", k)
                self.facts.shard_gone(k)
                self.wake()

    def heard(self, topic: str, payload: bytes) -> None:
        kind, _, asset = topic.removeprefix(self.prefix + "/").partition("/")
        try:
            if kind == "facts":
                fact = Fact.decode(payload)
                if fact.asset != asset:
                    raise BadFact(f"names asset {fact.asset!r}")
                taken = self.facts.received(fact)
            elif kind == "explained":
                taken = self.facts.explained_here(asset, decode_note(payload))
            else:
                return
        except BadFact as exc:
            self.refused += 1
            log.warning("fleet: %s: %s; ignored", topic, exc)
            return
        if taken:
            self.received += 1
            self.wake()  # decide with the new fact now, not at the next sample

    # -- what the facts hand over ------------------------------------------------------------------
    def _send_fact(self, fact: Fact) -> None:
        self.link.client.publish(f"{self.prefix}/facts/{fact.asset}", fact.encode(), qos=1, retain=True)
        self.sent += 1

    def _send_note(self, ev: AlertEvent, fact: Fact) -> None:
        body = json.dumps(asdict(ev), separators=(",", ":"))
        self.link.client.publish(f"{self.prefix}/explained/{fact.asset}", body, qos=1)
        self.sent += 1


def shard_link(site: SiteConfig, core: Core, shard: int, link: FleetLink) -> ShardLink:
    """Shard ``shard`` of ``site`` (the whole site's config; ``core`` runs its share) on ``link``."""
    polls = {a.id: site.poll_of(a) for a in site.assets}
    # A line's gateway asset is reported after each cycle, at the pace of its fastest device.
    lines: dict[str, float] = {}
    for a in site.assets:
        if a.connection.modbus is not None:
            lines[unit_of(a)] = min(polls[a.id], lines.get(unit_of(a), polls[a.id]))
    polls |= {gateway: poll for gateway, poll in lines.items() if gateway in polls}
    facts = ShardFacts(core.pipeline, shard, ShardPlan.of(site).owner, polls)
    return ShardLink(facts, link, site.fleet.shards, core.bus.wake.set)
