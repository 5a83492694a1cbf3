"""Site configuration: YAML with ``include:``, pydantic models, cross-checks.

Nothing in the pipeline starts from an unchecked config. ``load_config``
returns a ``SiteConfig`` or raises ``ConfigError`` with one message per
problem, each naming file, line and key path (``site.yaml:14
assets[2].connection.modbus.port: must be 1..65535, got 70000``).
"""

from __future__ import annotations

import datetime
import difflib
import functools
import ipaddress
import math
import os
import re
import ssl
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from monitord.alerting.mute import MaintenanceWindow
from monitord.config.fleet import FleetConfig, fleet_problems
from monitord.config.modbus import ModbusConnection, Port, check_lines, line_budget
from monitord.config.mqtt import check_claims
from monitord.config.shards import check_shards
from monitord.config.spoolcheck import spool_problems
from monitord.config.tokens import token_problems
from monitord.config.yamlio import LineDict, expand_env, is_secret_key, load_yaml, mask, problem
from monitord.core.assets import Asset
from monitord.core.errors import ConfigError
from monitord.core.i18n import Locale
from monitord.core.model import Quality, SampleBatch
from monitord.core.schema import Strict, in_range
from monitord.core.units import Duration
from monitord.drivers.modbus_line import Budget
from monitord.ingest.profiles import AssetType, DeviceProfile, Publishes
from monitord.ingest.state import AssetSlot, StateTable
from monitord.people.alertmanager import AlertmanagerConfig
from monitord.people.notify import SmtpConfig
from monitord.people.roster import RosterConfig
from monitord.rules import PACKS_DIR
from monitord.rules.engine import RuleEngine, RuleError, matches
from monitord.rules.expr import ExpressionError, compile_expression
from monitord.rules.spec import RuleSpec
from monitord.tickets.sla import DEFAULT_SLA, Sla

# The built-in profiles, sites and scenarios: the checkout's config/, shipped as monitord/builtin.
CONFIG_DIR = Path(os.environ.get("MONITORD_CONFIG_DIR", Path(__file__).resolve().parents[1] / "builtin"))


class SiteInfo(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = ""
    locale: Locale = Field("en", description="zh-CN or en: the language of pages, summaries and screens")
    code: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{1,8}$",
        description="short code in ticket ids, WO-<code>-YYYYMMDD-NNNN (default: the id in capitals)",
    )

    @property
    def ticket_code(self) -> str:
        """What ticket ids carry: unique per site, so sites sharing one store never share an id."""
        return self.code or self.id.upper()


class SqliteStoreConfig(Strict):
    kind: Literal["sqlite"] = "sqlite"
    path: str = "./monitord-data/monitord.db"
    flush_interval: Duration = 1.0
    spool: str | None = Field(None, description="writes wait here while the file refuses them (<path>.spool)")
    spool_max_mb: Annotated[int, in_range(1, 1_000_000)] = 512


class InfluxStoreConfig(Strict):
    kind: Literal["influxdb"]
    url: str = Field(pattern=r"^https?://")
    bucket: str = Field(description="bucket (2.x/3.x) or database/retention policy (1.x)")
    org: str = ""
    token: str | None = None
    username: str | None = None
    password: str | None = None
    flush_interval: Duration = 1.0
    spool: str = "./monitord-data/spool"
    spool_max_mb: Annotated[int, in_range(1, 1_000_000)] = 512


StoreConfig = Annotated[SqliteStoreConfig | InfluxStoreConfig, Field(discriminator="kind")]


