"""The shards' wire: cross-shard facts and explained notes over the site's own MQTT broker.

Daemon layer, beside ``shardfacts`` (what is said; this module only carries
it). Topics, under ``{fleet.topic}/{site}``:

- ``facts/{asset}``: the owner's ``Fact`` of an exported asset, JSON, QoS 1,
  **retained**, so a shard that starts (or restarts) knows the state of its
  remote supplies and dependants at once;
- ``explained/{supply}``: an alert a shard explained by another shard's ticket
  on ``supply``, QoS 1, not retained (a note for the ticket, not a state);
- ``shards/{k}``: ``online`` when shard k's link connects, ``offline`` as its
  last will (the broker says it within 1.5 keep-alives of a crash), retained:
  the facts of a shard that is gone are dropped, so a ticket it can no longer
  close explains nothing.

paho runs its own thread; messages are handed to the event loop, which alone
touches the pipeline. A payload that is not a fact or a note is logged and
dropped, never taken as a value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitord.alerting.facts import BadFact, Fact
from monitord.alerting.tracker import AlertEvent
from monitord.config.shards import ShardPlan, unit_of
from monitord.config.site import SiteConfig
from monitord.daemon.core import Core
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
    def __init__(
        self,
        facts: ShardFacts,
        shard: int,
        host: str,
        port: int,
        prefix: str,
        *,
        client_id: str,
        wake: Callable[[], None],
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive: float = 2.0,
    ) -> None:
        self.facts, self.shard, self.host, self.port, self.prefix = facts, shard, host, port, prefix
        self.wake = wake
        self.keepalive = max(1, round(keepalive))
        self.sent = self.received = self.refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # A clean session: every fact that matters is retained, and notes while away are not worth
        # replaying against tickets that moved on.
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.will_set(f"{prefix}/shards/{shard}", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=4)
        facts.send = self._send_fact
        facts.tell_owner = self._send_note

    # -- loop side ---------------------------------------------------------------------------
    def _send_fact(self, fact: Fact) -> None:
        self.client.publish(f"{self.prefix}/facts/{fact.asset}", fact.encode(), qos=1, retain=True)
        self.sent += 1

    def _send_note(self, ev: AlertEvent, fact: Fact) -> None:
        body = json.dumps(asdict(ev), separators=(",", ":"))
        self.client.publish(f"{self.prefix}/explained/{fact.asset}", body, qos=1)
        self.sent += 1

    def _handle(self, topic: str, payload: bytes) -> None:
        kind, _, asset = topic.removeprefix(self.prefix + "/").partition("/")
        if kind == "shards":
            self._presence(asset, payload)
            return
        try:
            if kind == "facts":
                fact = Fact.decode(payload)
                if fact.asset != asset:
                    raise BadFact(f"names asset {fact.asset!r}")
                taken = self.facts.received(fact)
            else:
                taken = self.facts.explained_here(asset, decode_note(payload))
        except BadFact as exc:
            self.refused += 1
            log.warning("fleet: %s: %s; ignored", topic, exc)
            return
        if taken:
            self.received += 1
            self.wake()  # decide with the new fact now, not at the next sample

    def _presence(self, shard: str, payload: bytes) -> None:
        if not shard.isdigit() or payload not in (b"online", b"offline"):
            return
        if int(shard) == self.shard:
            if payload == b"offline" and self.client.is_connected():
                # The will of this shard's previous connection (a restart under the same client id)
                # came after our "online": say it again, and every fact the others just dropped.
                self.client.publish(f"{self.prefix}/shards/{self.shard}", "online", qos=1, retain=True)
                self.facts.resend()
            return
        if payload == b"offline":
            log.warning("fleet: shard %s is gone; its facts no longer explain anything here", shard)
            self.facts.shard_gone(int(shard))
            self.wake()
        else:
            self.facts.shard_back(int(shard))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        try:
            await asyncio.Event().wait()  # paho's thread does the work until we are cancelled
        finally:
            self.close()

    def close(self) -> None:
        # A clean stop says so (the will is for a crash): the others drop this shard's facts.
        if self.client.is_connected():
            said = self.client.publish(f"{self.prefix}/shards/{self.shard}", "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent: the will says it instead
                said.wait_for_publish(1.0)
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho thread ---------------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("fleet: broker %s:%d refused the shard link: %s", self.host, self.port, reason)
            return
        client.publish(f"{self.prefix}/shards/{self.shard}", "online", qos=1, retain=True)
        topics = ("facts/+", "explained/+", "shards/+")
        client.subscribe([(f"{self.prefix}/{t}", 1) for t in topics])
        log.info("fleet: shard link to %s:%d up", self.host, self.port)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.facts.resend)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle, msg.topic, bytes(msg.payload))


def shard_link(site: SiteConfig, core: Core, shard: int) -> ShardLink:
    """The link of shard ``shard`` of ``site`` (the whole site's config; ``core`` runs its share)."""
    m = site.mqtt
    assert m is not None  # check_shards: shard mode needs the broker
    polls = {a.id: site.poll_of(a) for a in site.assets}
    # A line's gateway asset is reported after each cycle, at the pace of its fastest device.
    lines: dict[str, float] = {}
    for a in site.assets:
        if a.connection.modbus is not None:
            lines[unit_of(a)] = min(polls[a.id], lines.get(unit_of(a), polls[a.id]))
    polls |= {gateway: poll for gateway, poll in lines.items() if gateway in polls}
    facts = ShardFacts(core.pipeline, shard, ShardPlan.of(site).owner, polls)
    tls = None
    if m.tls:
        tls = ssl.create_default_context(cafile=m.ca)
        if m.cert:
            tls.load_cert_chain(m.cert, m.key)
    host, port = m.host_port
    return ShardLink(
        facts,
        shard,
        host,
        port,
        f"{site.fleet.topic}/{site.site.id}",
        client_id=f"{m.client_id}-shard{shard}-link",
        wake=core.bus.wake.set,
        username=m.username,
        password=m.password,
        tls=tls,
        keepalive=site.fleet.keepalive,
    )
