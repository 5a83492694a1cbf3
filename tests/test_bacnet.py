"""BACnet/IP on loopback: the driver against the simulated chiller controller, both bacpypes3 over UDP."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket

import numpy as np
import pytest
from bacpypes3.pdu import IPv4Address

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.bacnet import BacnetDevice, BacnetDriver
from monitord.ingest.profiles import BacnetSettings, DeviceProfile
from monitord.simulators.bacnet_device import SimulatedBacnetDevice
from monitord.simulators.models import Chiller
from tests.support.loopback import Rig
from tests.support.net import eventually, free_udp_port, run


def chiller_profile(**bacnet: object) -> DeviceProfile:
    profile = DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "chiller-bacnet.yaml"))
    if bacnet:
        profile = profile.model_copy(update={"bacnet": BacnetSettings.model_validate(bacnet)})
    return profile


class Loop(Rig):
    """A simulated chiller on one UDP port and monitord's BACnet device on another, with what arrived."""

    def __init__(self, poll: float, **bacnet: object) -> None:
        super().__init__()
        self.model = Chiller("CH1")
        self.profile = chiller_profile(**bacnet)
        self.port = free_udp_port()
        self.sim = SimulatedBacnetDevice("127.0.0.1", self.port, self.profile, self.model, step=0.05)
        self.device = BacnetDevice.from_profile("CH1", "127.0.0.1", self.port, poll, 0.5, self.profile)
        local = f"127.0.0.1:{free_udp_port()}"
        self.driver = BacnetDriver(local, 4194000, [self.device], self.bus, SystemClock(), self.metrics)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.serving(self.sim.run, self.driver)

    def full(self) -> list[SampleBatch]:
        """The poll batches (every point), not the one-point COV batches."""
        return [b for b in self.batches if len(b) == len(self.device.keys)]


def test_a_poll_reads_present_values_and_status_flags_with_good_quality() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.5, cov=False)
        async with loop.running():
            await eventually(loop.full, 10)
        batch = loop.full()[0]
        assert (batch.quality == Quality.GOOD).all(), dict(zip(batch.points, batch.quality, strict=True))
        values = dict(zip(batch.points, batch.values, strict=True))
        assert values["compressor_running"] == 1.0
        assert 690 < values["refrigerant_dp"] < 710 and 6.5 < values["chilled_water_supply"] < 7.5
        assert values["chilled_water_supply_flags"] == 0.0
        assert loop.health == []

    run(scenario(), timeout=60)


def test_status_flags_read_as_a_bit_sum() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.3, cov=False)
        async with loop.running():
            await eventually(loop.full, 10)
            # A sensor reported missing (fault, bit 1) and taken out of service (bit 3): 2 + 8.
            sensor = loop.sim.objects["analog-input:3"]
            sensor.reliability, sensor.outOfService = "no-sensor", True
            n = len(loop.full())
            await eventually(lambda: len(loop.full()) > n + 1, 10)
        values = dict(zip(loop.full()[-1].points, loop.full()[-1].values, strict=True))
        assert values["chilled_water_supply_flags"] == 10.0

    run(scenario(), timeout=60)


def test_a_device_that_stops_answering_ends_in_comm_error_never_a_value() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.3, cov=False)
        async with loop.running():
            await eventually(loop.full, 10)
            loop.model.faults.add("silent")
            await eventually(lambda: loop.health, 10)
            n = len(loop.full())
            await eventually(lambda: len(loop.full()) > n + 1, 10)
            after = loop.full()[n:]
            loop.model.faults.discard("silent")
            await eventually(lambda: len(loop.health) == 2, 10)
        assert [h.online for h in loop.health] == [False, True]
        assert loop.health[0].reason == "timeout"
        for b in after:
            assert (b.quality == Quality.COMM_ERROR).all() and np.isnan(b.values).all()
        assert loop.metrics.driver_errors.labels("bacnet", "timeout")._value.get() >= 2
        assert (loop.full()[-1].quality == Quality.GOOD).all()

    run(scenario(), timeout=60)


