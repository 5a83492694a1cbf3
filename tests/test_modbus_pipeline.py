"""Pipelined Modbus TCP (issue 13): several requests in flight on one connection, over real sockets.

Replies are matched by transaction id, whatever their order; a timeout fails every outstanding
transaction and the connection is made again; a reply under a transaction id not outstanding, or
from another unit, is a protocol error whose values are never taken. The simulator answers
pipelined requests, and a silent unit on it does not hold up the others on its connection.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from monitord.config.site import CONFIG_DIR, load_config
from monitord.config.yamlio import load_yaml
from monitord.core.clock import SystemClock
from monitord.core.metrics import Metrics
from monitord.core.model import HealthChange, Quality, SampleBatch
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.drivers.modbus_line import Line
from monitord.drivers.modbus_tcp import LinkLost, TcpLink, request_frame
from monitord.ingest.bus import SampleBus
from monitord.ingest.profiles import DeviceProfile
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import PowerMeter
from tests.support.configs import GOOD, check, problems, write
from tests.support.modbus_raw import RawModbusServer, adu, registers
from tests.support.net import free_port, run

TCP = "connection: {modbus: {host: 127.0.0.1, port: 1502, unit: 1}}"


def sdm630() -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / "eastron-sdm630.yaml"))


def word(unit: int) -> int:
    """What every register of ``unit`` holds on the raw gateways below: each unit its own."""
    return 0x4100 + unit


Policy = Callable[[int, list[bytes]], list[bytes]]  # (connection number, requests held) -> replies


class Gateway(RawModbusServer):
    """A raw Modbus TCP gateway on a free port: holds requests until ``hold`` are outstanding on a
    connection, then sends what ``policy`` makes of them (in any order; b"" for none)."""

    def __init__(self, hold: int, policy: Policy) -> None:
        super().__init__(lambda _request: b"")
        self.hold, self.policy = hold, policy
        self.connections = 0
        self.most_outstanding = 0
        self.closed_by_master: list[int] = []  # connection numbers the poller hung up

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number, held = self.connections, []
        try:
            while True:
                header = await reader.readexactly(7)
                held.append(header + await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1))
                self.most_outstanding = max(self.most_outstanding, len(held))
                if len(held) >= self.hold:
                    writer.write(b"".join(self.policy(number, held)))
                    await writer.drain()
                    held = []
        except asyncio.IncompleteReadError:
            self.closed_by_master.append(number)
        except ConnectionError:
            pass
        finally:
            writer.close()


def right(request: bytes) -> bytes:
    return registers(request, value=word(request[6]))


def meters(units: int) -> list[ModbusDevice]:
    return [ModbusDevice.from_profile(f"M{u}", u, 1.0, sdm630()) for u in range(1, units + 1)]


def expected(dev: ModbusDevice) -> np.ndarray:
    """The values a poll of ``dev`` must bring from a raw gateway: its unit's word decoded."""
    return np.concatenate([r.codec.decode([word(dev.unit)] * r.count) for r in dev.requests])


def poll_cycle(
    gateway: Gateway, devices: list[ModbusDevice], timeout: float = 2.0, pipeline: int = 0
) -> tuple[dict[str, SampleBatch], list[HealthChange], Metrics]:
    """One poll cycle of ``devices`` on one connection, ``pipeline`` (default ``len(devices)``)
    requests in flight."""
    bus, metrics = SampleBus(), Metrics()
    batches: dict[str, SampleBatch] = {}
    health: list[HealthChange] = []
    bus.subscribe(lambda b: batches.__setitem__(b.asset, b))
    bus.subscribe_health(health.append)

    async def scenario() -> None:
        async with gateway:
            line = Line.tcp("127.0.0.1", gateway.port, pipeline=pipeline or len(devices))
            poller = GatewayPoller("", 0, devices, bus, SystemClock(), metrics, timeout=timeout, line=line)
            await poller._poll_due(devices)
            poller._close()

    run(scenario(), timeout=60)
    return batches, health, metrics


def errors(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "monitord_driver_errors_total", {"driver": "modbus", "kind": kind}
    )
    return value or 0.0


def test_replies_out_of_order_each_reach_their_own_request() -> None:
    devices = meters(4)
    gateway = Gateway(hold=4, policy=lambda _n, held: [right(r) for r in reversed(held)])
    batches, _health, metrics = poll_cycle(gateway, devices)
    assert gateway.most_outstanding == 4, "four requests were in flight on one connection"
    assert gateway.connections == 1
    for dev in devices:
        b = batches[dev.asset]
        assert (b.quality != Quality.COMM_ERROR).all(), dev.asset
        np.testing.assert_array_equal(b.values, expected(dev))  # its own unit's registers, not another's
    assert errors(metrics, "protocol") == errors(metrics, "timeout") == 0


