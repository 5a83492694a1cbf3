"""Modbus replies that are not the answer asked for (issue 10, item 12): a reply under another
function code is a protocol error, its values are never taken, and the poller goes on.
"""

from __future__ import annotations

import numpy as np

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from tests.support import run
from tests.support.modbus_raw import RawModbusServer, Reply, registers


def pump_profile() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "pump-set.yaml"))


def poll_raw(reply: Reply, polls: int = 1) -> tuple[list[SampleBatch], Metrics]:
    """Poll one pump ``polls`` times against a raw server answering with ``reply``."""
    bus, metrics = SampleBus(), Metrics()
    batches: list[SampleBatch] = []
    bus.subscribe(batches.append)

    async def scenario() -> None:
        async with RawModbusServer(reply) as server:
            device = ModbusDevice.from_profile("P1", 1, 1.0, pump_profile())
            poller = GatewayPoller(
                "127.0.0.1", server.port, [device], bus, SystemClock(), metrics, timeout=0.5
            )
            for _ in range(polls):
                await poller.poll(device)
            poller._close()

    run(scenario(), timeout=60)
    return batches, metrics


def errors(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "monitord_driver_errors_total", {"driver": "modbus", "kind": kind}
    )
    return value or 0.0


def test_a_reply_under_the_right_function_code_is_taken() -> None:
    [batch], metrics = poll_raw(lambda req: registers(req))
    assert (batch.quality != Quality.COMM_ERROR).all()
    assert errors(metrics, "protocol") == 0


def test_an_fc04_answer_to_an_fc03_request_is_a_protocol_error_every_time() -> None:
    def wrong(request: bytes) -> bytes:
        fc = request[7]
        return registers(request, function=0x04 if fc == 0x03 else 0x03)

    batches, metrics = poll_raw(wrong, polls=33)
    assert len(batches) == 33
    taken = sum(int((b.quality == Quality.GOOD).sum()) for b in batches)
    assert taken == 0, "no value from a reply to another question"
    assert all(np.isnan(b.values).all() for b in batches)
    assert errors(metrics, "protocol") >= 33
