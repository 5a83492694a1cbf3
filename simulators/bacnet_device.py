"""A simulated BACnet/IP device: a bacpypes3 application serving a profile's objects from a model.

One device per host:port (BACnet/IP has one device per UDP endpoint unless a
router is involved). Each profile object becomes a local object (analog-*,
binary-*, multi-state-*), and its present-value follows the equipment model
(a chiller or an AHU) every ``step``; bacpypes3 sends COV notifications to
subscribers when a value moves by the object's COV increment (analog: 2 % of
its start value, at least 0.5) or changes (binary, multi-state); with ``refuse_cov`` it refuses every
subscription, as a controller without COV support does, and with ``rpm``
False it rejects ReadPropertyMultiple as small controllers do. Faults: ``offline`` and ``silent`` both mean
no answer at all (BACnet has no gateway exception to send).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bacpypes3.app import Application
from bacpypes3.errors import ServicesError, UnrecognizedService
from bacpypes3.ipv4.link import NormalLinkLayer
from bacpypes3.local.analog import AnalogInputObject, AnalogOutputObject, AnalogValueObject
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject, BinaryValueObject
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateInputObject, MultiStateOutputObject, MultiStateValueObject
from bacpypes3.pdu import IPv4Address

from monitord.ingest.profiles import DeviceProfile

from .models import Equipment
from .udp import udp_socket

log = logging.getLogger(__name__)
_CLASSES: dict[str, Any] = {
    "analog-input": AnalogInputObject,
    "analog-output": AnalogOutputObject,
    "analog-value": AnalogValueObject,
    "binary-input": BinaryInputObject,
    "binary-output": BinaryOutputObject,
    "binary-value": BinaryValueObject,
    "multi-state-input": MultiStateInputObject,
    "multi-state-output": MultiStateOutputObject,
    "multi-state-value": MultiStateValueObject,
}
# A change smaller than this sends no COV notification: COV_Increment, set per object as a controller
# integrator would, 2 % of the value at start-up (14 kPa on 700 kPa) and at least 0.5 in its unit.
COV_SHARE, COV_MIN = 0.02, 0.5


class _DeviceApp(Application):  # type: ignore[misc]
    """The device's application; drops every request while its model is offline or silent."""

    model: Equipment
    refuse_cov = False
    rpm = True

    async def indication(self, apdu: Any) -> None:
        if self.model.faults & {"offline", "silent"}:
            return
        await super().indication(apdu)

    async def do_ReadPropertyMultipleRequest(self, apdu: Any) -> None:
        if not self.rpm:  # as a small controller without ReadPropertyMultiple answers
            raise UnrecognizedService("no ReadPropertyMultiple")
        await super().do_ReadPropertyMultipleRequest(apdu)

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:
        if self.refuse_cov:  # as a controller without COV support answers
            raise ServicesError("optional-functionality-not-supported")
        await super().do_SubscribeCOVRequest(apdu)


class SimulatedBacnetDevice:
    protocol = "bacnet"

    def __init__(
        self, host: str, port: int, profile: DeviceProfile, model: Equipment, *, step: float = 0.1
    ) -> None:
        self.host, self.port, self.profile, self.model, self.step = host, port, profile, model, step
        self.device_id = port  # one device per endpoint: the port is unique on one host
        # object name ("analog-input:1") → the point whose value is its present-value
        self.present: dict[str, str] = {
            obj: name for name, (obj, prop) in profile.bacnet_points().items() if prop == "present-value"
        }
        self.objects: dict[str, Any] = {}
        self.refuse_cov = False  # a device without COV support: every SubscribeCOV is refused
        self.rpm = True  # False: a device without ReadPropertyMultiple
        self._link: NormalLinkLayer | None = None

    def _make(self) -> _DeviceApp:
        device = DeviceObject(
            objectIdentifier=("device", self.device_id),
            objectName=f"sim-{self.model.asset}",
            vendorIdentifier=999,
        )
        for obj, _prop in self.profile.bacnet_points().values():
            if obj in self.objects:
                continue  # present-value and status-flags of one object
            kind, instance = obj.split(":")
            extra: dict[str, Any] = {}
            if kind.startswith("analog"):
                start = abs(float(self.model.values.get(self.present.get(obj, ""), 0.0)))
                extra = {
                    "units": "noUnits",
                    "covIncrement": max(COV_MIN, COV_SHARE * start),
                    "presentValue": 0.0,
                }
            elif kind.startswith("multi-state"):
                extra = {"numberOfStates": 16, "presentValue": 1}
            else:
                extra = {"presentValue": "inactive"}
            self.objects[obj] = _CLASSES[kind](
                objectIdentifier=(kind, int(instance)),
                objectName=f"{obj} {self.present.get(obj, '')}",
                **extra,
            )
        app: _DeviceApp = _DeviceApp.from_object_list([device, *self.objects.values()])
        app.model, app.refuse_cov, app.rpm = self.model, self.refuse_cov, self.rpm
        address = IPv4Address(f"{self.host}:{self.port}")
        # Bound here: bacpypes3 would retry a taken port forever in silence (and share it, SO_REUSEPORT).
        self._link = NormalLinkLayer(address, bind_socket=udp_socket(self.host, self.port, "bacnet"))
        app.nsap.bind(self._link, address=address)
        return app

    def update(self) -> None:
        """Present-values from the model (bacpypes3 notifies COV subscribers of what moved)."""
        for obj, name in self.present.items():
            value = self.model.values.get(name, 0.0)
            target = self.objects[obj]
            if obj.startswith("analog"):
                new: Any = float(value)
            elif obj.startswith("multi-state"):
                new = max(1, int(value))
            else:
                new = "active" if value else "inactive"
            if target.presentValue != new:
                target.presentValue = new

    async def run(self, started: Callable[[], None] | None = None) -> None:
        self._make()
        self.update()
        if started:
            started()
        try:
            while True:
                await asyncio.sleep(self.step)
                self.update()
        finally:
            if self._link is not None:
                self._link.close()
                self._link = None
