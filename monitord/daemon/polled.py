"""Build the BACnet and SNMP drivers of a site (the daemon's request/reply drivers besides Modbus).

Sits in the daemon beside ``app``: it reads the config schema so that the
drivers need not (drivers sit below config). Each returns ``None`` when no
asset of the site uses the protocol, so a site without it opens no socket.
"""

from __future__ import annotations

from typing import Protocol

from monitord.config.site import SiteConfig
from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.drivers.bacnet import BacnetDevice, BacnetDriver
from monitord.drivers.snmp import SnmpDevice, SnmpDriver
from monitord.ingest.bus import SampleBus


class Driver(Protocol):
    """The shape every driver has: run until cancelled, close what it holds."""

    async def run(self) -> None: ...

    def close(self) -> None: ...


def bacnet_driver(config: SiteConfig, bus: SampleBus, clock: Clock, metrics: Metrics) -> BacnetDriver | None:
    devices = [
        BacnetDevice.from_profile(
            a.id, b.host, b.port, config.poll_of(a), b.timeout, config.profile(a.profile)
        )
        for a in config.assets
        if (b := a.connection.bacnet) is not None
    ]
    if not devices:
        return None
    return BacnetDriver(config.bacnet.local, config.bacnet.device_id, devices, bus, clock, metrics)


def snmp_driver(config: SiteConfig, bus: SampleBus, clock: Clock, metrics: Metrics) -> SnmpDriver | None:
    devices = [
        SnmpDevice.from_profile(
            a.id, s.host, s.port, s.community, config.poll_of(a), s.timeout, config.profile(a.profile)
        )
        for a in config.assets
        if (s := a.connection.snmp) is not None
    ]
    return SnmpDriver(devices, bus, clock, metrics) if devices else None


def polled_drivers(config: SiteConfig, bus: SampleBus, clock: Clock, metrics: Metrics) -> dict[str, Driver]:
    """Name → driver for each of BACnet and SNMP that the site uses."""
    made: dict[str, Driver | None] = {
        "bacnet": bacnet_driver(config, bus, clock, metrics),
        "snmp": snmp_driver(config, bus, clock, metrics),
    }
    return {name: d for name, d in made.items() if d is not None}
