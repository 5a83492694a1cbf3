"""A simulated SNMP v2c agent (pysnmp command responder) serving a profile's OIDs from a model.

For a UPS this is the RFC 1628 UPS-MIB from the ``Ups`` model, which can be put
on battery, low battery, overload or bypass. Each GET reads the model at that
moment, the value encoded as the INTEGER the MIB defines (value − offset) / scale.
A request with another community is dropped unanswered, as real agents do.
Faults: ``offline`` and ``silent`` both mean no answer at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto.api import v2c
from pysnmp.smi import instrum

from monitord.ingest.profiles import DeviceProfile

from .models import Equipment
from .udp import udp_socket


class _ModelMib(instrum.AbstractMibInstrumController):  # type: ignore[misc]
    """Answers GETs from the model's current values."""

    def __init__(self, profile: DeviceProfile, model: Equipment) -> None:
        self.model = model
        self.misorder = False
        self.by_oid = {
            tuple(int(x) for x in oid.split(".")): (name, profile.points[name])
            for name, oid in profile.snmp_points().items()
        }

    def read_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        answer = self._answer(var_binds)
        if self.misorder:  # a broken agent: its answers out of the order they were asked in
            return answer[1:] + answer[:1]
        return answer

    def _answer(self, var_binds: Any) -> list[tuple[Any, Any]]:
        out = []
        for oid, _ in var_binds:
            found = self.by_oid.get(tuple(oid))
            if found is None:
                out.append((oid, v2c.NoSuchObject()))
                continue
            name, spec = found
            raw = (self.model.values.get(name, 0.0) - spec.offset) / spec.scale
            out.append((oid, v2c.Integer(round(raw))))
        return out


class _Responder(cmdrsp.GetCommandResponder):  # type: ignore[misc]
    """GET responder that says nothing while the model is offline or silent."""

    model: Equipment

    def handle_management_operation(self, snmp_engine: Any, state: Any, context_name: Any, pdu: Any) -> None:
        if self.model.faults & {"offline", "silent"}:
            self.release_state_information(state)
            return
        super().handle_management_operation(snmp_engine, state, context_name, pdu)


class SimulatedSnmpAgent:
    protocol = "snmp"

    def __init__(
        self, host: str, port: int, community: str, profile: DeviceProfile, model: Equipment
    ) -> None:
        self.host, self.port, self.community = host, port, community
        self.profile, self.model = profile, model
        self.misorder = False  # True: answers out of the order asked in, as a broken agent might

    async def run(self, started: Callable[[], None] | None = None) -> None:
        # The transport binds to the running loop, so the engine is made here.
        eng = engine.SnmpEngine()
        # Bound here: pysnmp binds in a task of its own, and a taken port would pass unnoticed.
        sock = udp_socket(self.host, self.port, "snmp")
        config.add_transport(eng, udp.DOMAIN_NAME, udp.UdpAsyncioTransport().open_server_mode(sock=sock))
        config.add_v1_system(eng, "monitord-sim", self.community)
        config.add_vacm_user(eng, 2, "monitord-sim", "noAuthNoPriv", (1, 3, 6, 1, 2, 1))
        ctx = context.SnmpContext(eng)
        ctx.unregister_context_name(v2c.OctetString(""))
        mib = _ModelMib(self.profile, self.model)
        mib.misorder = self.misorder
        ctx.register_context_name(v2c.OctetString(""), mib)
        responder = _Responder(eng, ctx)
        responder.model = self.model
        if started:
            started()
        try:
            await asyncio.Event().wait()
        finally:
            eng.close_dispatcher()
