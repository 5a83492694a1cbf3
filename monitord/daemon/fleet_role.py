"""What this process is in its site's fleet, and the parts that make it so: the one thing ``app`` asks.

Daemon layer, between ``app`` and the fleet's parts: ``fleet`` (presence and
the HA claim on the site's broker), ``takeover`` (an HA instance becoming the
active one or standing down), ``shardlink`` (a shard's facts, on the same
connection). One constructor per ``fleet.mode``, picked by ``FleetRole.of``:

- ``single``: one instance; everything in the site file is its own;
- ``ha``: one of identical instances with files of their own; acts while it
  leads, and takes over what the last active shared;
- ``shard``: shard k; its share of the assets, the tickets numbered with its
  code, and its facts for the other shards.

Built in two steps, since the core is built from what the role says this
process runs: the constructor (``config``: the share, the per-instance files
and client id; ``restores``: the tickets it restores), then ``wire`` on the
built core. docs/scale-out.md.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitord.alerting.tracker import PendingFile
from monitord.config.fleet import Member, Mode
from monitord.config.shards import ShardPlan, own_share, owns_ticket
from monitord.config.site import SiteConfig
from monitord.daemon.core import Core
from monitord.daemon.fleet import FleetLink, link_for
from monitord.daemon.shardlink import ShardLink, shard_link
from monitord.daemon.takeover import Takeover
from monitord.daemon.web.context import Web
from monitord.people.dispatch import Dispatcher
from monitord.people.notify import Outbox
from monitord.tickets.desk import TicketEvent


def per_instance(config: SiteConfig, member: Member) -> SiteConfig:
    """Each instance of a fleet keeps its own local files (notification log; the pending timers and a
    generated site secret live beside it) and its own MQTT client id: two instances under one id
    would throw each other off the broker, two on one log file would share a single outbox."""
    path = config.notify_log
    local = path.parent / member.instance / path.name  # the pending timers' file goes beside it
    update: dict[str, object] = {"notify": config.notify.model_copy(update={"log": str(local)})}
    if config.mqtt is not None:
        update["mqtt"] = config.mqtt.model_copy(
            update={"client_id": f"{config.mqtt.client_id}-{member.instance}"}
        )
    return config.model_copy(update=update)


def _every_ticket(_ev: TicketEvent) -> bool:
    return True


@dataclass
class FleetRole:
    """This process in its site's fleet: what it runs and restores, and (once ``wire``d) its parts."""

    mode: Mode
    member: Member
    #: the site file (with its gateways): every shard's topology is the whole site's
    whole: SiteConfig
    #: what this process runs: its share, its own files and MQTT client id
    config: SiteConfig
    #: whether this process restores a ticket event from the (maybe shared) store
    restores: Callable[[TicketEvent], bool] = _every_ticket
    link: FleetLink | None = None
    takeover: Takeover | None = None
    shard_link: ShardLink | None = None

    @classmethod
    def of(cls, whole: SiteConfig, member: Member) -> FleetRole:
        """The role ``member`` plays in the site ``whole`` describes (``fleet.mode``)."""
        build = {"single": cls.single, "ha": cls.ha, "shard": cls.shard}[whole.fleet.mode]
        return build(whole, member)

    @classmethod
    def single(cls, whole: SiteConfig, member: Member) -> FleetRole:
        return cls("single", member, whole, whole)

    @classmethod
    def ha(cls, whole: SiteConfig, member: Member) -> FleetRole:
        return cls("ha", member, whole, per_instance(whole, member))

    @classmethod
    def shard(cls, whole: SiteConfig, member: Member) -> FleetRole:
        """Shard ``member.shard``: its share of the assets; of a store the shards share, its own tickets."""
        member.check(whole.fleet)
        k, plan, code = member.shard, ShardPlan.of(whole), whole.site.ticket_code
        share = per_instance(own_share(whole, k), member)
        return cls("shard", member, whole, share, lambda ev: owns_ticket(plan, k, code, ev.ticket, ev.asset))

    def wire(self, core: Core, timers: PendingFile, rules: Mapping[str, Sequence[str]]) -> None:
        """The fleet's parts on the built core: presence on the site's broker in every mode (when the
        site has one), the takeover of an HA instance, a shard's facts on the same connection."""
        c = self.config
        self.link = link_for(c, self.member, core.metrics.registry)
        if self.link is None:  # `monitord check` refuses ha and shard without a broker
            return
        if self.mode == "ha":
            # What only the active reads: Modbus (and its gateways, which the poller reports), BACnet, SNMP.
            polled = [a.id for a in c.assets if not a.connection.mqtt or a.type == "gateway"]
            self.takeover = Takeover(core, polled, self.link, timers, rules)
        elif self.mode == "shard":
            self.shard_link = shard_link(self.whole, core, self.member.shard, self.link)

    def attach(
        self, web: Web | None, api_url: str, outbox: Outbox | None, dispatcher: Dispatcher | None
    ) -> None:
        """The people side, once built: the console shows the fleet, a new active's outbox starts held."""
        if self.takeover is not None:
            self.takeover.attach(outbox, dispatcher)
        if self.link is not None and web is not None:
            self.link.api_url = api_url
            web.fleet = self.link

    async def serve(self, act: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``act()`` while this instance is to act (always, but for an HA standby)."""
        await (self.link.serve(act) if self.link is not None else act())

    async def becoming_active(self) -> None:
        """Before acting: an HA instance takes over what the last active shared."""
        if self.takeover is not None:
            await self.takeover.begin()

    def restored(self) -> None:
        """Tickets are restored: a new active pages what may not have gone out, then lets its outbox send."""
        if self.takeover is not None:
            self.takeover.restored()

    def standing_down(self) -> None:
        """No longer acting (an HA instance demoted, or the daemon stopping)."""
        if self.takeover is not None:
            self.takeover.end()
