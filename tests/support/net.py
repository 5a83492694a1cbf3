"""Ports, bounded scenarios and polling: the small helpers every socket test needs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the tests' own copy; not monitord.tools.demo's)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on ``port``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def run(coro: Awaitable[T], timeout: float = 120) -> T:
    """Run a test scenario; past ``timeout`` say where every task is and cancel them all."""

    async def bounded() -> T:
        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(timeout, _dump_and_cancel)
        try:
            return await coro
        finally:
            watchdog.cancel()

    return asyncio.run(bounded())


def _dump_and_cancel() -> None:
    print("\n--- test scenario timed out; asyncio tasks: ---", file=sys.stderr)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
        task.cancel()


async def eventually(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(interval)


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to right now (BACnet/IP, SNMP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """A process's children (the daemon's MQTT worker), from every thread's list in /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found