def test_a_timeout_fails_every_outstanding_transaction_and_drops_the_connection() -> None:
    async def scenario() -> tuple[list[BaseException | None], bool, Gateway]:
        async with Gateway(hold=1000, policy=lambda _n, _held: []) as gateway:  # says nothing
            link = await TcpLink.open("127.0.0.1", gateway.port, timeout=0.3)
            futures = [link.send(request_frame("input", u, 0, 2)) for u in (1, 2, 3)]
            done = await asyncio.gather(*futures, return_exceptions=True)
            connected = link.connected
            while not gateway.closed_by_master:
                await asyncio.sleep(0.01)
            return [d if isinstance(d, BaseException) else None for d in done], connected, gateway

    failures, connected, gateway = run(scenario(), timeout=30)
    assert all(isinstance(f, LinkLost) and f.reason == "timeout" for f in failures)
    # The oldest is the one at fault; the others were only waiting behind it on the same stream.
    assert [f.collateral for f in failures if isinstance(f, LinkLost)] == [False, True, True]
    assert not connected and gateway.closed_by_master == [1]


def test_after_a_timeout_the_others_are_asked_again_on_a_new_connection_and_late_replies_are_lost() -> None:
    def policy(connection: int, held: list[bytes]) -> list[bytes]:
        if connection == 1:
            return []  # the first connection hangs: every request on it times out
        return [right(r) for r in held]

    devices = meters(3)
    reads = len(devices[0].requests)  # every device's reads in flight together, all three at once
    batches, health, metrics = poll_cycle(
        Gateway(hold=1, policy=policy), devices, timeout=0.3, pipeline=3 * reads
    )
    first, *others = devices
    assert (batches[first.asset].quality == Quality.COMM_ERROR).all()
    assert [(h.asset, h.online, h.reason) for h in health] == [(first.asset, False, "timeout")]
    for dev in others:
        assert (batches[dev.asset].quality != Quality.COMM_ERROR).all(), dev.asset
        np.testing.assert_array_equal(batches[dev.asset].values, expected(dev))
    assert errors(metrics, "timeout") == 1  # the first device's, counted once for its reads
    assert errors(metrics, "dropped") == 2 * reads  # the others' reads, each asked again


@pytest.mark.parametrize(
    ("what", "stray"),
    [
        (
            "a transaction id not outstanding",
            lambda r: adu(r, right(r)[7:], tid=(int.from_bytes(r[:2]) + 500) % 65536),
        ),
        ("another unit", lambda r: right(r)[:6] + bytes([r[6] + 1]) + right(r)[7:]),
    ],
)
def test_a_stray_reply_is_a_protocol_error_and_its_values_are_never_taken(
    what: str, stray: Callable[[bytes], bytes]
) -> None:
    def policy(connection: int, held: list[bytes]) -> list[bytes]:
        (request,) = held
        if connection == 1:
            return [stray(request)[:7] + registers(request, value=0x4348)[7:]]  # forged values
        return [right(request)]

    [dev] = devices = meters(1)
    batches, _health, metrics = poll_cycle(Gateway(hold=1, policy=policy), devices)
    b = batches[dev.asset]
    first = dev.plan.slices[0]
    assert (b.quality[first] == Quality.COMM_ERROR).all(), what
    assert np.isnan(b.values[first]).all()
    rest = np.ones(len(b.values), dtype=bool)
    rest[first] = False
    assert (b.quality[rest] != Quality.COMM_ERROR).all()
    np.testing.assert_array_equal(b.values[rest], expected(dev)[rest])
    assert errors(metrics, "protocol") == 1