class MqttConfig(Strict):
    url: str = Field("mqtt://127.0.0.1:1883", pattern=r"^mqtts?://[^:/]+(:\d+)?/?$")
    client_id: str = Field("monitord", description="stable: the broker keeps the session under it")
    username: str | None = None
    password: str | None = None
    qos: Annotated[int, in_range(0, 1)] = Field(1, description="of the subscriptions; 1: none lost away")
    persistent_session: bool = Field(
        True, description="clean_session false: the broker keeps QoS 1 messages while monitord is away"
    )
    ca: str | None = Field(None, description="mqtts://: CA file the broker's certificate must chain to")
    cert: str | None = Field(None, description="mqtts://: client certificate file (PEM)")
    key: str | None = Field(None, description="mqtts://: the client certificate's key file (PEM)")
    max_clock_skew: Duration = Field(
        60.0, description="a device timestamp further than this from receive time is replaced by it"
    )
    worker: bool = Field(
        True, description="paho and the payload parse in a child process (docs/performance.md#mqtt-worker)"
    )

    @property
    def host_port(self) -> tuple[str, int]:
        m = re.match(r"^mqtt(s?)://([^:/]+)(?::(\d+))?", self.url)
        assert m is not None  # guaranteed by the pattern
        return m.group(2), int(m.group(3) or (8883 if m.group(1) else 1883))

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")


class MetricsConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, in_range(0, 65535)] = 9108


class MqttConnection(Strict):
    topic: str | None = Field(None, description="the profile's topic pattern, for this asset")
    device: str | None = Field(
        None, description="the device's name on the wire ({asset} in topics, a gateway's key); default: id"
    )
    gateway: Literal["thingsboard"] | None = Field(
        None, description="published by a ThingsBoard IoT Gateway: many devices on one topic, by name"
    )
    status_topic: str | None = Field(None, description="the profile's status_topic pattern, for this asset")
    publishes: Publishes | None = Field(
        None, description="the profile's publishes (whole or changes), for this device or its gateway"
    )


class BacnetConnection(Strict):
    host: str
    port: Port = 47808
    timeout: Duration = 2.0


class SnmpConnection(Strict):
    host: str
    port: Port = 161
    community: str = Field("public", description="SNMP v2c community; use ${ENV} for anything but public")
    timeout: Duration = 1.0


class BacnetConfig(Strict):
    local: str = Field(
        "0.0.0.0:47808",
        pattern=r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?:\d{1,5}$",
        description="address:port monitord's own BACnet/IP device binds to",
    )
    device_id: Annotated[int, in_range(0, 4194302)] = Field(
        4194000, description="monitord's own device instance on the BACnet network"
    )

    @field_validator("local")
    @classmethod
    def _address(cls, value: str) -> str:
        host, port = value.rsplit(":", 1)
        try:
            ipaddress.IPv4Interface(host)  # 192.168.1.10 or 192.168.1.10/24 (the subnet for broadcasts)
        except ValueError:
            text = "{host} is not an IPv4 address"
            raise PydanticCustomError("range", text, {"host": repr(host)}) from None
        if not 1 <= int(port) <= 65535:
            raise PydanticCustomError("range", "port must be 1..65535, got {port}", {"port": port})
        return value


class Connection(Strict):
    modbus: ModbusConnection | None = None
    mqtt: MqttConnection | None = None
    bacnet: BacnetConnection | None = None
    snmp: SnmpConnection | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Connection:
        given = [x for x in (self.modbus, self.mqtt, self.bacnet, self.snmp) if x is not None]
        if len(given) != 1:
            raise PydanticCustomError("connection", "give exactly one of modbus, mqtt, bacnet or snmp")
        return self


class AssetConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = ""
    type: AssetType
    profile: str
    connection: Connection
    location: dict[str, str | int] = {}
    depends_on: list[str] = []
    poll: Duration | None = None
    tags: list[str] = []
    params: dict[str, float] = {}


class ApiConfig(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, in_range(0, 65535)] = 9109
    token: str | None = Field(None, description="required on write calls; never logged")
    public_url: str | None = Field(None, description="how people reach the API, for ack links")
    secret: str | None = Field(
        None, description="signs console sessions and notification links (default: kept in the notify log)"
    )
    link_ttl: Duration = Field(86400.0, description="how long a notification's signed link works")
    trusted_proxies: list[str] = Field(
        [], description="addresses whose X-Forwarded-For/-Proto are believed (a reverse proxy's)"
    )


