"""Presence and leadership of a site's instances on the site's MQTT broker (Sparkplug-B-primary-host style).

Daemon layer, beside ``app``. Every instance (any ``fleet.mode``, when the site
has a broker) keeps a retained presence message on
``{topic}/{site}/instances/{instance}`` with a retained last will saying
``offline``; the broker publishes the will 1.5 × ``fleet.keepalive`` after the
instance stops answering. In ``ha`` mode leadership is a retained claim on
``{topic}/{site}/leader``: after ``fleet.settle`` (to hear the others'
presences) the first online instance in name order claims when there is no
claim or its holder is offline; a claim whose holder is online stands (a
returning old active stays standby); the last claim the broker delivered on
the topic is the one every instance goes by. An ha instance repeats its
presence every half keep-alive, and one not heard for 1.5 keep-alives counts
as offline whatever the broker still retains (brokers check keep-alives
lazily: Mosquitto 2.0.11 took up to 8.9 s at a 2 s keep-alive). An instance
without its broker connection, or whose own beats the broker no longer
echoes, cannot know, so it is not active. ``fleet_messages`` holds the
messages and the rule, this module the connection (``FleetLink``);
docs/scale-out.md#ha-pair tells the whole story. A shard's facts ride the
same connection (a ``Rider``: ``daemon.shardlink``), so the one last will
says that the instance and what it said are gone together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from monitord.config.fleet import FleetConfig, Member
from monitord.config.site import SiteConfig
from monitord.daemon.fleet_messages import ACTIVE, STANDBY, Claim, Presence, should_claim
from monitord.drivers.mqtt import Tls, tls_context
from monitord.drivers.mqtt_client import stop_loop

log = logging.getLogger(__name__)


class Rider(Protocol):
    """What else travels on the fleet connection (a shard's facts): its topics, and what it is told.
    Every call comes on the event loop."""

    def subscriptions(self) -> list[str]:
        """Topic filters it hears, subscribed after the presences (whose retained come first)."""
        ...

    def heard(self, topic: str, payload: bytes) -> None:
        """A message on one of its topics."""
        ...

    def presences(self, known: Mapping[str, Presence]) -> None:
        """The instances' presences as they stand, after any of them changed."""
        ...

    def connected(self) -> None:
        """This instance's presence is said (a new session, or again after an old connection's will)."""
        ...

    def disconnected(self) -> None:
        """The broker is lost: nothing heard from it can be relied on until it is back."""
        ...


class FleetLink:
    """This instance's presence and (``ha``) its part in the leadership, on its own paho connection,
    which a shard's facts ride too (``rider``).

    paho's thread only hands messages to the event loop; every decision is made there, so the role
    changes in one place. ``serve(act)`` runs ``act()`` while this instance is to act and cancels it
    when it stops being so.
    """

    def __init__(
        self,
        site: str,
        member: Member,
        fleet: FleetConfig,
        broker: tuple[str, int],
        *,
        client_id: str,
        api_url: str = "",
        username: str | None = None,
        password: str | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.site, self.member, self.fleet = site, member, fleet
        self.me = member.instance
        self.broker = broker
        base = f"{fleet.topic}/{site}"
        self.instances_topic, self.leader_topic = f"{base}/instances/", f"{base}/leader"
        self.pending_topic = f"{base}/pending"
        #: the active's pending `for` timers (PendingFile JSON), as last retained: a new active resumes them
        self.pending: str | None = None
        self.api_url = api_url
        self.presences: dict[str, Presence] = {}
        self.claim: Claim | None = None
        self.connected = False
        self.settled = False
        self.role = STANDBY if fleet.mode == "ha" else fleet.mode  # single, shard: they always act
        self.role_since = time.time()
        self.takeovers = 0  # how many times this instance became active
        self._claimed = 0  # epoch of the claim this instance published and has not yet seen back
        self._loop_cpu = 0.0  # CPU seconds of the decisions made on the event loop
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settle: asyncio.TimerHandle | None = None
        self._beat: asyncio.TimerHandle | None = None
        # When each instance's presence last came in (monotonic): ha instances repeat theirs every half
        # keep-alive, so one not heard for 1.5 keep-alives is gone even if the broker is slow to say so.
        self._heard: dict[str, float] = {}
        self.on_role: list[Callable[[str], None]] = []  # told after every change of role
        self.rider: Rider | None = None  # what else rides this connection (a shard's facts)
        self._closing = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            context = tls_context(tls)
            self.client.tls_set_context(context)
            # paho leaves the socket of a failed handshake open: one per retry, unless dropped
            self.client.on_connect_fail = lambda *_a: context.drop_failed()
        # The broker says "offline" for us once we miss 1.5 keep-alives: that is the takeover clock.
        self.client.will_set(self.instances_topic + self.me, self._presence("offline").payload(), 1, True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)

    # -- what others read -------------------------------------------------------------------------
    @property
    def leader(self) -> str | None:
        return self.claim.instance if self.claim else None

    @property
    def acting(self) -> bool:
        return self.role != STANDBY

    def summary(self) -> dict[str, Any]:
        """This instance in its fleet, for /healthz."""
        m = self.member
        shards = self.fleet.shards if self.fleet.mode == "shard" else 1
        return {
            "mode": self.fleet.mode,
            "instance": self.me,
            "role": self.role,
            "shard": m.shard,
            "shards": shards,
            "leader": self.leader,
            "connected": self.connected,
        }

    def not_here(self) -> str:
        """Why a person's action cannot be taken here (a standby), naming the active; "" when it can."""
        if self.role != STANDBY:
            return ""
        leader = self.presences.get(self.leader or "")
        where = f" at {leader.api}" if leader is not None and leader.api else ""
        active = self.leader or "none yet"
        return f"{self.me} is the standby of an HA pair: act on the active one ({active}){where}"

    def instances(self) -> list[Presence]:
        """Every instance of the site as its retained presence says, this one as it is now; by name."""
        known = {**self.presences, self.me: self._presence("online" if self.connected else "offline")}
        return sorted(known.values(), key=lambda p: p.instance)

    def cpu_seconds(self) -> float:
        """CPU this link has used: paho's network thread plus the decisions on the event loop."""
        thread = getattr(self.client, "_thread", None)
        spent = self._loop_cpu
        if isinstance(thread, threading.Thread) and thread.ident is not None:
            with contextlib.suppress(OSError, AttributeError):
                spent += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        return spent

    # -- running ----------------------------------------------------------------------------------
    async def serve(self, act: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Connect and announce; run ``act()`` while this instance acts, cancel it when it stops.

        An error in ``act`` ends ``serve`` with it, as a failed task ends the daemon.
        """
        self._loop = asyncio.get_running_loop()
        host, port = self.broker
        keepalive = max(1, math.ceil(self.fleet.keepalive))
        self.client.connect_async(host, port, keepalive=keepalive)
        self.client.loop_start()
        task: asyncio.Task[None] | None = None
        try:
            while True:
                # Cleared before the role is read: a change while the old act ends (it takes turns of
                # the loop) is seen at the next wait, not lost (active again, with nothing acting).
                self._changed.clear()
                if not self.acting and task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    task = None
                if self.acting and task is None:
                    task = asyncio.create_task(act(), name="acting")
                changed = asyncio.create_task(self._changed.wait())
                waits: list[asyncio.Future[Any]] = [changed] + ([task] if task else [])
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                if task is not None and task.done():
                    task.result()  # its error ends the daemon; a clean end is the daemon stopping
                    return
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.close()

    def close(self) -> None:
        """Say offline (a clean stop: nobody waits for the will) and disconnect."""
        self._closing = True  # our own "offline" coming back is no old connection's will
        for timer in (self._settle, self._beat):
            if timer is not None:
                timer.cancel()
        if self.connected:
            info = self.client.publish(
                self.instances_topic + self.me, self._presence("offline").payload(), 1, True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        stop_loop(self.client)

    # -- paho's thread: hand everything to the loop -----------------------------------------------
    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self._call(self._connected)
        else:
            log.warning("fleet: broker %s:%s refused the connection: %s", *self.broker, reason)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._call(self._disconnected, str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._call(self._message, message.topic, bytes(message.payload))

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to tell
                loop.call_soon_threadsafe(self._timed, fn, *args)

    def _timed(self, fn: Callable[..., None], *args: Any) -> None:
        started = time.thread_time()
        try:
            fn(*args)
        finally:
            self._loop_cpu += time.thread_time() - started

    # -- the event loop: state and decisions ------------------------------------------------------
    def _connected(self) -> None:
        self.connected, self.settled = True, False
        self._claimed = 0  # a claim sent before the connection dropped may never have arrived
        topics = [self.instances_topic + "+", self.leader_topic] + (
            [self.pending_topic] if self.fleet.mode == "ha" else []
        )
        if self.rider is not None:  # one SUBSCRIBE, presences first: whose facts count is known first
            topics += self.rider.subscriptions()
        self.client.subscribe([(t, 1) for t in topics])
        self._publish_presence()
        if self.rider is not None:
            self.rider.connected()
        log.info("fleet: %s connected to %s:%s as %s (%s)", self.me, *self.broker, self.role, self.fleet.mode)
        if self.fleet.mode == "ha":
            assert self._loop is not None
            # Hear the retained presences and claim first, so a returning instance respects a live holder.
            self._settle = self._loop.call_later(self.fleet.settle, self._timed, self._settled)
            if self._beat is None:
                self._beat = self._loop.call_later(self.fleet.keepalive / 2, self._timed, self._beating)

    def _beating(self) -> None:
        """Every half keep-alive: say this instance is here, and look again at who else is."""
        assert self._loop is not None
        self._beat = self._loop.call_later(self.fleet.keepalive / 2, self._timed, self._beating)
        if self.connected:
            self._publish_presence()
        self._decide()

    def _alive(self, name: str) -> bool:
        return time.monotonic() - self._heard.get(name, -math.inf) <= 1.5 * self.fleet.keepalive

    def _settled(self) -> None:
        self.settled = True
        self._decide()

    def _disconnected(self, reason: str) -> None:
        if not self.connected:
            return
        self.connected, self.settled = False, False
        if self._settle is not None:
            self._settle.cancel()
        log.warning("fleet: %s lost the broker (%s)", self.me, reason)
        if self.rider is not None:
            self.rider.disconnected()
        self._decide()

    def publish_pending(self, text: str) -> None:
        """The active's pending timers as it saves them: retained, so whoever leads next has them."""
        if self.role == ACTIVE and self.connected:
            self.client.publish(self.pending_topic, text.encode(), 1, True)

    def _message(self, topic: str, payload: bytes) -> None:
        if topic == self.pending_topic:
            self.pending = payload.decode(errors="replace") if payload else None
            return
        if topic == self.leader_topic:
            self.claim = Claim.parse(payload)
            if self.claim is not None and self.claim.epoch >= self._claimed:
                self._claimed = 0
        elif topic.startswith(self.instances_topic):
            name = topic[len(self.instances_topic) :]
            presence = Presence.parse(name, payload) if payload else None
            if (
                name == self.me
                and self.connected
                and not self._closing
                and not (presence and presence.online)
            ):
                self._said_gone()
                return
            if presence is None:
                self.presences.pop(name, None)
            else:
                self.presences[name] = presence
            if presence is not None and presence.online:
                self._heard[name] = time.monotonic()
            else:
                self._heard.pop(name, None)
            if self.rider is not None:
                self.rider.presences(self.presences)
        elif self.rider is not None:
            self.rider.heard(topic, payload)
            return
        self._decide()

    def _said_gone(self) -> None:
        """Offline (or nothing) said under this instance's name while its connection is up: the late will
        of an older connection (a restart before the broker noticed the old one die), or a stray
        publisher. Say online again, and (a shard) every fact the others just dropped with it; the
        beats heard so far stand, so an active does not stand down for it."""
        log.warning(
            "fleet: %s was said offline while connected (an older connection's will?): online again", self.me
        )
        self._publish_presence()
        if self.rider is not None:
            self.rider.connected()

    def _decide(self) -> None:
        if self.fleet.mode != "ha":
            return
        role = STANDBY
        if self.connected and self.settled:
            if self.claim is not None and self.claim.instance == self.me:
                # Only while the broker still echoes this instance's beats: cut off, it cannot know.
                role = ACTIVE if self._alive(self.me) else STANDBY
            elif not self._claimed:
                online = [p.instance for p in self.presences.values() if p.online and self._alive(p.instance)]
                online = [name for name in online if name != self.me]
                if should_claim(self.me, online, self.claim):
                    self._claimed = (self.claim.epoch if self.claim else 0) + 1
                    body = json.dumps({"instance": self.me, "epoch": self._claimed, "at": time.time()})
                    self.client.publish(self.leader_topic, body.encode(), 1, True)
                    log.info("fleet: %s claims the lead of %s (epoch %d)", self.me, self.site, self._claimed)
        self._set_role(role)

    def _set_role(self, role: str) -> None:
        if role == self.role:
            return
        log.warning("fleet: %s is now %s (leader: %s)", self.me, role, self.leader)
        self.role, self.role_since = role, time.time()
        self.takeovers += role == ACTIVE
        if self.connected:
            self._publish_presence()
        for listener in self.on_role:
            listener(role)
        self._changed.set()

    def _presence(self, state: str) -> Presence:
        shards = self.fleet.shards if self.fleet.mode == "shard" else 1
        return Presence(
            self.me,
            state,
            self.fleet.mode,
            self.role,
            self.member.shard,
            shards,
            self.role_since,
            os.getpid(),
            socket.gethostname(),
            self.api_url,
        )

    def _publish_presence(self) -> None:
        self.client.publish(self.instances_topic + self.me, self._presence("online").payload(), 1, True)


def link_for(
    config: SiteConfig, member: Member, registry: CollectorRegistry | None = None
) -> FleetLink | None:
    """The fleet link of an instance of ``config`` on the site's broker (None: the site has none), its
    role exposed in ``registry`` when given."""
    m = config.mqtt
    if m is None:
        return None

    link = FleetLink(
        config.site.id,
        member,
        config.fleet,
        m.host_port,
        # A clean session of its own, never taken for another's: the driver's stays the driver's.
        client_id=f"{m.client_id}-fleet-{os.getpid()}-{secrets.token_hex(3)}",
        username=m.username,
        password=m.password,
        tls=Tls(m.ca, m.cert, m.key) if m.tls else None,
    )
    if registry is not None:
        registry.register(FleetCollector(link))
    return link


class FleetCollector(Collector):
    """The link's state at each scrape: role, identity, takeovers, connection, CPU spent."""

    def __init__(self, link: FleetLink) -> None:
        self.link = link

    def collect(self) -> Iterable[Metric]:
        link, me = self.link, self.link.me
        role = GaugeMetricFamily(
            "monitord_fleet_role",
            "1 for this instance's role in its fleet, 0 for the others",
            labels=["instance", "role"],
        )
        for r in (ACTIVE, STANDBY) if link.fleet.mode == "ha" else (link.fleet.mode,):
            role.add_metric([me, r], 1.0 if link.role == r else 0.0)
        info = GaugeMetricFamily(
            "monitord_fleet_info",
            "This instance in its fleet: mode, shard k of n",
            labels=["instance", "mode", "shard", "shards"],
        )
        summary = link.summary()
        info.add_metric([me, link.fleet.mode, str(summary["shard"]), str(summary["shards"])], 1.0)
        connected = GaugeMetricFamily("monitord_fleet_connected", "1 while the fleet link has its broker")
        connected.add_metric([], 1.0 if link.connected else 0.0)
        takeovers = CounterMetricFamily(
            "monitord_fleet_takeovers", "Times this instance became the active one"
        )
        takeovers.add_metric([], link.takeovers)
        cpu = CounterMetricFamily(
            "monitord_fleet_cpu_seconds",
            "CPU the fleet link used (paho thread and decisions): the cost of coordination",
        )
        cpu.add_metric([], link.cpu_seconds())
        return [role, info, connected, takeovers, cpu]
