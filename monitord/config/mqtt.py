"""The MQTT side of a site config: which topics (and gateway device keys) each asset claims.

Config layer, beside ``site``: builds the driver's ``Router`` once (topic
filters, field paths split, status topics) and lets ``monitord check`` refuse
two assets that claim the same topic or device key, naming the second's
file:line. The daemon and the simulators take their topics from here, so what
is checked is what runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from monitord.config.yamlio import problem
from monitord.drivers.mqtt_routes import (
    Path,
    Router,
    StatusRoute,
    TopicRoute,
    field_path,
    has_wildcard,
    overlap,
)

GATEWAY_TOPIC = "v1/gateway/telemetry"  # ThingsBoard IoT Gateway; connect/disconnect beside it


@dataclass(frozen=True)
class Claim:
    """One asset's hold on a topic filter (and, on a gateway's topic, on one device key)."""

    index: int  # the asset's place in the config, for file:line
    asset: str
    filter: str
    device: str | None = None  # the key on a gateway's topic
    status: bool = False


def publishes_changes(config: Any, asset: Any) -> bool:
    """Whether the device reports only what changed: its connection says so, else its profile."""
    conn, m = asset.connection.mqtt, config.profile(asset.profile).mqtt
    if conn is None or m is None:
        return False
    return bool((conn.publishes or m.publishes) == "changes")


def device_name(asset: Any) -> str:
    """The asset's name on the wire: ``connection.mqtt.device``, else its id."""
    return str(asset.connection.mqtt.device or asset.id)


def gateway_topics(telemetry: str) -> tuple[str, str]:
    """The connect and disconnect topics beside a gateway's telemetry topic (ThingsBoard's layout)."""
    root = telemetry.rsplit("/", 1)[0] if "/" in telemetry else ""
    return f"{root}/connect", f"{root}/disconnect"


def claims(config: Any) -> Iterator[tuple[Claim, TopicRoute | None]]:
    """Every claim of every MQTT asset, with the route it stands for (None: a status topic)."""
    for i, a in enumerate(config.assets):
        conn = a.connection.mqtt
        if conn is None or a.type == "gateway":
            continue
        prof = next((p for p in config.profiles if p.profile == a.profile), None)
        if prof is None or prof.mqtt is None:
            continue  # cross_check says so on its own
        m = prof.mqtt
        site, device = config.site.id, device_name(a)
        changes = publishes_changes(config, a)
        ts_field = field_path(m.ts_field) if m.ts_field else ()
        seq_field = field_path(m.seq_field) if m.seq_field else ()
        if conn.gateway:
            route = _json_route(a.id, prof, ts_field or ("ts",), seq_field, changes)
            topic = conn.topic or GATEWAY_TOPIC
            yield Claim(i, a.id, topic, device), route
            for status in gateway_topics(topic):
                yield Claim(i, a.id, status, device, status=True), None
            continue
        pattern = conn.topic or m.topic
        if m.format == "json":
            route = _json_route(a.id, prof, ts_field, seq_field, changes)
            yield Claim(i, a.id, _fill(pattern, site, device)), route
        else:
            for point in prof.points:
                route = TopicRoute(a.id, (point,), (), changes=changes)
                yield Claim(i, a.id, _fill(pattern, site, device, point)), route
        status_topic = conn.status_topic or m.status_topic
        if status_topic:
            yield Claim(i, a.id, _fill(status_topic, site, device), status=True), None


def _json_route(asset: str, prof: Any, ts_field: Path, seq: Path, changes: bool) -> TopicRoute:
    fields = prof.json_fields()
    paths = tuple(field_path(f) for f in fields.values())
    return TopicRoute(asset, tuple(fields), paths, ts_field, seq, changes)


def router(config: Any) -> Router:
    """The driver's routes for a checked config."""
    assets: dict[str, TopicRoute] = {}
    gateways: dict[str, dict[str, TopicRoute]] = {}
    status: dict[str, StatusRoute] = {}
    for claim, route in claims(config):
        if route is None and claim.device is None:
            status[claim.filter] = StatusRoute("word", claim.asset)
        elif route is None:
            assert claim.device is not None
            kind: Literal["connect", "disconnect"] = (
                "connect" if claim.filter.endswith("/connect") else "disconnect"
            )
            status.setdefault(claim.filter, StatusRoute(kind)).devices[claim.device] = claim.asset
        elif claim.device is not None:
            gateways.setdefault(claim.filter, {})[claim.device] = route
        else:
            assets[claim.filter] = route
    return Router(assets, gateways, status)


def check_claims(config: Any, raw: Any) -> list[str]:
    """Two assets (or two points of one) claiming topics that one message can match, on the same
    gateway device key if any: the second is a problem at its file:line. A wildcard filter is checked
    against every other filter, an exact topic against the same topic and the wildcards."""
    out: list[str] = []
    seen: list[Claim] = []
    exact: dict[str, list[Claim]] = {}
    wild: list[Claim] = []
    for claim, _route in claims(config):
        if claim.status and claim.device:
            continue  # a gateway's connect/disconnect: held by the device's telemetry claim
        candidates = seen if has_wildcard(claim.filter) else [*exact.get(claim.filter, ()), *wild]
        first = next((c for c in candidates if _clash(c, claim)), None)
        if first is not None:
            what = f"topic {claim.filter!r}"
            if claim.device:
                what = f"device {claim.device!r} on {what}"
            whose = "another of its points" if first.asset == claim.asset else f"asset {first.asset!r}"
            where = ("assets", claim.index, "connection", "mqtt")
            out.append(problem(raw, where, f"{what} is already claimed by {whose} (one message, one asset)"))
            continue
        seen.append(claim)
        (wild if has_wildcard(claim.filter) else exact.setdefault(claim.filter, [])).append(claim)
    return out


def _clash(a: Claim, b: Claim) -> bool:
    keyed = a.device is not None and b.device is not None
    return overlap(a.filter, b.filter) and not (keyed and a.device != b.device)


def publish_topic(config: Any, asset: Any) -> str:
    """Where a simulated device publishes: its topic with each wildcard level filled in (the
    simulator's pattern keeps ``{point}`` for plain payloads)."""
    conn, m = asset.connection.mqtt, config.profile(asset.profile).mqtt
    if conn.gateway:
        return str(conn.topic or GATEWAY_TOPIC)
    return _concrete(conn.topic or m.topic, config.site.id, device_name(asset))


def status_topic(config: Any, asset: Any) -> str | None:
    """Where a simulated device says online/offline, if its profile or connection has a status topic."""
    conn, m = asset.connection.mqtt, config.profile(asset.profile).mqtt
    pattern = conn.status_topic or m.status_topic
    return None if conn.gateway or not pattern else _concrete(pattern, config.site.id, device_name(asset))


def _concrete(pattern: str, site: str, device: str) -> str:
    levels = [level for level in _fill(pattern, site, device).split("/") if level != "#"]
    return "/".join("sim" if level == "+" else level for level in levels)


def _fill(pattern: str, site: str, device: str, point: str | None = None) -> str:
    """A topic pattern with its placeholders filled (other braces are topic characters, not errors)."""
    topic = pattern.replace("{site}", site).replace("{asset}", device)
    return topic if point is None else topic.replace("{point}", point)
