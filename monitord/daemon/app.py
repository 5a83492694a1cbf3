"""The daemon: the evaluation core plus drivers, people and the HTTP API, run until stopped.

``Monitord`` builds the core (``build_core``: state table, rules, alerts,
tickets, event road), connects drivers → bus → state table / store / metrics,
and adds the people stages (roster, dispatcher, outbox) and the API on top.
``run`` keeps them in one ``TaskGroup`` until ``stop`` is called, then
flushes the store, so a Ctrl-C never loses what was already read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from monitord.alerting.tracker import PendingFile
from monitord.config.fleet import Member
from monitord.config.mqtt import router
from monitord.config.site import AssetConfig, SiteConfig, modbus_lines, modbus_of
from monitord.core.clock import Clock, SystemClock
from monitord.core.errors import StoreError
from monitord.core.metrics import Metrics
from monitord.daemon.core import Core, build_core
from monitord.daemon.fleet_role import FleetRole
from monitord.daemon.polled import polled_drivers
from monitord.daemon.sites import ticket_code_alone
from monitord.daemon.web import WebServer
from monitord.daemon.web.context import Web
from monitord.drivers.modbus import (
    GATEWAY_POINTS,
    GatewayPoller,
    ModbusDevice,
    ModbusDriver,
)
from monitord.drivers.mqtt import MqttDriver, Tls
from monitord.drivers.mqtt_keeper import WorkerDriver
from monitord.ingest.profiles import DeviceProfile, PointSpec
from monitord.people.alertmanager import AlertmanagerPush
from monitord.people.am_silences import SilenceMirror
from monitord.people.dispatch import Dispatcher
from monitord.people.identity import Identities, Signer, people, site_secret, ticket_link
from monitord.people.logsite import claim
from monitord.people.notify import Outbox, channels
from monitord.people.roster import Roster
from monitord.store.base import Store
from monitord.store.open import open_store

log = logging.getLogger(__name__)
#: an evaluation woken by data is followed by a pause of this many times its CPU: ≤ 10 % of a core
EVALUATION_PAUSE = 9.0


def with_gateways(config: SiteConfig) -> SiteConfig:
    """The site plus one ``gateway`` asset per Modbus endpoint with several devices behind it.

    The devices depend on their gateway, so a gateway-down alert (a ``root_cause`` rule) explains
    their offline alerts: one ticket for the gateway, not one per device.
    """
    gateways = {k: v for k, v in modbus_lines(config).items() if len(v) > 1}
    if not gateways:
        return config
    profile = DeviceProfile(
        profile="monitord-gateway", asset_type="gateway", points={p: PointSpec() for p in GATEWAY_POINTS}
    )
    assets = []
    for a in config.assets:
        m = a.connection.modbus
        if m and m.line.key in gateways:
            a = a.model_copy(update={"depends_on": [*a.depends_on, m.line.asset_id()]})
        assets.append(a)
    for devices in gateways.values():
        line = modbus_of(devices[0]).line
        # What feeds every device behind the gateway feeds the gateway too (same panel, same room).
        common = set(devices[0].depends_on).intersection(*(d.depends_on for d in devices[1:]))
        assets.append(
            AssetConfig(
                id=line.asset_id(),
                name=f"Modbus gateway {line.name}",
                type="gateway",
                profile="monitord-gateway",
                connection={"mqtt": {}},  # never polled: the driver reports it
                # Reported once per poll round of its devices: judged offline against their slowest
                # poll, not the site's default (meters at 2 s behind a site at 1 s went "offline"
                # whenever one round ran a little late).
                poll=max(config.poll_of(d) for d in devices),
                location=devices[0].location,
                depends_on=sorted(common),
            )
        )
    return config.model_copy(update={"assets": assets, "profiles": [*config.profiles, profile]})


@dataclass
class Monitord:
    config: SiteConfig
    clock: Clock = field(default_factory=SystemClock)
    store: Store | None = None
    metrics_port: int | None = None
    member: Member = field(default_factory=lambda: Member.from_args(None, None))  # who this is in the fleet

    def __post_init__(self) -> None:
        whole = with_gateways(self.config)
        # What this process is in the site's fleet says what it runs: a shard's share, its own files.
        self.role = FleetRole.of(whole, self.member)
        self.config = c = self.role.config
        claim(c.notify_log, c.site.id)  # before anything reads it: silences, outbox, secret, timers
        if self.store is None:
            self.store = open_store(c)
        self.core: Core = build_core(c, self.clock, self.store, silences=c.notify_log, whole=whole)
        self.bus = self.core.bus
        self.outbox: Outbox | None = None
        self.dispatcher: Dispatcher | None = None
        self.api: WebServer | None = None
        self.web: Web | None = None
        self.alertmanager: AlertmanagerPush | None = None
        self.am_silences: SilenceMirror | None = None
        self.modbus = self._modbus_driver()
        self.mqtt = self._mqtt_driver()
        self.polled = polled_drivers(c, self.bus, self.clock, self.metrics)  # BACnet, SNMP
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.metrics_url = ""
        # Pending `for` timers survive a kill -9: saved beside the notification log, resumed at start.
        self.pending_timers = PendingFile(c.notify_log.with_name("pending-alerts.json"))
        self._rule_assets = {r.key: r.assets for r in self.core.engine.rules}
        self.role.wire(self.core, self.pending_timers, self._rule_assets)

    def _modbus_driver(self) -> ModbusDriver | None:
        """One poller per line (TCP endpoint, serial port, or serial server over TCP)."""
        c = self.config
        pollers = []
        for assets in modbus_lines(c).values():
            devs = [
                ModbusDevice.from_profile(a.id, modbus_of(a).unit, c.poll_of(a), c.profile(a.profile))
                for a in assets
            ]
            line = modbus_of(assets[0]).line
            timeout = max(modbus_of(a).timeout for a in assets)
            pollers.append(
                GatewayPoller(
                    line.host, 0, devs, self.bus, self.clock, self.metrics, timeout=timeout, line=line
                )
            )
        return ModbusDriver(pollers) if pollers else None

    def _mqtt_driver(self) -> MqttDriver | None:
        c = self.config
        routes = router(c)
        if not routes or c.mqtt is None:
            return None
        m = c.mqtt
        host, port = m.host_port
        # paho and the parse in a child process (the default), or in paho's thread of this one
        driver = WorkerDriver if m.worker else MqttDriver
        return driver(
            host,
            port,
            routes,
            self.bus,
            self.clock,
            self.metrics,
            client_id=m.client_id,
            qos=m.qos,
            max_clock_skew=m.max_clock_skew,
            username=m.username,
            password=m.password,
            persistent=m.persistent_session,
            tls=Tls(m.ca, m.cert, m.key) if m.tls else None,
        )

    @property
    def metrics(self) -> Metrics:
        return self.core.metrics

    def stop(self) -> None:
        self._stop.set()

    async def _restore_when_possible(self) -> None:
        """Rebuild tickets from the store; while it does not answer, keep polling and hold tickets."""
        assert self.store is not None
        told = False
        while True:
            try:
                events = await asyncio.to_thread(self.store.ticket_events)  # only the I/O off the loop
                break
            except StoreError as exc:
                if not told:
                    log.warning("cannot read tickets from the store yet (%s); ticket decisions wait", exc)
                    told = True
                await asyncio.sleep(2.0)
        desk = self.core.desk
        self.core.restore([ev for ev in events if self.role.restores(ev)])  # a shard: its own
        if self.alertmanager is not None:  # what fires still, pushed again before Alertmanager expires it
            self.alertmanager.resume(self.core.firing_alerts(), desk.tickets, self.clock.now())
        if desk.tickets:
            n_open = sum(desk.open_counts().values())
            log.info("restored %d tickets (%d open) from the store", len(desk.tickets), n_open)
        if told:
            log.info("tickets restored from the store; held alerts decided")
        self.core.pipeline.decide_held()
        self.role.restored()
        await ticket_code_alone(self.store, self.config.site.ticket_code)  # after: it may wait for the store

    def _people(self, api_port: int | None) -> None:
        """Roster, notification outbox, dispatcher and the web app (API, console): what talks to people."""
        c, core = self.config, self.core
        roster = Roster(c.roster) if c.roster is not None else None
        signer = Signer(site_secret(c.api.secret, c.notify_log))
        ids = Identities(people(c.roster), c.api.token)
        web = Web(core, ids, signer, roster, c.api.link_ttl, c.site.locale)
        web.attach()
        if roster is not None:
            broker = c.mqtt.host_port if c.mqtt else None
            n = c.notify
            # The outbox resumes what a previous run left pending (even after kill -9) as it opens.
            self.outbox = Outbox(
                c.notify_log, channels(n.smtp, broker), core.metrics, n.attempts, n.backoff, n.max_wait
            )
        port = c.api.port if api_port is None else api_port
        self.api = WebServer(web, c.api.host, port, self.outbox, c.api.trusted_proxies)
        self.web = web
        self.api_url = c.api.public_url or f"http://{c.api.host}:{self.api.port}"
        log.info("API at %s (console: %s/console)", self.api_url, self.api_url)
        if c.alertmanager is not None:
            life_safety = {r.spec.id for r in core.engine.rules if r.spec.life_safety}
            am = AlertmanagerPush(
                c.alertmanager, c.site.id, core.assets, f"{self.api_url}/console", core.metrics, life_safety
            )
            core.road.alert_listeners.append(am.on_alert)
            core.road.ticket_listeners.append(am.on_ticket)
            self.alertmanager = am
            if core.pipeline.mute is not None:  # what monitord mutes, silenced there too
                mute, now = core.pipeline.mute, core.clock.now
                self.am_silences = SilenceMirror(
                    c.alertmanager, c.site.id, c.site.locale, core.assets, mute, now, core.metrics
                )
                self.am_silences.acting = False  # until this instance acts for the site (_act)
                self.am_silences.start()
        if roster is None or self.outbox is None:
            return
        url, ttl = self.api_url, c.api.link_ttl
        self.dispatcher = Dispatcher(
            roster,
            core.desk,
            self.outbox,
            core.assets,
            self.api_url,
            c.sla_of,
            link=lambda person, ticket, now: ticket_link(signer, url, person, ticket, now, ttl),
            locale=c.site.locale,
            summary_in=core.pipeline.summary_in,
        )
        core.road.ticket_listeners.append(self.dispatcher.on_ticket)
        core.pipeline.clock_steps.append(self.dispatcher.check)

    async def run(self, api_port: int | None = None) -> None:
        assert self.store is not None
        self.core.pipeline.tickets_ready = False
        self.pending_timers.restore(self.core.tracker, self._rule_assets, self.clock.now())
        port = self.config.metrics.port if self.metrics_port is None else self.metrics_port
        bound = self.metrics.serve(self.config.metrics.host, port)
        self.metrics_url = f"http://{self.config.metrics.host}:{bound}/metrics"
        log.debug("metrics at %s", self.metrics_url)  # `monitord run` prints it once, on stdout
        self._people(api_port)
        self.role.attach(self.web, self.api_url, self.outbox, self.dispatcher)
        self.started.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self.role.serve(self._act), name="acting")]
                if self.mqtt:
                    tasks.append(tg.create_task(self.mqtt.run(), name="mqtt"))
                if self.api:
                    tasks.append(tg.create_task(self.api.serve(), name="web"))
                await self._stop.wait()
                if self.api:
                    self.api.stop()  # uvicorn closes its connections and returns on its own
                for t in tasks:
                    if t.get_name() != "web":
                        t.cancel()
        finally:
            self.metrics.stop()
            if self.outbox:
                self.outbox.close()
            if self.alertmanager:
                self.alertmanager.close()
            if self.am_silences:
                self.am_silences.close()
            if self.mqtt:
                self.mqtt.close()
            for d in self.polled.values():
                d.close()
            self.store.flush()
            self.store.close()
            log.info("stopped; store flushed")

    async def _act(self) -> None:
        """What the acting instance does: restore tickets, evaluate, poll Modbus, BACnet and SNMP (the
        MQTT driver runs in every instance, so a standby's state table stays current)."""
        try:
            await self.role.becoming_active()  # demoted meanwhile: cancelled here, and ended below
            if self.am_silences is not None:  # a standby's mutes are not the site's: it mirrors none
                self.am_silences.acting = True
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._restore_when_possible(), name="restore")
                tg.create_task(self._evaluate_forever(), name="evaluate")
                if self.modbus:
                    tg.create_task(self.modbus.run(), name="modbus")
                for n, d in self.polled.items():
                    tg.create_task(d.run(), name=n)
        finally:
            if self.am_silences is not None:
                self.am_silences.acting = False
            self.role.standing_down()

    async def _evaluate_forever(self) -> None:
        engine, pipeline = self.config.engine, self.core.pipeline
        wake = self.bus.wake
        while True:
            # New data wakes the loop; so does a `for` or `clear_for` timer running out.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(engine.max_interval, self._until_due()))):
                    await wake.wait()
            wake.clear()
            began = time.thread_time()
            pipeline.tick()
            cost = time.thread_time() - began
            self.pending_timers.save(self.core.tracker, self._rule_assets, self.clock.now())
            queued = getattr(self.store, "queued", None)  # a backend that queues says how much
            if queued is not None:
                self.metrics.store_queue.set(queued)
            # A flood of data is evaluated no sooner than min_interval after the last evaluation, nor
            # sooner than EVALUATION_PAUSE times what that one cost (a large site's evaluation keeps
            # to a tenth of a core); a `for` or `clear_for` timer is held by neither.
            pause = max(engine.min_interval, EVALUATION_PAUSE * cost)
            await asyncio.sleep(max(0.0, min(pause, self._until_due())))

    def _until_due(self) -> float:
        """Seconds until the earliest `for`/`clear_for` timer runs out (inf: none runs)."""
        return self.core.tracker.next_due() - self.clock.now()