class NotifyConfig(Strict):
    log: str | None = Field(
        None,
        description="SQLite: outbox, sent log and silences (default: notifications.db beside the store)",
    )
    attempts: Annotated[int, in_range(1, 20)] = Field(10, description="tries per page before giving up")
    backoff: Duration = Field(1.0, description="pause after the first failed try; doubles, at most 15 s")
    max_wait: Duration = Field(
        60.0, description="a page not delivered this long after it was queued goes to the next person"
    )
    smtp: SmtpConfig = SmtpConfig()


class TicketsConfig(Strict):
    reopen_window: Duration = Field(
        3600.0, description="a re-fire this soon after resolution reopens the ticket"
    )
    follow_up: Duration = Field(
        86400.0,
        description="回访: a resolved ticket nobody followed up is closed after this long (not followed up)",
    )


class EngineConfig(Strict):
    min_interval: Duration = Field(
        0.03,
        description="data arriving is evaluated no sooner than this after the last evaluation (nor "
        "sooner than nine times what that one cost)",
    )
    max_interval: Duration = 1.0
    offline_after_polls: Annotated[int, in_range(1, 100)] = 3


class SiteConfig(Strict):
    site: SiteInfo
    store: StoreConfig = SqliteStoreConfig()
    mqtt: MqttConfig | None = None
    bacnet: BacnetConfig = BacnetConfig()
    metrics: MetricsConfig = MetricsConfig()
    poll: Duration = 2.0
    engine: EngineConfig = EngineConfig()
    profiles: list[DeviceProfile] = []
    assets: list[AssetConfig]
    rules: list[RuleSpec] = []
    roster: RosterConfig | None = None
    sla: dict[Literal["P1", "P2", "P3", "P4"], Sla] = {}
    api: ApiConfig = ApiConfig()
    notify: NotifyConfig = NotifyConfig()
    maintenance: list[MaintenanceWindow] = []
    tickets: TicketsConfig = TicketsConfig()
    fleet: FleetConfig = FleetConfig()
    alertmanager: AlertmanagerConfig | None = None  # push alerts to it too (docs/alertmanager.md)
    source: str = Field("", exclude=True)

    def profile(self, name: str) -> DeviceProfile:
        return next(p for p in self.profiles if p.profile == name)

    def poll_of(self, asset: AssetConfig) -> float:
        return asset.poll if asset.poll is not None else self.poll

    def asset(self, asset_id: str) -> AssetConfig:
        return next(a for a in self.assets if a.id == asset_id)

    @property
    def notify_log(self) -> Path:
        """Where the notification log (and the silences) live: ``notify.log`` if given, else
        ``notifications.db`` beside the SQLite store, or beside the InfluxDB spool folder."""
        if self.notify.log is not None:
            return Path(self.notify.log)
        beside = self.store.path if isinstance(self.store, SqliteStoreConfig) else self.store.spool
        return Path(beside).parent / "notifications.db"

    def sla_of(self, priority: str) -> Sla:
        return next((v for k, v in self.sla.items() if k == priority), DEFAULT_SLA[priority])

    def columns(self) -> dict[str, tuple[str, ...]]:
        """The state table's columns per asset type: every point the site's profiles define, plus the
        device library's points the rules read (NaN for every asset here, so a pack rule about a
        device this site does not have stays quiet instead of failing to bind; ``coverage`` warns)."""
        out: dict[str, dict[str, None]] = {}
        for p in self.profiles:
            out.setdefault(p.asset_type, {}).update(dict.fromkeys(p.points))
        library = library_points()
        for spec in self.rules:
            read: set[str] = set()
            for text in (spec.when, spec.clear):
                if text:
                    read |= compile_expression(text).points
            for asset_type, points in out.items():
                if spec.applies_to.type in (None, asset_type):
                    points.update(dict.fromkeys(sorted(read & library.get(asset_type, frozenset()))))
        return {t: tuple(points) for t, points in out.items()}

    def domain_assets(self) -> dict[str, Asset]:
        """Every asset as the stages see it; params merge the profile's device facts and the asset's own."""
        return {
            a.id: Asset(
                id=a.id,
                type=a.type,
                name=a.name,
                location=dict(a.location),
                depends_on=tuple(a.depends_on),
                tags=tuple(a.tags),
                params={**self.profile(a.profile).params, **a.params},
            )
            for a in self.assets
        }


