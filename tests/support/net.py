"""Ports, bounded scenarios and polling: the small helpers every socket test needs."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = list(range(20000, min(_ephemeral_floor(), 32768)))
random.shuffle(_PORTS)  # a process of its own (a helper's suite, a bench) starts elsewhere in the range
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, below the kernel's ephemeral range, and never one this
    process handed out before (the tests' own copy; not monitord.tools.demo's).

    ``bind(0)`` would pick from the ephemeral range, where every outgoing connection of the daemons
    under test takes its local port too: one of them could hold the port between this call and the
    server that listens on it ("cannot listen", seen under load). Below the range only another
    listener can."""
    for port in _PORTS:
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port left below the ephemeral range")


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
