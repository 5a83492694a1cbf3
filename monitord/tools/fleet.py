"""``monitord fleet CONFIG``: the instances of a site and their roles, as their retained presences say.

Tools layer. Reads the retained messages ``daemon.fleet`` keeps on the site's
broker (every instance's presence, the leader claim of an HA site) with a
client of its own, and prints one line per instance in the site's language.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitord.config.site import SiteConfig, site_zone
from monitord.core.errors import MonitordError
from monitord.core.i18n import translator
from monitord.core.units import format_time
from monitord.daemon.fleet_messages import Claim, Presence, role_words
from monitord.drivers.mqtt import Tls, tls_context
from monitord.drivers.mqtt_client import stop_loop


def read_fleet(config: SiteConfig, wait: float = 1.0) -> tuple[list[Presence], Claim | None]:
    """Every presence retained for the site, by name, and the leader claim; ``wait`` seconds after the
    subscription is granted (the broker sends retained messages first)."""
    if config.mqtt is None:
        raise MonitordError(f"{config.source or 'config'}: the site has no mqtt: broker, so no fleet to show")
    host, port = config.mqtt.host_port
    base = f"{config.fleet.topic}/{config.site.id}"
    presences: dict[str, Presence] = {}
    claim: list[Claim | None] = [None]
    granted = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        if m.topic == f"{base}/leader":
            claim[0] = Claim.parse(bytes(m.payload))
        elif m.payload and (p := Presence.parse(m.topic.rsplit("/", 1)[-1], bytes(m.payload))) is not None:
            presences[p.instance] = p

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    m = config.mqtt
    if m.username:
        client.username_pw_set(m.username, m.password)
    if m.tls:
        client.tls_set_context(tls_context(Tls(m.ca, m.cert, m.key)))
    client.on_connect = lambda c, *_a: c.subscribe([(f"{base}/instances/+", 1), (f"{base}/leader", 1)])
    client.on_subscribe = lambda *_a: granted.set()
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        raise MonitordError(f"cannot reach the broker {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not granted.wait(10):
            raise MonitordError(f"the broker {host}:{port} did not answer the subscription")
        time.sleep(wait)
    finally:
        client.disconnect()
        stop_loop(client)
    return sorted(presences.values(), key=lambda p: p.instance), claim[0]


def fleet_lines(config: SiteConfig, presences: list[Presence], claim: Claim | None) -> list[str]:
    """The listing a person reads, in the site's language."""
    _ = translator(config.site.locale)
    words = role_words(config.site.locale)
    site = config.site.id
    if not presences:
        return [_("{site}: no instance has announced itself on the broker").format(site=site)]
    online = sum(p.online for p in presences)
    head = _("{site} ({mode}): {online} of {count} instances online").format(
        site=site, mode=config.fleet.mode, online=online, count=len(presences)
    )
    if claim is not None:
        head += _(", leader {leader} (claim {epoch})").format(leader=claim.instance, epoch=claim.epoch)
    out = [head]
    tz = site_zone(config)
    for p in presences:
        line = _("{instance}: {role}, {state} since {since}, pid {pid} on {host}").format(
            instance=p.instance,
            role=words.get(p.role, p.role or "?"),
            state=words.get(p.state, p.state),
            since=format_time(p.since, tz),
            pid=p.pid,
            host=p.host,
        )
        if p.shards > 1:
            line += _(", shard {k} of {n}").format(k=p.shard + 1, n=p.shards)
        if p.api:
            line += f", {p.api}"
        out.append("  " + line)
    return out
