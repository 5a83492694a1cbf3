"""The simulator's fast Modbus TCP path (issue 13): register reads framed straight from a device's
image are byte for byte what pymodbus's own server sends, over real sockets.

Two simulators serve the same models on two ports, one answering through pymodbus's server
machinery (``fast=False``), one through the fast path; every request is sent to both and the
replies compared, and the plain reads also against pymodbus's own framing of a response built
from the device's registers. What the fast path does not take (bit reads, writes, addresses outside
the image, unknown units, a silent device) still goes through pymodbus, and answers the same.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadInputRegistersResponse

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.errors import MonitordError
from monitord.ingest.profiles import DeviceProfile
from monitord.simulators.modbus_server import ModbusSimServer, SimulatedModbusDevice
from monitord.simulators.models import MODELS, Equipment, PowerMeter
from monitord.tools.cli import build_parser
from tests.support.net import free_port, run

SDM, PUMP, OFFLINE, NOBODY = 1, 2, 3, 9
PORTS = {"pymodbus": free_port(), "fast": free_port()}
Action = Callable[..., Awaitable[ExcCodes | None]]


def profile(name: str) -> DeviceProfile:
    return DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / f"{name}.yaml"))


def request(tid: int, unit: int, function: int, address: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, function, address, count)


# (unit, function, address, count): what the daemon asks, and what it must be refused or never asks.
ASKED = [
    (SDM, 4, 0x0000, 80),  # the SDM630's four reads
    (SDM, 4, 0x00C8, 6),
    (SDM, 4, 0x00E0, 22),
    (SDM, 4, 0x0156, 4),
    (SDM, 4, 0x0002, 2),  # one value inside a block
    (SDM, 4, 0x0000, 82),  # over the meter's 80: 0x03
    (SDM, 4, 0x0000, 3),  # odd count on an SDM630: 0x03
    (SDM, 4, 0x0158, 4),  # past the end of its image: 0x02 (through pymodbus)
    (SDM, 3, 0x0000, 2),  # holding registers it has none of (through pymodbus)
    (OFFLINE, 4, 0x0000, 2),  # offline behind the gateway: 0x0B
    (NOBODY, 4, 0x0000, 2),  # no such unit (through pymodbus)
    (PUMP, 3, 0x0000, 2),  # holding registers of a pump set
    (PUMP, 2, 0x0000, 4),  # discrete inputs (through pymodbus)
    (SDM, 4, 0x0000, 0),  # a count pymodbus cannot decode: refused, and the rest of the stream with it
]
#: The requests the fast path answers itself (the others reach pymodbus's datastore).
FAST = 9


async def serve_both(
    models: dict[int, Equipment], actions: dict[str, int] | None = None
) -> list[asyncio.Task[None]]:
    """Serve the models twice: through pymodbus's server, then through the fast path; ``actions``
    counts, for each, the requests that reached pymodbus's datastore and the device's action."""
    tasks = []
    for name, fast in (("pymodbus", False), ("fast", True)):
        devices = [
            SimulatedModbusDevice(SDM, profile("eastron-sdm630"), models[SDM]),
            SimulatedModbusDevice(PUMP, profile("pump-set"), models[PUMP]),
            SimulatedModbusDevice(OFFLINE, profile("eastron-sdm630"), models[OFFLINE]),
        ]
        if actions is not None:
            for dev in devices:
                dev._action = counted(dev._action, actions, name)  # type: ignore[method-assign,assignment]
        server = ModbusSimServer("127.0.0.1", PORTS[name], devices, fast=fast)
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(server.run(ready.set)))
        await ready.wait()
    return tasks


def counted(action: Action, actions: dict[str, int], name: str) -> Action:
    async def count(*args: Any) -> ExcCodes | None:
        actions[name] += 1
        return await action(*args)

    return count


async def exchange(port: int, frames: list[bytes]) -> dict[int, bytes]:
    """Send ``frames`` back to back on one connection; the replies by transaction id."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(frames))
    replies = {}
    for _ in frames:
        header = await reader.readexactly(7)
        tid, _proto, length, _unit = struct.unpack(">HHHB", header)
        replies[tid] = header + await reader.readexactly(length - 1)
    writer.close()
    return replies


