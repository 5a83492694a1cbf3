"""The fleet side of a site config: how many monitord instances watch this site, and which one this is.

Config layer, beside ``site``. ``fleet:`` in the site file says how the site is
run: by one instance (``single``, the default), by an HA pair or more of
identical instances of which one is active (``ha``), or split across
``shards`` instances by a stable hash of the asset id (``shard``). Which
instance a process is (its name, and in a sharded site its shard) is not in the
file, because every instance of a site shares the file: ``monitord run``
takes ``--instance`` and ``--shard`` (or ``MONITORD_INSTANCE`` and
``MONITORD_SHARD``). docs/scale-out.md tells the whole story.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from monitord.config.yamlio import problem
from monitord.core.errors import ConfigError
from monitord.core.schema import Strict, in_range
from monitord.core.units import Duration

Mode = Literal["single", "ha", "shard"]


class FleetConfig(Strict):
    mode: Mode = Field("single", description="single: one instance; ha: one active of several; shard: split")
    shards: Annotated[int, in_range(1, 256)] = Field(1, description="shard mode: how many instances share")
    keepalive: Duration = Field(
        2.0, description="MQTT keep-alive of the fleet connection: a dead instance is known within 1.5×"
    )
    topic: str = Field(
        "monitord", pattern=r"^[^#+]+$", description="topic prefix of the fleet's retained state messages"
    )
    pin: dict[str, Annotated[int, in_range(0, 255)]] = Field(
        {}, description="shard mode: asset id → shard, instead of the hash (moves the asset's whole line)"
    )
    settle: Duration = Field(
        1.0, description="ha: how long a (re)connected instance collects presences before it may claim"
    )


@dataclass(frozen=True)
class Member:
    """This process in its site's fleet: its instance name and, in a sharded site, its shard (0-based)."""

    instance: str
    shard: int = 0

    @classmethod
    def from_args(cls, instance: str | None, shard: int | None) -> Member:
        """Command-line values first, then ``MONITORD_INSTANCE``/``MONITORD_SHARD``, then the host name."""
        name = instance or os.environ.get("MONITORD_INSTANCE") or socket.gethostname()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            # It names a retained topic and the instance's local files: no /, +, # or spaces.
            raise ConfigError(
                [f"--instance: letters, digits, '.', '_' and '-' only (up to 64), got {name!r}"]
            )
        raw = shard if shard is not None else os.environ.get("MONITORD_SHARD", "0")
        try:
            k = int(raw)
        except ValueError:
            raise ConfigError([f"--shard: expected a shard number, got {raw!r}"]) from None
        return cls(name, k)

    def check(self, fleet: FleetConfig) -> None:
        """Refuse a shard number outside the site's ``fleet.shards``."""
        if fleet.mode == "shard" and not 0 <= self.shard < fleet.shards:
            raise ConfigError([f"--shard: must be 0..{fleet.shards - 1} (fleet.shards), got {self.shard}"])


def fleet_problems(fleet: FleetConfig, *, broker: bool, shared_store: bool, raw: object) -> list[str]:
    """An HA pair coordinates on the site's broker and shares tickets and pages through InfluxDB:
    without either, two instances would both act (or lose what the other did), so refuse it."""
    if fleet.mode != "ha":
        return []
    out = []
    if not broker:
        out.append(problem(raw, ("fleet", "mode"), "mode ha needs the site's mqtt: broker (leadership)"))
    if not shared_store:
        out.append(
            problem(
                raw, ("fleet", "mode"), "mode ha needs a shared store (store: kind: influxdb), not SQLite"
            )
        )
    return out