def test_a_cov_change_arrives_without_waiting_for_the_poll() -> None:
    async def scenario() -> None:
        loop = Loop(poll=30.0)  # one poll at start, the next only in 30 s
        async with loop.running():
            await eventually(loop.full, 10)
            await eventually(lambda: loop.driver.app and loop.driver.app._cov_contexts, 10)
            polls = len(loop.full())
            started = asyncio.get_running_loop().time()
            loop.model.values["discharge_temp"] = 92.0  # what a high_discharge_temp fault shows

            def arrived() -> list[SampleBatch]:
                return [b for b in loop.batches if b.points == ("discharge_temp",) and b.values[0] > 90]

            cov = await eventually(arrived, 5)
            took = asyncio.get_running_loop().time() - started
        assert len(loop.full()) == polls, "the change came by COV, not by a poll"
        assert cov[0].quality[0] == Quality.GOOD and math.isclose(cov[0].values[0], 92.0, abs_tol=1.0)
        assert took < 2.0

    run(scenario(), timeout=60)


def test_a_device_that_refuses_cov_is_polled_only() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.3)
        loop.sim.refuse_cov = True
        async with loop.running():
            await eventually(lambda: len(loop.device.refused) == 5, 10)
            n = len(loop.full())
            loop.model.values["discharge_temp"] = 92.0
            await eventually(lambda: any(b.values[2] > 90 for b in loop.full()[n:]), 10)
        assert not [b for b in loop.batches if len(b) == 1], "no COV batch from a device that refused COV"

    run(scenario(), timeout=60)


def test_an_unresolvable_host_is_one_device_offline_not_a_dead_driver() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.3, cov=False)
        lost = BacnetDevice.from_profile("CH2", "no-such-host.invalid", 47808, 0.3, 0.5, loop.profile)
        loop.driver.devices.append(lost)
        async with loop.running():
            await eventually(lambda: loop.health, 10)
            n = len(loop.full())
            await eventually(lambda: len([b for b in loop.full()[n:] if b.asset == "CH1"]) >= 2, 10)
        assert [(h.asset, h.online) for h in loop.health] == [("CH2", False)]
        assert "unable to resolve" in loop.health[0].reason
        assert all((b.quality == Quality.COMM_ERROR).all() for b in loop.full() if b.asset == "CH2")
        assert all((b.quality == Quality.GOOD).all() for b in loop.full() if b.asset == "CH1")

    run(scenario(), timeout=60)


def test_a_taken_local_port_is_said_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.3, cov=False)
        local = IPv4Address(loop.driver.local).addrTuple
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        taken.bind(local)
        async with loop.running():
            await eventually(lambda: "cannot bind" in caplog.text, 10)
            assert (
                loop.batches == [] and loop.metrics.driver_errors.labels("bacnet", "bind")._value.get() == 1
            )
            taken.close()
            await eventually(loop.full, 15)  # bound at the next try, 5 s later
        assert (loop.full()[0].quality == Quality.GOOD).all()

    run(scenario(), timeout=60)


def test_a_device_without_read_property_multiple_is_read_one_property_at_a_time() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.3, cov=False)
        loop.sim.rpm = False
        async with loop.running():
            await eventually(lambda: len(loop.full()) >= 2, 10)
        assert loop.device.use_rpm is False
        assert all((b.quality == Quality.GOOD).all() for b in loop.full()), "the fallback reads every point"
        values = dict(zip(loop.full()[-1].points, loop.full()[-1].values, strict=True))
        assert values["compressor_running"] == 1.0 and 690 < values["refrigerant_dp"] < 710
        assert loop.health == []

    run(scenario(), timeout=60)


def test_after_an_outage_the_cov_subscriptions_are_made_again() -> None:
    async def scenario() -> None:
        loop = Loop(poll=0.5)

        def subscriptions() -> int:
            return len(loop.driver.app._cov_contexts) if loop.driver.app else 0

        async with loop.running():
            await eventually(lambda: subscriptions() == 5, 10)
            loop.model.faults.add("silent")  # as a controller that restarts: it may forget its subscribers
            await eventually(lambda: loop.health, 10)
            assert subscriptions() == 0, "a silent device's subscriptions are dropped with it"
            loop.model.faults.discard("silent")
            await eventually(lambda: len(loop.health) == 2, 10)
            await eventually(lambda: subscriptions() == 5, 10)
            seen = len(loop.batches)
            loop.model.values["discharge_temp"] = 92.0
            # A one-point batch is a COV notification (a poll reads every point). The fresh
            # subscription's own first notification (the old 65.0) may still be on its way, so wait
            # for the one that carries the change.
            cov = await eventually(
                lambda: [
                    b for b in loop.batches[seen:] if b.points == ("discharge_temp",) and b.values[0] == 92.0
                ],
                5,
            )
        assert cov[0].quality[0] == Quality.GOOD

    run(scenario(), timeout=60)