def models() -> dict[int, Equipment]:
    out: dict[int, Equipment] = {SDM: PowerMeter("M1"), PUMP: MODELS["pump"]("P1"), OFFLINE: PowerMeter("M3")}
    for m in out.values():
        m.step(1.8e9, 1.0)
    out[OFFLINE].faults.add("offline")
    return out


def test_fast_replies_are_byte_for_byte_what_pymodbus_sends() -> None:
    frames = [request(tid, *asked) for tid, asked in enumerate(ASKED, start=1)]
    shared = models()
    actions = {"pymodbus": 0, "fast": 0}

    async def scenario() -> tuple[dict[int, bytes], dict[int, bytes]]:
        tasks = await serve_both(shared, actions)
        slow = await exchange(PORTS["pymodbus"], frames)  # back to back: pipelined, as the daemon does
        fast = await exchange(PORTS["fast"], frames)
        for t in tasks:
            t.cancel()
        return slow, fast

    slow, fast = run(scenario(), timeout=30)
    assert sorted(slow) == sorted(fast) == list(range(1, len(ASKED) + 1)), "every request answered once"
    for tid, asked in enumerate(ASKED, start=1):
        assert fast[tid] == slow[tid], f"{asked}: {fast[tid].hex()} != {slow[tid].hex()}"
    assert actions["pymodbus"] - actions["fast"] == FAST, "the fast path answered them, not pymodbus"
    # The plain reads are also pymodbus's own framing of a response carrying the device's registers.
    meter = SimulatedModbusDevice(SDM, profile("eastron-sdm630"), shared[SDM])
    words = meter.images["input"].encode(shared[SDM].values)
    framer = FramerSocket(DecodePDU(is_server=True))
    for tid, (unit, _fc, address, count) in enumerate(ASKED[:5], start=1):
        response = ReadInputRegistersResponse(
            registers=[int(w) for w in words[address : address + count]], dev_id=unit, transaction_id=tid
        )
        assert fast[tid] == framer.buildFrame(response)
    refusals = {ASKED[tid - 1]: fast[tid][7:] for tid in (6, 7, 10)}
    assert refusals == {
        (SDM, 4, 0x0000, 82): bytes((0x84, 0x03)),
        (SDM, 4, 0x0000, 3): bytes((0x84, 0x03)),
        (OFFLINE, 4, 0x0000, 2): bytes((0x84, 0x0B)),
    }


@pytest.mark.parametrize("change", ["offline", "value"])
def test_a_changed_model_is_served_at_the_next_read_not_a_cached_image(change: str) -> None:
    shared = models()
    meter = shared[SDM]
    frames = [request(1, SDM, 4, 0x0000, 2)]

    async def scenario() -> tuple[bytes, bytes]:
        tasks = await serve_both(shared)
        before = (await exchange(PORTS["fast"], frames))[1]
        if change == "offline":
            meter.faults.add("offline")
        else:
            meter.values["voltage_l1"] = 123.5
        after = (await exchange(PORTS["fast"], frames))[1]
        for t in tasks:
            t.cancel()
        return before, after

    before, after = run(scenario(), timeout=30)
    assert before[7:9] == bytes((0x04, 4)) and before[9:] != struct.pack(">f", 123.5)
    if change == "offline":
        assert after[7:] == bytes((0x84, 0x0B))
    else:
        assert after[9:] == struct.pack(">f", 123.5)


@pytest.mark.parametrize(("step", "said"), [("0s", "is not a positive duration"), ("soon", "--step: ")])
def test_sim_step_must_be_a_positive_duration(step: str, said: str) -> None:
    args = build_parser().parse_args(["sim", str(CONFIG_DIR / "sites" / "demo.yaml"), "--step", step])
    with pytest.raises(MonitordError, match=r"^--step: ") as refused:
        args.fn(args)
    assert said in str(refused.value)
    assert build_parser().parse_args(["sim", "x"]).step == "0.2s"
