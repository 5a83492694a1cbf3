"""Which shard of a sharded site owns each asset: a stable hash of the asset's polling unit.

Config layer, beside ``fleet``. With ``fleet: {mode: shard, shards: N}`` every
asset belongs to exactly one shard. The unit of assignment is what must be
polled by one master: a Modbus line (a TCP endpoint, serial port or serial
server, with every unit behind it and its synthetic gateway asset), a
ThingsBoard gateway topic, else the asset itself. A unit's shard is the CRC-32
of its key modulo N — never Python's ``hash()``, which is salted per process,
so every instance of the site computes the same plan from the same file —
unless ``fleet.pin`` names one of its assets. docs/scale-out.md#sharded-campus.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitord.config.mqtt import GATEWAY_TOPIC
from monitord.config.yamlio import problem


def stable_shard(key: str, shards: int) -> int:
    """The shard of a key: CRC-32 of its UTF-8 bytes modulo ``shards`` (the same in every process)."""
    return zlib.crc32(key.encode()) % shards


def unit_of(asset: Any) -> str:
    """The key of what must be polled by one instance: the asset's Modbus line, its ThingsBoard
    gateway topic, else the asset (a synthetic gateway asset's id is its line's key)."""
    conn = asset.connection
    if conn.modbus is not None:
        return str(conn.modbus.line.asset_id())
    if conn.mqtt is not None and conn.mqtt.gateway:
        return f"mqtt-gateway:{conn.mqtt.topic or GATEWAY_TOPIC}"
    return str(asset.id)


@dataclass(frozen=True)
class ShardPlan:
    """Asset id → owning shard, for every asset of the site."""

    shards: int
    owner: Mapping[str, int]

    @classmethod
    def of(cls, config: Any) -> ShardPlan:
        fleet = config.fleet
        n = fleet.shards if fleet.mode == "shard" else 1
        by_id = {a.id: a for a in config.assets}
        pinned = {unit_of(by_id[a]): k for a, k in fleet.pin.items() if a in by_id}
        owner = {}
        for a in config.assets:
            unit = unit_of(a)
            owner[a.id] = pinned.get(unit, stable_shard(unit, n)) % n
        return cls(n, owner)

    def owns(self, shard: int, asset: str) -> bool:
        """Whether ``shard`` owns ``asset``; an id the site does not have is nobody's."""
        return self.owner.get(asset) == shard

    def counts(self) -> list[int]:
        """Assets per shard, shard 0 first."""
        per = Counter(self.owner.values())
        return [per.get(k, 0) for k in range(self.shards)]


def check_shards(config: Any, raw: Any) -> list[str]:
    """``fleet.pin`` problems at their file:line: an unknown asset, a shard past ``fleet.shards``, a
    pin outside shard mode, and two pins that would split one line (or gateway topic) across shards.
    Shard mode needs the site's MQTT broker: the shards exchange topology facts through it."""
    fleet, out = config.fleet, []
    if fleet.mode == "shard" and config.mqtt is None:
        out.append(
            problem(
                raw,
                ("fleet", "mode"),
                "shard mode needs a top-level mqtt: broker (shards exchange facts through it)",
            )
        )
    by_id = {a.id: a for a in config.assets}
    first: dict[str, tuple[str, int]] = {}  # unit → (the first pinned asset on it, its shard)
    for asset, k in fleet.pin.items():
        where = ("fleet", "pin", asset)
        if fleet.mode != "shard":
            out.append(problem(raw, where, f"pins apply to mode: shard only (mode is {fleet.mode})"))
        elif k >= fleet.shards:
            out.append(problem(raw, where, f"shard must be 0..{fleet.shards - 1} (fleet.shards), got {k}"))
        if asset not in by_id:
            out.append(problem(raw, where, f"unknown asset {asset!r}"))
            continue
        unit = unit_of(by_id[asset])
        other, shard = first.setdefault(unit, (asset, k))
        if shard != k:
            text = f"{unit} is pinned to shard {shard} by {other!r}: a line is polled by one instance"
            out.append(problem(raw, where, f"{text}, so {asset!r} cannot go to shard {k}"))
    return out


def shard_code(code: str, shard: int) -> str:
    """The ticket code of one shard: ``<site code>-S<k>``, so shards writing one store never number
    the same id (``WO-TA-S1-20261201-0001``) and each knows its own tickets again at start-up."""
    return f"{code}-S{shard}"


def owns_ticket(plan: ShardPlan, shard: int, code: str, ticket: str, asset: str) -> bool:
    """Whether shard ``shard`` restores this ticket: one numbered with its code; one numbered with
    another shard's code is that shard's; one from before the site was sharded (the plain site
    code) belongs to its asset's owner, and a resident's request without an asset to shard 0."""
    marked = re.match(rf"^WO-{re.escape(code)}-S(\d+)-\d{{8}}-", ticket)
    if marked:
        return int(marked.group(1)) == shard
    return plan.owns(shard, asset) if asset else shard == 0


def own_share(config: Any, shard: int) -> Any:
    """The site as shard ``shard`` runs it: only the assets it owns (their ``depends_on`` may name
    assets of other shards), its own ticket code, and an MQTT client id of its own, since a broker
    drops the older of two connections under one id."""
    plan = ShardPlan.of(config)
    assets = [a for a in config.assets if plan.owns(shard, a.id)]
    site = config.site.model_copy(update={"code": shard_code(config.site.ticket_code, shard)})
    update: dict[str, Any] = {"assets": assets, "site": site}
    if config.mqtt is not None:
        update["mqtt"] = config.mqtt.model_copy(update={"client_id": f"{config.mqtt.client_id}-shard{shard}"})
    return config.model_copy(update=update)