def test_the_simulator_answers_pipelined_polls_and_a_silent_unit_holds_up_no_other() -> None:
    prof = sdm630()
    models = {u: PowerMeter(f"M{u}") for u in range(1, 9)}
    models[3].faults.add("silent")
    port = free_port()
    server = ModbusSimServer(
        "127.0.0.1", port, [SimulatedModbusDevice(u, prof, m) for u, m in models.items()]
    )
    devices = meters(8)
    bus, metrics = SampleBus(), Metrics()
    batches: dict[str, SampleBatch] = {}
    bus.subscribe(lambda b: batches.__setitem__(b.asset, b))

    async def scenario() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(server.run(ready.set))
        await ready.wait()
        line = Line.tcp("127.0.0.1", port, pipeline=8)
        poller = GatewayPoller("", 0, devices, bus, SystemClock(), metrics, timeout=0.5, line=line)
        await poller._poll_due(devices)
        poller._close()
        server.resume()
        task.cancel()

    run(scenario(), timeout=60)
    assert (batches["M3"].quality == Quality.COMM_ERROR).all()
    for u, model in models.items():
        if u == 3:
            continue
        b = batches[f"M{u}"]
        assert (b.quality == Quality.GOOD).all(), u
        want = np.array([model.values.get(n, 0.0) for n in b.points])
        np.testing.assert_allclose(b.values, want, rtol=1e-6)  # float32 on the wire


