"""Fixtures: real parts on free ports (Mosquitto, InfluxDB, a webhook receiver) and timelines.

The helpers they use, and every helper tests share, live in tests/support.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import InfluxServer, Timeline, V2WriteProxy, WebhookReceiver
from tests.support.alertmanager import Alertmanager, alertmanager_binary
from tests.support.browser import Browser, chromium
from tests.support.influx import influx_with_proxy
from tests.support.mosquitto import Mosquitto, mosquitto_binary

CHECKOUT = Path(__file__).resolve().parent.parent


def _data_in_checkout() -> dict[str, tuple[int, int]]:
    folder = CHECKOUT / "monitord-data"
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="session", autouse=True)
def checkout_untouched() -> Iterator[None]:
    """No test writes into the checkout's monitord-data (the demo's and the daemon's default folder):
    `make test` once wrote notification rows into the copy the demo uses."""
    before = _data_in_checkout()
    yield
    assert _data_in_checkout() == before, "a test wrote into the checkout's monitord-data/"


def _mosquitto_or_skip() -> str:
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; `make test` installs it as root")
        pytest.skip("mosquitto is not installed (Debian package 'mosquitto')")
    return binary


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Mosquitto broker on a free port; its port."""
    broker = Mosquitto(_mosquitto_or_skip(), tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker.port
    finally:
        broker.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own, to stop and start (not started yet)."""
    broker = Mosquitto(_mosquitto_or_skip(), tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[tuple[InfluxServer, V2WriteProxy]]:
    """A real InfluxDB (Debian's 1.6.7) on free ports, database ``monitord``, behind the v2-write proxy."""
    if shutil.which("influxd") is None and not os.access("/usr/bin/influxd", os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("influxd is not installed; `make test` installs Debian's influxdb as root")
        pytest.skip("influxd is not installed (Debian package 'influxdb')")
    with influx_with_proxy(tmp_path) as pair:
        yield pair


@pytest.fixture
def alertmanager(tmp_path: Path, webhooks: WebhookReceiver) -> Iterator[Alertmanager]:
    """Debian's Alertmanager on a free port (not started yet); it notifies ``webhooks`` at ``/am``."""
    binary = alertmanager_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus-alertmanager is not installed; `make system-deps` installs it as root")
        pytest.skip("prometheus-alertmanager is not installed (Debian package 'prometheus-alertmanager')")
    folder = tmp_path / "alertmanager"
    folder.mkdir()
    manager = Alertmanager(binary, folder, webhooks.url("am"))
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    """A real HTTP server recording every webhook it receives."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def timeline(tmp_path: Path) -> Iterator[Callable[..., Timeline]]:
    """Build ``Timeline(config_or_yaml, tmp_path, ...)``s; their stores are closed afterwards."""
    made: list[Timeline] = []

    def make(config: Any, **kw: Any) -> Timeline:
        tl = Timeline(config, tmp_path, name=f"timeline{len(made)}", **kw)
        made.append(tl)
        return tl

    yield make
    for tl in made:
        tl.close()


@pytest.fixture
def browsers() -> Iterator[Callable[[str, tuple[int, int]], Browser]]:
    """Open real headless chromium browsers (``open(base_url, (width, height))``); all quit afterwards."""
    if chromium() is None:
        if os.geteuid() == 0 or os.environ.get("CI"):
            pytest.fail("chromium/chromium-driver are missing; `make system-deps` installs them as root")
        pytest.skip("chromium and chromium-driver are not installed (Debian packages), and we are not root")
    opened: list[Browser] = []

    def open_one(base_url: str, size: tuple[int, int]) -> Browser:
        b = Browser(base_url, size)
        opened.append(b)
        return b

    yield open_one
    for b in opened:
        b.close()