@functools.cache
def library_points() -> dict[str, frozenset[str]]:
    """Per asset type, the points the built-in device profiles define: the names a shipped rule pack
    may read. A pack rule reading a point of a device this site lacks is not an error (it is not
    evaluated, and ``monitord check`` says so); a name no device defines is."""
    out: dict[str, set[str]] = {}
    for path in sorted((CONFIG_DIR / "profiles").glob("*.yaml")):
        profile = DeviceProfile.model_validate(load_yaml(path))
        out.setdefault(profile.asset_type, set()).update(profile.points)
    return {t: frozenset(points) for t, points in out.items()}


def site_zone(config: SiteConfig | None) -> datetime.tzinfo | None:
    """The zone times are shown in to people: the roster's, else (``None``) this machine's local zone."""
    if config is None or config.roster is None:
        return None
    try:
        return ZoneInfo(config.roster.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError([f"roster.timezone: unknown time zone {config.roster.timezone!r}"]) from None


def load_config(path: str | Path) -> SiteConfig:
    """Load, validate and cross-check; raise ``ConfigError`` listing every problem.

    No message shows a secret: values from ``${ENV}`` read as ``${NAME}`` (``yamlio.mask``).
    """
    path = Path(path)
    secrets: dict[str, str] = {}
    try:
        return _load_config(path, secrets)
    except ConfigError as exc:
        raise ConfigError(mask(exc.problems, secrets)) from None
    except RecursionError:  # deep nesting the loader let through (a rule expression)
        raise ConfigError([f"{path}:1 nested too deeply to check"]) from None


def _load_config(path: Path, secrets: dict[str, str]) -> SiteConfig:
    raw = load_yaml(path, search=(CONFIG_DIR, PACKS_DIR.parent.parent))
    if not isinstance(raw, dict):
        raise ConfigError([problem(raw, (), "the file must hold a mapping (site:, assets:, ...)")])
    if unset := expand_env(raw, secrets=secrets):
        raise ConfigError(unset)
    try:
        config = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        # Every problem of the file in one run: set the bad values aside and cross-check the rest.
        problems = [_message(raw, e) for e in exc.errors()]
        rest = _without_bad_values(raw, exc)
        if rest is not None:
            problems += cross_check(rest, raw)
        raise ConfigError(problems) from None
    problems = cross_check(config, raw)
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"source": str(path)})


def _without_bad_values(raw: Any, exc: ValidationError) -> SiteConfig | None:
    """The config with each value pydantic refused left out (so its default applies), if that validates;
    ``None`` when a refusal cannot be left out (a required key, a list item: indices would move)."""
    for _ in range(3):  # leaving one value out may reveal a refusal it masked
        raw = _plain(raw)
        for err in exc.errors():
            loc = [k for k in err["loc"] if not (isinstance(k, str) and k in _TYPE_TAGS)]
            if err["type"] == "missing" or not loc or isinstance(loc[-1], int):
                return None
            node: Any = raw
            for key in loc[:-1]:
                if isinstance(node, dict):
                    node = node.get(key)
                else:
                    node = node[key] if isinstance(node, list) and isinstance(key, int) else None
            if not isinstance(node, dict):
                return None
            node.pop(loc[-1], None)
        try:
            return SiteConfig.model_validate(raw)
        except ValidationError as again:
            exc = again
    return None


