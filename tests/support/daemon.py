"""The demo site on free ports, the daemon running against simulators, and proofs of progress.

Negative checks ("nothing more opened") must not rest on a wall-clock sleep: a slow daemon would
pass them without having looked. ``evaluated_past`` waits until the daemon has provably run an
evaluation after a given instant (and, if asked, with samples newer than it), so the absence
asserted afterwards was decided; a daemon that does not get there fails the test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.model import Quality
from monitord.daemon.app import Monitord
from monitord.drivers.modbus import GatewayPoller, ModbusDevice
from monitord.people.roster import Contact, RosterConfig, TeamConfig
from monitord.simulators.modbus_server import ModbusSimServer
from monitord.simulators.site import SimulatedSite
from monitord.tickets.sla import Sla
from monitord.tools.demo import on_local_ports
from tests.support.net import eventually, free_port, run
from tests.support.webhooks import WebhookReceiver

SKILLS = ("elevator", "plumbing", "hvac", "electrical", "it", "energy")
TOKEN = "s3cret-token"


def demo_site(tmp_path: Path, mqtt_port: int, **overrides: Any) -> SiteConfig:
    """The demo building on free local ports, with its store in ``tmp_path``."""
    base = load_config(CONFIG_DIR / "sites" / "demo.yaml")
    config = on_local_ports(base, mqtt_port, tmp_path / "store.db")
    return config.model_copy(update=overrides) if overrides else config


def site_yaml(tmp_path: Path, mqtt_port: int, influx_url: str | None) -> Path:
    """The demo site as a file, on free ports, storing to InfluxDB with its spool in tmp_path (or, with
    no ``influx_url``, to SQLite under ./monitord-data: run the daemon in tmp_path)."""
    text = (CONFIG_DIR / "sites" / "demo.yaml").read_text()
    text = text.replace("../profiles/", f"{CONFIG_DIR}/profiles/")
    for port in ("15020", "15021", "15022"):
        text = text.replace(f"port: {port}", f"port: {free_port()}")
    text = text.replace("mqtt://127.0.0.1:1883", f"mqtt://127.0.0.1:{mqtt_port}")
    text = text.replace("port: 9108}", "port: 0}").replace("port: 9109,", "port: 0,")
    text = (
        text
        if influx_url is None
        else text.replace(
            "store: {kind: sqlite, path: ./monitord-data/demo.db}",
            f"store: {{kind: influxdb, url: '{influx_url}', bucket: monitord, spool: '{tmp_path}/spool'}}",
        )
    )
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def token_of(name: str) -> str:
    """The console/API token ``with_people`` gives each person."""
    return f"{name}-token"


def with_people(config: SiteConfig, hooks: WebhookReceiver, tmp_path: Path, ack: float = 6.0) -> SiteConfig:
    """A roster with one on-call person per skill, a lead and a duty manager, all on webhooks; each has a
    token (``token_of``): technicians, leads as dispatchers, the duty manager as admin, and a ``viewer``
    and a ``dispatcher`` on no rotation."""
    teams = {
        s: TeamConfig(
            skills=[s],
            members=[Contact(name=f"{s}-tech", webhook=hooks.url(f"{s}-tech"), token=token_of(f"{s}-tech"))],
            lead=Contact(
                name=f"{s}-lead",
                webhook=hooks.url(f"{s}-lead"),
                role="dispatcher",
                token=token_of(f"{s}-lead"),
            ),
        )
        for s in SKILLS
    }
    manager = Contact(
        name="duty-manager", webhook=hooks.url("duty"), role="admin", token=token_of("duty-manager")
    )
    desk = [
        Contact(name="viewer", role="viewer", token=token_of("viewer")),
        Contact(name="dispatcher", role="dispatcher", token=token_of("dispatcher")),
    ]
    roster = RosterConfig(teams=teams, duty_manager=manager, people=desk)
    fast = Sla(ack=ack, start=60, resolve=600)
    return config.model_copy(
        update={
            "roster": roster,
            "sla": {"P1": fast, "P2": fast},
            "api": config.api.model_copy(update={"token": TOKEN, "port": 0}),
            "notify": config.notify.model_copy(update={"log": str(tmp_path / "notifications.db")}),
        }
    )


def daemon_yaml(
    tmp_path: Path, mosquitto: int, hooks: WebhookReceiver, extra: str = ""
) -> tuple[Path, int, int]:
    """The demo site as a file for ``monitord run``: free ports, store and log in tmp_path, people on
    webhooks, then ``extra`` YAML. The path, the metrics port and the API port."""
    text = (CONFIG_DIR / "sites" / "demo.yaml").read_text()
    text = text.replace("../profiles/", f"{CONFIG_DIR}/profiles/")
    for port in ("15020", "15021", "15022"):
        text = text.replace(f"port: {port}", f"port: {free_port()}")
    metrics, api = free_port(), free_port()
    text = text.replace("mqtt://127.0.0.1:1883", f"mqtt://127.0.0.1:{mosquitto}")
    text = text.replace("port: 9108}", f"port: {metrics}}}").replace("port: 9109,", f"port: {api},")
    text = text.replace("./monitord-data/demo.db", str(tmp_path / "store.db"))
    text = text.replace("./monitord-data/notifications.db", str(tmp_path / "notifications.db"))
    text = text.replace('token: "${MONITORD_TOKEN:-demo-token}"', f"token: {TOKEN}")  # reads need it too
    head, _, rest = text.partition("roster:\n")
    _, _, tail = rest.partition("api:")
    teams = "".join(
        f"    {s}: {{skills: [{s}], members: [{{name: {s}-tech, webhook: '{hooks.url(s + '-tech')}'}}],"
        f" lead: {{name: {s}-lead, webhook: '{hooks.url(s + '-lead')}'}}}}\n"
        for s in SKILLS
    )
    sla = "sla: {P1: {ack: 5m, start: 15m, resolve: 2h}}\n"
    text = f"{head}roster:\n  teams:\n{teams}{sla}api:{tail}{extra}"
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path, metrics, api


def metric(port: int, name: str) -> float | None:
    """A sample without labels from a daemon's /metrics (0 when absent), None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            lines = r.read().decode().splitlines()
    except OSError:
        return None
    return next((float(line.split()[-1]) for line in lines if line.startswith(name + " ")), 0.0)


