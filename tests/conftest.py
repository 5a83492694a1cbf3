"""Fixtures that start real parts on free ports: Mosquitto, simulators, daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.simulators.modbus_server import ModbusSimServer
from monitord.tools.demo import free_port, on_local_ports
from tests.influx_support import InfluxServer, V2WriteProxy
from tests.webhook_support import WebhookReceiver

T = TypeVar("T")


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


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.access(p, os.X_OK)), None
    )


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Mosquitto broker on a free port; its port."""
    binary = _mosquitto_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; `make test` installs it as root")
        pytest.skip("mosquitto is not installed (Debian package 'mosquitto')")
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[tuple[InfluxServer, V2WriteProxy]]:
    """A real InfluxDB (Debian's 1.6.7) on free ports, database ``monitord``, behind the v2-write proxy."""
    if shutil.which("influxd") is None and not os.access("/usr/bin/influxd", os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("influxd is not installed; `make test` installs Debian's influxdb as root")
        pytest.skip("influxd is not installed (Debian package 'influxdb')")
    folder = tmp_path / "influxdb"
    folder.mkdir()
    server = InfluxServer(folder)
    server.start()
    server.query("CREATE DATABASE monitord")
    proxy = V2WriteProxy(server.url)
    try:
        yield server, proxy
    finally:
        proxy.close()
        server.kill()


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    """A real HTTP server recording every webhook it receives."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def demo_site(tmp_path: Path, mqtt_port: int, **overrides: Any) -> SiteConfig:
    """The demo building on free local ports, with its store in ``tmp_path``."""
    base = load_config(CONFIG_DIR / "sites" / "demo.yaml")
    config = on_local_ports(base, mqtt_port, tmp_path / "store.db")
    return config.model_copy(update=overrides) if overrides else config


def poll_once(server: ModbusSimServer, poller: GatewayPoller, device: ModbusDevice) -> None:
    """Serve the simulated devices, read one device once over real Modbus TCP, stop."""

    async def scenario() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(server.run(ready.set))
        await ready.wait()
        await poller.poll(device)
        poller._close()
        task.cancel()

    run(scenario(), timeout=30)