def _plain(node: Any) -> Any:
    """A copy of loaded YAML as plain dicts and lists (the original keeps its line marks)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _message(raw: Any, err: Any) -> str:
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    if is_secret_key(loc):
        value = "***"  # a secret by its name is never echoed, whatever went wrong with it
    if kind == "missing":
        text = "required key is missing"
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        text = "unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
        if allowed:
            text += f"; expected one of: {', '.join(allowed)}"
    elif kind == "literal_error":
        text = f"must be one of {err['ctx']['expected']}, got {value!r}"
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        text = f"must be a whole number, got {value!r}"
    elif kind in ("float_parsing", "float_type"):
        text = f"must be a number, got {value!r}"
    elif kind == "string_pattern_mismatch":
        text = f"{value!r} has characters that are not allowed (pattern {err['ctx']['pattern']})"
    elif kind in ("range", "duration", "connection", "scale", "locale"):
        text = err["msg"]
    else:
        msg = err["msg"]
        text = msg[0].lower() + msg[1:]
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text += f", got {value!r}"
    # pydantic puts union member names in the path (e.g. 'str', 'int'); people never wrote them
    loc = tuple(k for k in loc if not (isinstance(k, str) and k in _TYPE_TAGS))
    return problem(raw, loc, text)


_TYPE_TAGS = {
    "str",
    "int",
    "float",
    "bool",
    "function-after[check(), int]",
    "function-after[_standard_baud(), int]",
    "sqlite",
    "influxdb",
}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a model at ``loc`` accepts, for 'did you mean' hints."""
    tp: Any = SiteConfig
    for key in loc:
        tp = _unwrap(tp)
        if isinstance(key, int):
            args = typing.get_args(tp)
            tp = args[-1] if args else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if (f.alias or n) == key), None)
            tp = field.annotation if field else None
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args and typing.get_origin(tp) is dict else None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted(f.alias or n for n, f in tp.model_fields.items() if not f.exclude)
    return []


