"""SNMP v2c driver: polls the OIDs of a profile (the UPS-MIB for UPSs) with one GET per device.

Sits before the ``SampleBus``, beside the Modbus driver, and is the only module
that imports pysnmp for reading (its asyncio API, pysnmp ≥ 6). Each poll is
one GetRequest for every OID of the device's profile: the answer becomes one
batch (value × scale + offset, like a register); no answer within the timeout
becomes ``comm_error`` samples and, once per outage, an offline health change,
as in the Modbus driver. An agent drops a request with a wrong community
without a word, so a wrong community looks like a silent agent; the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyasn1.type.univ import Null
from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    get_cmd,
)

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import FloatArray, Quality
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile

from .verdict import Verdict, poll_each, specs_of

log = logging.getLogger(__name__)


def as_number(value: Any) -> float:
    """An SNMP value as a float: INTEGER, Gauge32, Counter32, TimeTicks, or a numeric string.
    noSuchObject, noSuchInstance, endOfMibView (all ASN.1 NULL-like) and anything else: NaN."""
    if isinstance(value, Null) or not value.isValue:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        try:
            return float(str(value))
        except ValueError:
            return math.nan


@dataclass
class SnmpDevice:
    """One agent: where it is, how to ask it, what each OID means."""

    verdict: Verdict
    host: str
    port: int
    community: str
    timeout: float
    interval: float
    oids: tuple[str, ...]
    scale: FloatArray
    offset: FloatArray
    asked: tuple[tuple[int, ...], ...] = ()  # the OIDs as numbers, to check each answer's name
    target: UdpTransportTarget | None = None
    warned_community: bool = False

    @classmethod
    def from_profile(
        cls,
        asset: str,
        host: str,
        port: int,
        community: str,
        interval: float,
        timeout: float,
        profile: DeviceProfile,
    ) -> SnmpDevice:
        oids = profile.snmp_points()
        specs = specs_of(profile.points, list(oids))
        verdict = Verdict.of("snmp", asset, f"{host}:{port}", specs)
        scale = np.array([s.scale for s in specs.values()])
        offset = np.array([s.offset for s in specs.values()])
        asked = tuple(tuple(int(x) for x in o.split(".")) for o in oids.values())
        return cls(
            verdict, host, port, community, timeout, interval, tuple(oids.values()), scale, offset, asked
        )


class SnmpDriver:
    """Polls every SNMP agent on its own interval from one pysnmp engine."""

    def __init__(self, devices: list[SnmpDevice], bus: SampleBus, clock: Clock, metrics: Metrics) -> None:
        self.devices, self.bus, self.clock, self.metrics = devices, bus, clock, metrics
        self.engine: SnmpEngine | None = None

    async def run(self) -> None:
        self.engine = SnmpEngine()
        try:
            await poll_each(self.devices, self.poll)
        finally:
            self.close()

    def close(self) -> None:
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.close_dispatcher()
            self.engine = None

    async def poll(self, dev: SnmpDevice) -> None:
        """GET every OID of one agent and publish one batch; never raises."""
        assert self.engine is not None
        read = dev.verdict.start(self.clock)
        try:
            if dev.target is None:
                # retries=0: one lost datagram is one comm_error poll; the next poll is the retry.
                dev.target = await UdpTransportTarget.create(
                    (dev.host, dev.port), timeout=dev.timeout, retries=0
                )
            async with asyncio.timeout(dev.timeout * 2):  # pysnmp times out first; this is the backstop
                error, status, index, binds = await get_cmd(
                    self.engine,
                    CommunityData(dev.community, mpModel=1),  # mpModel 1: SNMP v2c
                    dev.target,
                    ContextData(),
                    *(ObjectType(ObjectIdentity(o)) for o in dev.oids),
                )
        except (TimeoutError, OSError, PySnmpError) as exc:  # PySnmpError: e.g. a name that does not resolve
            error, status, index, binds = exc, 0, 0, ()
        if error is not None:
            read.failed(f"no reply ({error})")
            kind = "io" if isinstance(error, OSError | PySnmpError) else "timeout"
            self.metrics.driver_errors.labels("snmp", kind).inc()
            if not dev.warned_community and dev.verdict.online:
                log.info("snmp %s: no reply; an agent ignores a wrong community silently", dev.verdict.where)
                dev.warned_community = True
        elif int(status):
            # It answered with an error-status (tooBig, genErr, ...): the values are not there.
            self.metrics.driver_errors.labels("snmp", "error").inc()
            read.failed(f"error-status {status.prettyPrint()} at {index}", answered=True)
        else:
            # A value counts only under the OID it was asked for: an agent that answers out of order
            # or with other objects must not put one object's value under another's name.
            raw = np.array(
                [
                    as_number(v) if tuple(name) == want else math.nan
                    for (name, v), want in zip(
                        binds, dev.asked, strict=False
                    )  # a short answer: checked below
                ]
            )
            if len(raw) == len(read.values):
                read.values[:] = raw * dev.scale + dev.offset
                read.quality[:] = int(Quality.GOOD)  # NaN (noSuchObject, another OID) becomes decode_error
            else:
                read.quality[:] = int(Quality.DECODE_ERROR)
        dev.verdict.finish(self.bus, self.metrics, read)
