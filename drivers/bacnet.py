"""BACnet/IP driver: present-value and status-flags of profiled objects, polled, with COV.

Sits before the ``SampleBus``, beside the Modbus driver, and is the only module
that imports bacpypes3 for reading. monitord is one BACnet device of its own,
bound to ``bacnet.local``. Each device is polled every interval with one
ReadPropertyMultiple of its objects (ReadProperty per point if the device
rejects that service); the poll is also the heartbeat, so ``comm_error`` and
offline come from it exactly as from a Modbus poll. Where the profile asks for
COV, each object's present-value is subscribed to (unconfirmed notifications);
a change is published at once as a one-point batch instead of at the next
poll. An object whose device refuses the subscription is polled only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from dataclasses import dataclass, field
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType, PropertyIdentifier
from bacpypes3.ipv4.link import NormalLinkLayer
from bacpypes3.local.device import DeviceObject
from bacpypes3.pdu import Address, IPv4Address
from bacpypes3.primitivedata import BitString, ObjectIdentifier

from monitord.core.clock import Clock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import BacnetSettings, DeviceProfile

from .verdict import Verdict, poll_each, specs_of

log = logging.getLogger(__name__)
Key = tuple[str, int, str]  # object type, instance, property


def _key(obj: Any, prop: Any) -> Key:
    return (str(obj[0]), int(obj[1]), str(prop))


def as_number(value: Any) -> float:
    """A BACnet property value as a float: REAL, enumerations (inactive 0 / active 1), unsigned, or
    status-flags as a bit sum (in_alarm 1, fault 2, overridden 4, out_of_service 8); NaN otherwise."""
    if isinstance(value, BitString):
        return float(sum(int(bool(b)) << i for i, b in enumerate(value)))
    if isinstance(value, bool | int | float):
        return float(value)
    return math.nan


@dataclass
class BacnetDevice:
    """One asset's BACnet objects, read plan and subscriptions."""

    verdict: Verdict
    address: str
    timeout: float
    interval: float
    settings: BacnetSettings
    keys: tuple[Key, ...]  # per point, in verdict.points order
    objects: dict[Key, ObjectIdentifier] = field(default_factory=dict)  # key → its object
    use_rpm: bool = True
    refused: set[Key] = field(default_factory=set)  # objects whose COV subscription was refused
    cov_task: asyncio.Task[None] | None = None

    @classmethod
    def from_profile(
        cls, asset: str, host: str, port: int, interval: float, timeout: float, profile: DeviceProfile
    ) -> BacnetDevice:
        refs = profile.bacnet_points()
        where = f"{host}:{port}"
        verdict = Verdict.of("bacnet", asset, where, specs_of(profile.points, list(refs)))
        objects = {}
        keys = []
        for obj, prop in refs.values():
            oid = ObjectIdentifier(obj)
            k = _key(oid, PropertyIdentifier(prop))
            objects[k] = oid
            keys.append(k)
        settings = profile.bacnet or BacnetSettings()
        return cls(verdict, where, timeout, interval, settings, tuple(keys), objects)