def post(url: str, body: dict[str, Any], token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def text_of(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def get(url: str, token: str | None = TOKEN) -> Any:
    """A read of the API as the holder of ``token`` (default: ``api.token``, the admin); reads need one."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


class SiteThread:
    """A simulated site on an event loop of its own, in its own thread: like real devices, it keeps
    answering whatever the test's loop is doing (a blocking HTTP read, waiting for a process)."""

    def __init__(self, config: SiteConfig) -> None:
        self._loop = asyncio.new_event_loop()
        self._started: concurrent.futures.Future[SimulatedSite] = concurrent.futures.Future()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._serve, args=(config,), name="simulated-site")
        self._thread.start()
        self.site = self._started.result(30)

    def _serve(self, config: SiteConfig) -> None:
        async def main() -> None:
            site = SimulatedSite(config)
            self._task = asyncio.create_task(site.run())
            ready = asyncio.create_task(site.ready.wait())
            await asyncio.wait([self._task, ready], return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():  # the site ended before it was up: say why in the test
                ready.cancel()
                self._started.set_exception(self._task.exception() or RuntimeError("simulator ended"))
                return
            self._started.set_result(site)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _call(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the site's loop (the models are the site's alone) and wait for it."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn(*args))
            except Exception as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        done.result(10)

    def inject(self, asset: str, fault: str) -> None:
        self._call(self.site.inject, asset, fault)

    def clear(self, asset: str, fault: str) -> None:
        self._call(self.site.clear, asset, fault)

    def stop(self) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(30)


@contextlib.asynccontextmanager
async def simulated(config: SiteConfig) -> AsyncIterator[SiteThread]:
    """The simulated site alone, in a thread of its own (the daemon runs elsewhere)."""
    site = await asyncio.to_thread(SiteThread, config)
    try:
        yield site
    finally:
        await asyncio.to_thread(site.stop)


@contextlib.asynccontextmanager
async def running(config: SiteConfig, metrics_port: int = 0) -> AsyncIterator[tuple[SimulatedSite, Monitord]]:
    """The simulated site and the daemon against it, both on this event loop."""
    site = SimulatedSite(config)
    sim = asyncio.create_task(site.run())
    await site.ready.wait()
    app = Monitord(config, metrics_port=metrics_port)
    daemon = asyncio.create_task(app.run())
    await app.started.wait()
    try:
        yield site, app
    finally:
        app.stop()
        async with asyncio.timeout(30):
            await daemon
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await sim


def good(app: Monitord, asset: str, point: str) -> bool:
    return app.core.state.latest(asset)[point][2] == Quality.GOOD


def sample_time(app: Monitord, asset: str, point: str) -> float:
    """When the daemon last took a sample of ``asset``'s ``point`` (good or not)."""
    return float(app.core.state.latest(asset)[point][1])


def evaluations(app: Monitord) -> int:
    """How many evaluations the daemon has run: its own counter, as /metrics shows it."""
    count = app.metrics.registry.get_sample_value("monitord_rules_evaluation_duration_seconds_count")
    return int(count or 0)


async def evaluated_past(
    app: Monitord,
    instant: float,
    fresh: Iterable[tuple[str, str]] = (),
    timeout: float = 30.0,
) -> None:
    """Return once the daemon has run a whole evaluation (rules, alerts, tickets, SLA clocks and
    escalation) that began after ``instant`` on its clock, with a sample newer than ``instant`` of
    every (asset, point) in ``fresh``, and holds no alert back for a later ticket decision.

    This waits on the daemon's own clock and on its evaluation counter, never on a fixed sleep: if
    the daemon is slow or stuck it does not return and the test fails here, instead of asserting an
    absence the daemon never had the chance to contradict.
    """
    wanted = list(fresh)
    await eventually(
        lambda: app.clock.now() > instant and all(sample_time(app, a, p) > instant for a, p in wanted),
        timeout,
    )
    # The daemon's tick is synchronous on this loop: no evaluation is half done while we read.
    seen = evaluations(app)
    await eventually(lambda: evaluations(app) > seen and not app.core.pipeline._held, timeout, interval=0.02)


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