def _unwrap(tp: Any) -> Any:
    """``X | None`` → ``X``; annotated types → their base."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def cross_check(config: SiteConfig, raw: Any) -> list[str]:
    """References between parts of the config; each broken one is a problem."""
    out: list[str] = []
    profiles: dict[str, DeviceProfile] = {}
    points_by_type: dict[str, set[str]] = {}
    for i, p in enumerate(config.profiles):
        if p.profile in profiles:
            out.append(problem(raw, ("profiles", i, "profile"), f"duplicate profile {p.profile!r}"))
        profiles[p.profile] = p
        points_by_type.setdefault(p.asset_type, set()).update(p.points)
    seen: set[str] = set()
    ids = {a.id for a in config.assets}
    unresolved: set[str] = set()  # types with an asset whose profile is unknown
    bacnet_at: dict[tuple[str, int], str] = {}
    for i, a in enumerate(config.assets):
        where = ("assets", i)
        if a.id in seen:
            out.append(problem(raw, (*where, "id"), f"duplicate asset id {a.id!r}"))
        seen.add(a.id)
        prof = profiles.get(a.profile)
        if prof is None:
            near = difflib.get_close_matches(a.profile, list(profiles), n=1)
            hint = (
                f" (did you mean {near[0]!r}?)"
                if near
                else f"; known: {', '.join(sorted(profiles)) or 'none'}"
            )
            out.append(problem(raw, (*where, "profile"), f"unknown profile {a.profile!r}{hint}"))
            unresolved.add(a.type)
        else:
            if prof.asset_type != a.type:
                out.append(
                    problem(
                        raw,
                        (*where, "type"),
                        f"asset type {a.type!r} does not match profile {prof.profile!r} ({prof.asset_type})",
                    )
                )
            if a.connection.modbus and not prof.modbus_encodings():
                out.append(
                    problem(
                        raw,
                        (*where, "connection", "modbus"),
                        f"profile {prof.profile!r} has no Modbus register map",
                    )
                )
            if a.connection.mqtt and prof.mqtt is None:
                out.append(
                    problem(
                        raw, (*where, "connection", "mqtt"), f"profile {prof.profile!r} has no mqtt section"
                    )
                )
            out += _protocol_map(a, prof, raw, where)
        if (b := a.connection.bacnet) is not None:
            # BACnet/IP: one device per address:port (routed networks are not supported).
            other = bacnet_at.setdefault((b.host, b.port), a.id)
            if other != a.id:
                text = f"BACnet device {b.host}:{b.port} is already asset {other!r}"
                out.append(problem(raw, (*where, "connection", "bacnet"), text))
        if a.connection.mqtt and config.mqtt is None:
            out.append(
                problem(raw, (*where, "connection", "mqtt"), "an MQTT asset needs a top-level mqtt: broker")
            )
        if (
            a.connection.mqtt
            and a.connection.mqtt.gateway
            and prof
            and prof.mqtt
            and prof.mqtt.format != "json"
        ):
            loc = (*where, "connection", "mqtt", "gateway")
            out.append(
                problem(raw, loc, f"a gateway carries JSON: profile {prof.profile!r} is format: plain")
            )
        for j, dep in enumerate(a.depends_on):
            if dep not in ids:
                out.append(problem(raw, (*where, "depends_on", j), f"unknown asset {dep!r}"))
            elif dep == a.id:
                out.append(problem(raw, (*where, "depends_on", j), "an asset cannot depend on itself"))
    index = {id(a): i for i, a in enumerate(config.assets)}
    lines = modbus_lines(config).values()
    out += check_lines(([(index[id(a)], a.id, modbus_of(a)) for a in assets] for assets in lines), raw)
    out += check_claims(config, raw)
    out += check_shards(config, raw)
    out += _check_tls(config, raw)
    out += spool_problems(config.store, raw)
    out += token_problems(config.roster, config.api.token, raw)
    shared = isinstance(config.store, InfluxStoreConfig)
    out += fleet_problems(config.fleet, broker=config.mqtt is not None, shared_store=shared, raw=raw)
    out += _check_rules(config, raw, points_by_type, profiles, unresolved)
    if not out:  # only a config that is otherwise sound can be built into tables and tried
        out += trial_run(config, raw)
    if config.roster is not None:
        served = {s for team in config.roster.teams.values() for s in team.skills}
        for i, r in enumerate(config.rules):
            if r.ticket is not None and r.ticket.skill not in served:
                written = _written(raw, ("rules", i, "ticket", "skill"))
                text = f"no roster team serves skill {r.ticket.skill!r}"
                if not written:  # say which default applied, at the rule, not at a key nobody wrote
                    text = f"the rule gives no ticket.skill, so the default {r.ticket.skill!r} holds: {text}"
                at = ("rules", i, "ticket", "skill") if written else ("rules", i)
                out.append(problem(raw, at, f"{text}; known: {', '.join(sorted(served))}"))
    return out


def _protocol_map(a: AssetConfig, prof: DeviceProfile, raw: Any, where: tuple[Any, ...]) -> list[str]:
    """A BACnet or SNMP connection needs a profile that says which objects or OIDs to read."""
    if a.connection.bacnet and not prof.bacnet_points():
        text = f"profile {prof.profile!r} has no BACnet object map (points with object: type:instance)"
        return [problem(raw, (*where, "connection", "bacnet"), text)]
    if a.connection.snmp and not prof.snmp_points():
        text = f"profile {prof.profile!r} has no SNMP OID map (points with oid:)"
        return [problem(raw, (*where, "connection", "snmp"), text)]
    return []


def modbus_lines(config: SiteConfig) -> dict[tuple[str, int | str], list[AssetConfig]]:
    """The Modbus assets by line (endpoint or serial port), in config order: one master per line."""
    lines: dict[tuple[str, int | str], list[AssetConfig]] = {}
    for a in config.assets:
        if a.connection.modbus is not None:
            lines.setdefault(a.connection.modbus.line.key, []).append(a)
    return lines


def line_budgets(config: SiteConfig) -> list[Budget]:
    """Per RTU line: what its devices' read plans and poll intervals ask of the wire."""
    return [
        line_budget([(a.id, modbus_of(a), config.profile(a.profile), config.poll_of(a)) for a in assets])
        for assets in modbus_lines(config).values()
        if modbus_of(assets[0]).line.rtu
    ]


def modbus_of(asset: AssetConfig) -> ModbusConnection:
    """The Modbus connection of an asset ``modbus_lines`` returned."""
    assert asset.connection.modbus is not None  # modbus_lines holds only Modbus assets
    return asset.connection.modbus


