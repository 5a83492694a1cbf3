"""SNMP v2c on loopback: the driver against the simulated UPS agent (pysnmp on both ends, real UDP)."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.model import Quality
from monitord.drivers.snmp import SnmpDevice, SnmpDriver
from monitord.ingest.profiles import DeviceProfile, PointSpec
from monitord.simulators.models import Ups
from monitord.simulators.snmp_agent import SimulatedSnmpAgent
from tests.support.loopback import Rig
from tests.support.net import eventually, free_udp_port, run


def ups_profile() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "ups-rfc1628.yaml"))


class Loop(Rig):
    """A simulated UPS agent and the SNMP driver polling it, with what arrived."""

    def __init__(self, community: str = "public", profile: DeviceProfile | None = None) -> None:
        super().__init__()
        self.model = Ups("UPS1")
        self.model.step(0.0, 0.2)
        self.profile = profile or ups_profile()
        port = free_udp_port()
        self.agent = SimulatedSnmpAgent("127.0.0.1", port, "public", self.profile, self.model)
        self.device = SnmpDevice.from_profile("UPS1", "127.0.0.1", port, community, 0.2, 0.3, self.profile)
        self.driver = SnmpDriver([self.device], self.bus, SystemClock(), self.metrics)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.serving(self.agent.run, self.driver)

    def latest(self) -> dict[str, float]:
        b = self.batches[-1]
        return dict(zip(b.points, b.values.tolist(), strict=True))


def test_a_poll_reads_the_ups_mib_with_good_quality() -> None:
    async def scenario() -> None:
        loop = Loop()
        async with loop.running():
            await eventually(lambda: loop.batches, 10)
        batch = loop.batches[0]
        assert (batch.quality == Quality.GOOD).all(), dict(zip(batch.points, batch.quality, strict=True))
        v = loop.latest()
        assert v["battery_status"] == 2 and v["output_source"] == 3  # batteryNormal, normal
        assert 215 <= v["input_voltage"] <= 225 and 215 <= v["output_voltage"] <= 225
        assert 49.8 <= v["input_frequency"] <= 50.2, "upsInputFrequency is in 0.1 Hz: the scale applies"
        assert v["charge_remaining"] == 100 and loop.health == []

    run(scenario(), timeout=60)


def test_on_battery_low_battery_and_overload_reach_the_driver() -> None:
    async def scenario() -> None:
        loop = Loop()
        async with loop.running():
            await eventually(lambda: loop.batches, 10)
            for fault in ("on_battery", "low_battery", "overload"):
                loop.model.faults.add(fault)
            loop.model.step(0.0, 5.0)
            await eventually(lambda: loop.latest()["output_source"] == 5, 10)
            await eventually(lambda: loop.latest()["battery_status"] == 3, 10)
        v = loop.latest()
        assert v["input_voltage"] == 0 and v["seconds_on_battery"] == 5 and v["output_load"] == 115
        assert v["charge_remaining"] == 12 and v["minutes_remaining"] == 3

    run(scenario(), timeout=60)


def test_a_dead_agent_ends_in_comm_error_never_a_value() -> None:
    async def scenario() -> None:
        loop = Loop()
        async with loop.running():
            await eventually(lambda: loop.batches, 10)
            loop.model.faults.add("silent")
            await eventually(lambda: loop.health, 10)
            n = len(loop.batches)
            await eventually(lambda: len(loop.batches) > n + 1, 10)
            dead = loop.batches[n:]
            loop.model.faults.discard("silent")
            await eventually(lambda: len(loop.health) == 2, 10)
        assert [h.online for h in loop.health] == [False, True]
        for b in dead:
            assert (b.quality == Quality.COMM_ERROR).all() and np.isnan(b.values).all()
        assert loop.metrics.driver_errors.labels("snmp", "timeout")._value.get() >= 2
        assert (loop.batches[-1].quality == Quality.GOOD).all()

    run(scenario(), timeout=60)


def test_a_stopped_agent_and_a_wrong_community_are_both_silence() -> None:
    async def scenario() -> None:
        loop = Loop(community="not-the-community")
        async with loop.running():
            await eventually(lambda: loop.health, 10)
        assert loop.health[0].online is False and "No SNMP response" in loop.health[0].reason
        assert all((b.quality == Quality.COMM_ERROR).all() for b in loop.batches)

        nobody = Loop()  # an agent never started: nothing listens on the port
        nobody.driver.devices[0].timeout = 0.2
        task = asyncio.create_task(nobody.driver.run())
        await eventually(lambda: nobody.health, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert all((b.quality == Quality.COMM_ERROR).all() for b in nobody.batches)

    run(scenario(), timeout=60)


def test_an_oid_the_agent_lacks_is_a_decode_error_on_that_point_only() -> None:
    async def scenario() -> None:
        profile = ups_profile()
        points = {**profile.points, "alarms_present": PointSpec(oid="1.3.6.1.2.1.33.1.6.1.0")}
        served = profile.model_copy(update={"points": dict(profile.points)})
        loop = Loop(profile=profile.model_copy(update={"points": points}))
        loop.agent.profile = served  # the agent does not serve upsAlarmsPresent
        async with loop.running():
            await eventually(lambda: loop.batches, 10)
        batch = loop.batches[0]
        q = dict(zip(batch.points, batch.quality.tolist(), strict=True))
        assert q.pop("alarms_present") == Quality.DECODE_ERROR
        assert set(q.values()) == {Quality.GOOD} and loop.health == []

    run(scenario(), timeout=60)


def test_an_unresolvable_host_is_offline_and_the_driver_goes_on() -> None:
    async def scenario() -> None:
        loop = Loop()
        lost = SnmpDevice.from_profile("UPS2", "no-such-host.invalid", 161, "public", 0.2, 0.3, loop.profile)
        loop.driver.devices.append(lost)
        async with loop.running():
            await eventually(lambda: loop.health, 10)
            n = len(loop.batches)
            await eventually(lambda: len([b for b in loop.batches[n:] if b.asset == "UPS1"]) >= 2, 10)
        assert [(h.asset, h.online) for h in loop.health] == [("UPS2", False)]
        assert "no-such-host.invalid" in loop.health[0].reason
        assert all((b.quality == Quality.COMM_ERROR).all() for b in loop.batches if b.asset == "UPS2")
        assert all((b.quality == Quality.GOOD).all() for b in loop.batches if b.asset == "UPS1")

    run(scenario(), timeout=60)


def test_answers_out_of_order_are_never_taken_as_values() -> None:
    async def scenario() -> None:
        loop = Loop()
        loop.agent.misorder = True
        async with loop.running():
            await eventually(lambda: len(loop.batches) >= 2, 10)
        for b in loop.batches:
            assert (b.quality == Quality.DECODE_ERROR).all() and np.isnan(b.values).all()
        assert loop.health == [], "the agent answered: it is online, its answer is unusable"

    run(scenario(), timeout=60)