class BacnetDriver:
    """monitord's BACnet device: polls and subscribes to every configured device."""

    def __init__(
        self,
        local: str,
        device_id: int,
        devices: list[BacnetDevice],
        bus: SampleBus,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.local, self.device_id, self.devices = local, device_id, devices
        self.bus, self.clock, self.metrics = bus, clock, metrics
        self.app: Application | None = None
        self._link: NormalLinkLayer | None = None

    def _open(self, sock: socket.socket) -> Application:
        # No retries inside bacpypes3: the poll's own timeout decides, and a late reply is dropped.
        timeout_ms = int(1000 * min(d.timeout for d in self.devices))
        device = DeviceObject(
            objectIdentifier=("device", self.device_id),
            objectName="monitord",
            vendorIdentifier=999,
            apduTimeout=timeout_ms,
            numberOfApduRetries=0,
        )
        app = Application.from_object_list([device])
        address = IPv4Address(self.local)
        self._link = NormalLinkLayer(address, bind_socket=sock)
        app.nsap.bind(self._link, address=address)
        return app

    async def _bind(self) -> socket.socket:
        """monitord's own UDP socket, bound here: bacpypes3 would retry a failed bind forever in
        silence (and with SO_REUSEPORT share the port with another process). A port in use or an
        address not on this host is said once, and retried every 5 s; meanwhile no device answers."""
        host, port = IPv4Address(self.local).addrTuple
        told = False
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            try:
                sock.bind((host, port))
                return sock
            except OSError as exc:
                sock.close()
                if not told:
                    log.error(
                        "bacnet: cannot bind %s (bacnet.local): %s; retrying every 5 s", self.local, exc
                    )
                    told = True
                self.metrics.driver_errors.labels("bacnet", "bind").inc()
            await asyncio.sleep(5.0)

    async def run(self) -> None:
        self.app = self._open(await self._bind())
        log.info("bacnet: monitord is device %d at %s", self.device_id, self.local)
        try:
            await poll_each(self.devices, self.poll)
        finally:
            for d in self.devices:
                if d.cov_task:
                    d.cov_task.cancel()
            self.close()

    def close(self) -> None:
        if self._link is not None:
            with contextlib.suppress(Exception):
                self._link.close()
            self._link = None

    async def poll(self, dev: BacnetDevice) -> None:
        """Read every point of one device and publish one batch; never raises."""
        assert self.app is not None
        read = dev.verdict.start(self.clock)
        try:
            async with asyncio.timeout(dev.timeout):
                got = await self._read(dev)
        except TimeoutError:
            self.metrics.driver_errors.labels("bacnet", "timeout").inc()
            read.failed("timeout")
        except ErrorRejectAbortNack as exc:
            self.metrics.driver_errors.labels("bacnet", "error").inc()
            read.failed(f"refused: {exc}", answered=True)  # bad data, not a silent device
        except (OSError, ValueError, TypeError, RuntimeError) as exc:
            # A host name that does not resolve (bacpypes3 raises RuntimeError), an unsendable address,
            # a reply it cannot parse: this read failed, the driver goes on.
            self.metrics.driver_errors.labels("bacnet", "io").inc()
            read.failed(f"io error: {exc}")
        else:
            for i, k in enumerate(dev.keys):
                value = got.get(k)
                if value is None or isinstance(value, ErrorType):
                    read.quality[i] = int(Quality.DECODE_ERROR)  # the device lacks this object or property
                    continue
                read.values[i] = as_number(value)
                read.quality[i] = int(Quality.GOOD)
        if dev.verdict.finish(self.bus, self.metrics, read) and dev.cov_task:
            dev.cov_task.cancel()  # a device back from silence may have restarted and lost its subscriptions
            dev.cov_task = None
        if read.answered and dev.settings.cov and (dev.cov_task is None or dev.cov_task.done()):
            dev.cov_task = asyncio.create_task(self._follow(dev), name=f"bacnet-cov-{dev.address}")

    async def _read(self, dev: BacnetDevice) -> dict[Key, Any]:
        assert self.app is not None
        address = Address(dev.address)
        if dev.use_rpm:
            by_object: dict[ObjectIdentifier, list[PropertyIdentifier]] = {}
            for k in dev.keys:
                by_object.setdefault(dev.objects[k], []).append(PropertyIdentifier(k[2]))
            request: list[Any] = [x for obj, props in by_object.items() for x in (obj, props)]
            try:
                rows = await self.app.read_property_multiple(address, request)
            except ErrorRejectAbortNack as exc:
                if "unrecognized-service" not in str(exc):
                    raise
                log.info("bacnet %s: no ReadPropertyMultiple; reading one property at a time", dev.address)
                dev.use_rpm = False
            else:
                return {_key(obj, prop): value for obj, prop, _index, value in rows}
        got: dict[Key, Any] = {}
        for k in dev.keys:
            try:
                got[k] = await self.app.read_property(address, dev.objects[k], PropertyIdentifier(k[2]))
            except ErrorRejectAbortNack:
                got[k] = None  # this object or property is missing; the others may still be there
        return got

    async def _follow(self, dev: BacnetDevice) -> None:
        """Subscribe to COV of every object with a present-value point; publish each change at once."""
        covered = {k for k in dev.keys if k[2] == "present-value" and k not in dev.refused}
        async with asyncio.TaskGroup() as tg:
            for k in covered:
                tg.create_task(self._subscribe(dev, k))

    async def _subscribe(self, dev: BacnetDevice, key: Key) -> None:
        assert self.app is not None
        names = {k[2]: dev.verdict.points[i] for i, k in enumerate(dev.keys) if k[:2] == key[:2]}
        cm = self.app.change_of_value(
            Address(dev.address), dev.objects[key], None, False, dev.settings.cov_lifetime
        )
        try:
            async with asyncio.timeout(dev.timeout):
                scm = await cm.__aenter__()
        except ErrorRejectAbortNack as exc:
            dev.refused.add(key)
            log.info("bacnet %s: COV on %s refused (%s); polled only", dev.address, key[0:2], exc)
            return
        except (TimeoutError, OSError, ValueError, RuntimeError) as exc:
            # Silence, or an address bacpypes3 cannot use: the poll sees and reports it; the next
            # good poll subscribes again. Never an exception left in a task nobody awaits.
            log.debug("bacnet %s: no COV subscription on %s: %r", dev.address, key[0:2], exc)
            return
        try:
            while True:
                prop, value = await scm.get_value()
                name = names.get(str(prop))
                if name is not None:
                    dev.verdict.publish_one(self.bus, self.clock.now(), name, as_number(value))
        finally:
            with contextlib.suppress(Exception):
                await cm.__aexit__(asyncio.CancelledError, None, None)