def _check_tls(config: SiteConfig, raw: Any) -> list[str]:
    """``mqtts://`` files exist and come in pairs; plain ``mqtt://`` takes none (they would be ignored)."""
    m, out = config.mqtt, []
    if m is None:
        return []
    for key in ("ca", "cert", "key"):
        path = getattr(m, key)
        if path is not None and not m.tls:
            out.append(problem(raw, ("mqtt", key), "only an mqtts:// url uses certificates"))
        elif path is not None and not Path(path).is_file():
            out.append(problem(raw, ("mqtt", key), f"no such file {path!r}"))
    if (m.cert is None) != (m.key is None):
        out.append(problem(raw, ("mqtt", "cert" if m.cert else "key"), "give both cert and key, or neither"))
    if out or not m.tls:
        return out
    # Loaded here as the driver will load them: a file that is not what it should be is a config
    # error at its line, not a daemon that stops at start-up.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if m.ca:
            context.load_verify_locations(m.ca)
    except (ssl.SSLError, OSError) as exc:
        out.append(problem(raw, ("mqtt", "ca"), f"not a PEM CA certificate: {exc}"))
    try:
        if m.cert:
            context.load_cert_chain(m.cert, m.key)
    except (ssl.SSLError, OSError) as exc:
        out.append(problem(raw, ("mqtt", "cert"), f"cert and key do not load as a PEM pair: {exc}"))
    return out


def _written(raw: Any, loc: tuple[Any, ...]) -> bool:
    """Whether the YAML itself holds ``loc`` (not a default of the schema)."""
    node = raw
    for key in loc:
        inside = key in node if isinstance(node, dict) else isinstance(key, int) and key < len(node)
        if not isinstance(node, dict | list) or not inside:
            return False
        node = node[key]
    return True


def _check_rules(
    config: SiteConfig,
    raw: Any,
    points_by_type: dict[str, set[str]],
    profiles: dict[str, DeviceProfile],
    unresolved: set[str],
) -> list[str]:
    out: list[str] = []
    rule_ids: set[str] = set()
    for i, r in enumerate(config.rules):
        if r.id in rule_ids:
            out.append(problem(raw, ("rules", i, "id"), f"duplicate rule id {r.id!r}"))
        rule_ids.add(r.id)
        targets = [
            a
            for a in config.assets
            if (r.applies_to.type in (None, a.type))
            and all(t in a.tags for t in r.applies_to.tags)
            and (not r.applies_to.ids or a.id in r.applies_to.ids)
        ]
        for j, aid in enumerate(r.applies_to.ids):
            if aid not in {a.id for a in config.assets}:
                out.append(problem(raw, ("rules", i, "applies_to", "ids", j), f"unknown asset {aid!r}"))
        types_: list[str | None] = [*sorted({a.type for a in targets})]
        for key in ("when", "clear"):
            text = getattr(r, key)
            if text is None:
                continue
            # No matching asset: the points of the type it names, else syntax only.
            for asset_type in types_ or [r.applies_to.type]:
                if asset_type in unresolved:
                    continue
                # None (syntax only) for a type nothing here defines: gateways get theirs at run time
                known = (
                    points_by_type.get(asset_type, set()) | library_points().get(asset_type, frozenset())
                    if asset_type
                    else set()
                ) or None
                try:
                    compiled = compile_expression(text, known_points=known)
                except ExpressionError as exc:
                    on = f" (for {asset_type} assets)" if len(types_) > 1 else ""
                    out.append(
                        problem(raw, ("rules", i, key), f"{exc}{on} at column {exc.column} in {text!r}")
                    )
                    break
                except RecursionError:
                    out.append(problem(raw, ("rules", i, key), "expression nested too deeply"))
                    break
                for name in sorted(compiled.params):
                    for a in targets:
                        prof = profiles.get(a.profile)
                        if (
                            a.type == asset_type
                            and name not in r.params
                            and name not in a.params
                            and not (prof and name in prof.params)
                        ):
                            out.append(
                                problem(
                                    raw,
                                    ("rules", i, key),
                                    f"param.{name} has no default in the rule and asset {a.id!r} sets none",
                                )
                            )
    return out


