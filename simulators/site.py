"""A whole simulated building: models, Modbus servers, BACnet devices, SNMP agents, MQTT publisher, scenario.

``SimulatedSite`` builds one model per asset of a site config, serves the
Modbus, BACnet and SNMP assets on the hosts and ports the config names, publishes the MQTT
assets to the config's broker, steps the physics, and plays a scenario.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from monitord.config.mqtt import device_name, publish_topic, publishes_changes, status_topic
from monitord.config.site import SiteConfig, modbus_lines, site_zone

from .bacnet_device import SimulatedBacnetDevice
from .modbus_server import ModbusSimServer, SimulatedModbusDevice
from .models import Equipment, site_models
from .mqtt_publisher import MqttPublisher, SimulatedMqttDevice
from .scenario import Scenario
from .snmp_agent import SimulatedSnmpAgent

log = logging.getLogger(__name__)
FaultListener = Callable[[str, str, bool], None]
# Models stepped between two turns of the loop (a meter's step is ~70 µs).
_STEP_SLICE = 200


class SimulatedSite:
    """``serial_ports`` maps a serial port of the config to the one the simulator opens (the other end
    of a null-modem cable or a socat pty pair); a port not in it is opened as written."""

    def __init__(
        self,
        config: SiteConfig,
        scenario: Scenario | None = None,
        *,
        step: float = 0.2,
        serial_ports: dict[str, str] | None = None,
    ) -> None:
        self.config, self.scenario, self.step = config, scenario, step
        self._zone = site_zone(config)
        self.models: dict[str, Equipment] = site_models(config.domain_assets().values())
        mqtt_devices = []
        # One host:port each: BACnet devices and SNMP agents (run(started), like the Modbus servers).
        self.endpoints: list[SimulatedBacnetDevice | SimulatedSnmpAgent] = []
        for a in config.assets:
            prof = config.profile(a.profile)
            if b := a.connection.bacnet:
                self.endpoints.append(SimulatedBacnetDevice(b.host, b.port, prof, self.models[a.id]))
            elif s := a.connection.snmp:
                agent = SimulatedSnmpAgent(s.host, s.port, s.community, prof, self.models[a.id])
                self.endpoints.append(agent)
            elif a.connection.mqtt and prof.mqtt:
                topic = publish_topic(config, a)
                device = device_name(a) if a.connection.mqtt.gateway else None
                said = status_topic(config, a)
                changes = publishes_changes(config, a)
                dev = SimulatedMqttDevice(topic, prof, self.models[a.id], device, said, changes=changes)
                mqtt_devices.append(dev)
        self.servers = []
        for assets in modbus_lines(config).values():
            conns = [a.connection.modbus for a in assets if a.connection.modbus]
            devs = [
                SimulatedModbusDevice(m.unit, config.profile(a.profile), self.models[a.id])
                for a, m in zip(assets, conns, strict=True)
            ]
            line = conns[0].line
            if line.kind == "serial":
                line = replace(line, port=(serial_ports or {}).get(str(line.port), str(line.port)))
            self.servers.append(
                ModbusSimServer(line.host, 0 if line.kind == "serial" else int(line.port), devs, line)
            )
        self.publisher: MqttPublisher | None = None
        if mqtt_devices and config.mqtt:
            host, port = config.mqtt.host_port
            interval = min(config.poll_of(a) for a in config.assets if a.connection.mqtt)
            self.publisher = MqttPublisher(host, port, mqtt_devices, interval)
        self.fault_listeners: list[FaultListener] = []
        self.ready = asyncio.Event()

    def inject(self, asset: str, fault: str) -> None:
        self.models[asset].faults.add(fault)
        self._told(asset, fault, True)
        if fault == "outage":
            for dependant in self._fed_by(asset):  # what the feeder supplies loses power too
                self.models[dependant].faults.add(self._blackout(dependant))
                self._show_now(dependant)
        self._show_now(asset)

    def clear(self, asset: str, fault: str) -> None:
        self.models[asset].faults.discard(fault)
        if fault == "outage":
            for dependant in self._fed_by(asset):
                self.models[dependant].faults.discard(self._blackout(dependant))
                self._show_now(dependant)
        if fault == "silent":
            for s in self.servers:
                s.resume()
        self._told(asset, fault, False)
        self._show_now(asset)

    def _show_now(self, asset: str) -> None:
        """The device's registers show a fault the moment it happens, not at the next physics step
        (latency is measured from the fault, and a real device shows it at once)."""
        now = time.time()
        self.models[asset].step(now + self._utc_offset(now), 0.0)

    def _fed_by(self, feeder: str) -> list[str]:
        """Assets that depend on ``feeder``, directly or not."""
        out: list[str] = []
        todo = [feeder]
        while todo:
            up = todo.pop()
            for a in self.config.assets:
                if up in a.depends_on and a.id not in out:
                    out.append(a.id)
                    todo.append(a.id)
        return out

    def _blackout(self, asset: str) -> str:
        """How an asset shows a lost supply: elevators go to battery, the rest fall silent."""
        return "power_cut" if self.models[asset].knows("power_cut") else "offline"

    def _told(self, asset: str, fault: str, active: bool) -> None:
        log.info("simulator: %s %s on %s", "inject" if active else "clear", fault, asset)
        for listen in self.fault_listeners:
            listen(asset, fault, active)

    async def run(self) -> None:
        started = 0

        def one_up() -> None:
            nonlocal started
            started += 1
            if started == len(self.servers) + len(self.endpoints):
                self.ready.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._physics())
            for s in [*self.servers, *self.endpoints]:
                tg.create_task(s.run(one_up))
            if not self.servers and not self.endpoints:
                self.ready.set()
            if self.publisher:
                tg.create_task(self.publisher.run())
            if self.scenario:
                tg.create_task(self._play(self.scenario))

    def _utc_offset(self, now: float) -> float:
        """Seconds to add to UTC for the site's wall clock: load curves follow the day where the
        building is (the zone the rules' ``in_hours`` use), not where the simulator runs."""
        offset = datetime.datetime.fromtimestamp(now, self._zone).astimezone(self._zone).utcoffset()
        return offset.total_seconds() if offset is not None else 0.0

    async def _physics(self) -> None:
        last = time.time()
        while True:
            now = time.time()
            offset = self._utc_offset(now)
            for k, m in enumerate(self.models.values(), start=1):
                m.step(now + offset, now - last)
                if not k % _STEP_SLICE:
                    await asyncio.sleep(0)  # thousands of models: let the servers answer in between
            last = now
            await asyncio.sleep(self.step)

    async def _play(self, scenario: Scenario) -> None:
        await self.ready.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in sorted(scenario.timeline, key=lambda s: s.at):
            delay = start + step.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if step.fault:
                self.inject(step.asset, step.fault)
            elif step.clear:
                self.clear(step.asset, step.clear)