def pipelined_site(*connections: str) -> str:
    more = "".join(
        f"  - id: P{i}\n    type: pump\n    profile: pump-set\n    connection: {{modbus: {c}}}\n"
        for i, c in enumerate(connections[1:], start=2)
    )
    return GOOD.replace(TCP, f"connection: {{modbus: {connections[0]}}}").replace(
        "rules:\n", more + "rules:\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            pipelined_site("{port: /dev/ttyUSB0, pipeline: 4}"),
            [
                "site.yaml:10 assets[0].connection.modbus: pipeline: 4 needs Modbus TCP; an RTU line "
                "carries one request at a time"
            ],
        ),
        (
            pipelined_site("{host: 10.0.0.7, unit: 1, pipeline: 4}", "{host: 10.0.0.7, unit: 2}"),
            [
                "site.yaml:18 assets[2].connection.modbus.pipeline: line 10.0.0.7:502 has pipeline: 4 "
                "from asset 'P1', here 1; one connection has one setting"
            ],
        ),
        (
            pipelined_site("{host: 10.0.0.7, pipeline: 0}"),
            ["site.yaml:10 assets[0].connection.modbus.pipeline"],
        ),
    ],
    ids=["on a serial line", "two settings on one connection", "zero"],
)
def test_pipeline_config_errors_are_named_at_their_key(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    found = problems(tmp_path, text)
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        assert got.startswith(want), got


def test_check_says_how_many_requests_a_connection_has_in_flight(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        pipelined_site("{host: 10.0.0.7, unit: 1, pipeline: 8}", "{host: 10.0.0.7, unit: 2, pipeline: 8}"),
    )
    config = load_config(path)
    assert {a.connection.modbus.line.pipeline for a in config.assets if a.connection.modbus} == {8}
    done = check(path)
    assert done.returncode == 0, done.stderr
    assert (
        "line 10.0.0.7:502 (Modbus TCP): up to 8 requests in flight on one connection (pipeline: 8); "
        "the gateway must answer each under its transaction id"
    ) in done.stdout.splitlines()


def test_check_says_it_in_the_site_language(tmp_path: Path) -> None:
    text = pipelined_site("{host: 10.0.0.7, unit: 1, pipeline: 8}").replace(
        "site: {id: t1, name: Test}", "site: {id: t1, name: Test, locale: zh-CN}"
    )
    done = check(write(tmp_path, text))
    assert done.returncode == 0, done.stderr
    assert (
        "线路 10.0.0.7:502（Modbus TCP）：一个连接上最多 8 个请求同时在途（pipeline: 8）；"
        "网关须按事务号逐一应答"
    ) in done.stdout.splitlines()


# A device's own reads in flight together (an SDM630 has four): each reply reaches its own read.


def by_start(request: bytes) -> bytes:
    """Every register of a read holds a word of its own start address: blocks are told apart."""
    return registers(request, value=0x4000 + int.from_bytes(request[8:10]))


def by_block(dev: ModbusDevice) -> np.ndarray:
    return np.concatenate([r.codec.decode([0x4000 + r.start] * r.count) for r in dev.requests])


def test_a_devices_reads_go_out_together_and_each_reply_reaches_its_own_read() -> None:
    [dev] = devices = meters(1)
    reads = len(dev.requests)
    assert reads == 4
    gateway = Gateway(hold=reads, policy=lambda _n, held: [by_start(r) for r in reversed(held)])
    batches, health, metrics = poll_cycle(gateway, devices, pipeline=8)
    assert gateway.most_outstanding == reads and gateway.connections == 1
    b = batches[dev.asset]
    assert (b.quality != Quality.COMM_ERROR).all()
    np.testing.assert_array_equal(b.values, by_block(dev))  # each block its own, not a sibling's
    assert health == [] and errors(metrics, "protocol") == errors(metrics, "timeout") == 0


@pytest.mark.parametrize(
    ("pipeline", "pause", "together"),
    [(2, 0.0, 2), (1, 0.0, 1), (4, 0.001, 1)],
    ids=["pipeline 2: two at a time", "pipeline 1: one at a time", "a device that needs a pause"],
)
def test_reads_go_out_together_only_within_the_window_and_never_for_a_device_that_needs_a_pause(
    pipeline: int, pause: float, together: int
) -> None:
    # The gateway answers only once two requests are outstanding: a master that sends one at a
    # time gets no answer, and its read times out.
    [dev] = devices = meters(1)
    dev.pause = pause
    gateway = Gateway(hold=2, policy=lambda _n, held: [by_start(r) for r in held])
    batches, health, metrics = poll_cycle(gateway, devices, timeout=0.3, pipeline=pipeline)
    assert gateway.most_outstanding == together
    b = batches[dev.asset]
    if together == 2:
        assert (b.quality != Quality.COMM_ERROR).all()
        np.testing.assert_array_equal(b.values, by_block(dev))
    else:
        assert (b.quality == Quality.COMM_ERROR).all() and np.isnan(b.values).all()
        assert [(h.online, h.reason) for h in health] == [(False, "timeout")]
        assert errors(metrics, "timeout") == 1


def failing_block(start: int, connection: int, reply: Callable[[bytes], bytes]) -> Policy:
    """Answers a device's reads in reverse order, the one at ``start`` on ``connection`` with ``reply``."""

    def policy(number: int, held: list[bytes]) -> list[bytes]:
        out = []
        for r in reversed(held):
            if number == connection and int.from_bytes(r[8:10]) == start:
                out.append(reply(r))
            else:
                out.append(by_start(r))
        return out

    return policy


def test_an_exception_to_one_of_a_devices_reads_fails_only_that_blocks_points() -> None:
    [dev] = devices = meters(1)
    second = dev.requests[1]
    refuse = failing_block(second.start, 1, lambda r: adu(r, bytes((r[7] | 0x80, 0x02))))
    gateway = Gateway(hold=len(dev.requests), policy=refuse)
    batches, health, metrics = poll_cycle(gateway, devices, pipeline=4)
    b, refused = batches[dev.asset], dev.plan.slices[1]
    assert (b.quality[refused] == Quality.COMM_ERROR).all() and np.isnan(b.values[refused]).all()
    rest = np.ones(len(b.values), dtype=bool)
    rest[refused] = False
    assert (b.quality[rest] != Quality.COMM_ERROR).all()
    np.testing.assert_array_equal(b.values[rest], by_block(dev)[rest])
    assert health == [], "a device that answers, if only to refuse, is not offline"
    assert errors(metrics, "exception") == 1 and gateway.connections == 1


def test_a_timeout_of_one_of_a_devices_reads_loses_only_it_and_its_late_reply_is_never_taken() -> None:
    [dev] = devices = meters(1)
    second = dev.requests[1]
    # On the first connection the second read is never answered in time: its reply would come
    # after the timeout, with forged values (it never arrives: the master hung up).
    gateway = Gateway(hold=len(dev.requests), policy=failing_block(second.start, 1, lambda _r: b""))
    bus, metrics = SampleBus(), Metrics()
    got: list[SampleBatch] = []
    health: list[HealthChange] = []
    bus.subscribe(got.append)
    bus.subscribe_health(health.append)

    async def scenario() -> None:
        async with gateway:
            line = Line.tcp("127.0.0.1", gateway.port, pipeline=4)
            poller = GatewayPoller("", 0, devices, bus, SystemClock(), metrics, timeout=0.3, line=line)
            await poller._poll_due(devices)
            await poller._poll_due(devices)
            poller._close()

    run(scenario(), timeout=60)
    first, again = got
    lost = dev.plan.slices[1]
    assert (first.quality[lost] == Quality.COMM_ERROR).all() and np.isnan(first.values[lost]).all()
    rest = np.ones(len(first.values), dtype=bool)
    rest[lost] = False
    np.testing.assert_array_equal(first.values[rest], by_block(dev)[rest])  # answered in time: kept
    assert errors(metrics, "timeout") == 1
    assert errors(metrics, "dropped") == 0, "the device's own reads are not asked again behind its timeout"
    assert health == []  # it answered the others
    assert gateway.closed_by_master == [1] and gateway.connections == 2
    assert (again.quality != Quality.COMM_ERROR).all()
    np.testing.assert_array_equal(again.values, by_block(dev))