def _table(config: SiteConfig, start: float) -> StateTable:
    """A state table for the config's assets, with the columns the daemon's table has."""
    slots = [
        AssetSlot(a.id, a.type, tuple(config.profile(a.profile).points), math.inf) for a in config.assets
    ]
    return StateTable(slots, started=start, columns=config.columns())


def trial_run(config: SiteConfig, raw: Any) -> list[str]:
    """Evaluate every rule on a synthetic table of the types it applies to: one that would raise at run
    time is an error now, naming the rule's file:line. Every point of every asset gets a good value,
    twice (1 then 2, one second apart), so windowed functions see history and a change."""
    start = 1_700_000_000.0
    state = _table(config, start)
    assets = list(config.domain_assets().values())
    out: list[str] = []
    for i, spec in enumerate(config.rules):
        try:
            engine = RuleEngine([spec], state, assets)
            engine.log_failures = False
        except (RuleError, ExpressionError) as exc:
            out.append(problem(raw, ("rules", i, "when"), f"cannot bind rule {spec.id!r}: {exc}"))
            continue
        for step, value in enumerate((1.0, 2.0)):
            now = start + 2 * i + step  # one shared table: each rule's samples are newer than the last's
            for a in config.assets:
                names = tuple(config.profile(a.profile).points)
                good = np.full(len(names), int(Quality.GOOD), np.int8)
                state.apply(SampleBatch(now, a.id, names, np.full(len(names), value), good))
            engine.evaluate(now)
        for key, what in engine.broken.items():
            on = key.split("#")[1]
            out.append(problem(raw, ("rules", i, "when"), f"fails when evaluated on {on} assets: {what}"))
    return out


@dataclass(frozen=True)
class Gap:
    """A rule that applies to an asset but cannot be evaluated for it: its profile lacks points."""

    asset: str
    rule: str
    missing: tuple[str, ...]


def coverage(config: SiteConfig) -> list[Gap]:
    """Per asset, the rules that apply to it but that its own profile cannot feed.

    A rule is fed when the profile provides every point its ``when`` reads — or, for a top-level
    ``a or b``, every point of one alternative (the engine drops the others for that asset).
    """
    gaps: list[Gap] = []
    needs: dict[str, list[frozenset[str]]] = {}  # rule → point sets, any one of which feeds it
    for spec in config.rules:
        when = compile_expression(spec.when)
        aged = frozenset(when.aged_points)
        alternatives = [points for _fn, points in when.branches] or [frozenset(when.points)]
        needs[spec.id] = [points | aged for points in alternatives]
    for asset in config.domain_assets().values():
        provided = set(config.profile(config.asset(asset.id).profile).points)
        for spec in config.rules:
            if not matches(spec, asset) or any(points <= provided for points in needs[spec.id]):
                continue
            missing = set().union(*needs[spec.id]) - provided
            gaps.append(Gap(asset.id, spec.id, tuple(sorted(missing))))
    return gaps


def load_rules(path: str | Path, config: SiteConfig) -> list[RuleSpec]:
    """A rule file (a list of rules, ``include:`` allowed), checked against a site's assets."""
    path = Path(path)
    raw_rules = load_yaml(path, search=(CONFIG_DIR, PACKS_DIR.parent.parent))
    if not isinstance(raw_rules, list):
        raise ConfigError([problem(raw_rules, (), "a rule file holds a list of rules")])
    wrapper = LineDict(rules=raw_rules)
    wrapper.mark = getattr(raw_rules, "mark", (str(path), 1))
    wrapper.marks = {"rules": wrapper.mark}
    try:
        specs = TypeAdapter(list[RuleSpec]).validate_python(raw_rules)
    except ValidationError as exc:
        raise ConfigError(
            [_message(wrapper, {**e, "loc": ("rules", *e["loc"])}) for e in exc.errors()]
        ) from None
    # The site itself was checked when it loaded: what is new here are the rules and their references.
    problems = cross_check(config.model_copy(update={"rules": specs}), wrapper)
    if problems:
        raise ConfigError(problems)
    return specs
