"""``monitord demo``: a simulated building, an embedded broker and the daemon.

Everything runs in one process and needs no installed service: the demo site's
Modbus devices are served by the simulator on free local ports, the elevators
publish to an embedded MQTT broker, the daemon polls and subscribes over those
real sockets, and the demo scenario injects and clears faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

from monitord.config.site import SiteConfig, load_config
from monitord.daemon.runner import run_daemon, until_stopped
from monitord.simulators.broker import MqttBroker
from monitord.simulators.scenario import load_scenario
from monitord.simulators.site import SimulatedSite


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def on_local_ports(config: SiteConfig, mqtt_port: int, store_path: Path) -> SiteConfig:
    """The same site with every Modbus endpoint and the broker moved to free local ports."""
    moved: dict[tuple[str, int], int] = {}
    assets = []
    for a in config.assets:
        m = a.connection.modbus
        if m is not None and m.serial is None:  # a serial port stays what it is
            port = moved.setdefault((m.host or "", m.port), free_port())
            conn = a.connection.model_copy(
                update={"modbus": m.model_copy(update={"host": "127.0.0.1", "port": port})}
            )
            a = a.model_copy(update={"connection": conn})
        assets.append(a)
    mqtt = config.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{mqtt_port}"}) if config.mqtt else None
    store = config.store.model_copy(update={"path": str(store_path)})
    metrics = config.metrics.model_copy(update={"port": 0})
    api = config.api.model_copy(update={"port": 0})
    changes = {
        "assets": assets,
        "mqtt": mqtt,
        "store": store,
        "metrics": metrics,
        "api": api,
    }
    return config.model_copy(update=changes)


def run_demo(
    config_path: Path, scenario_path: Path, duration: float | None, data: Path, locale: str | None = None
) -> int:
    # The demo prints fault changes itself.
    logging.getLogger("monitord.simulators").setLevel(logging.WARNING)
    base = load_config(config_path)
    if locale is not None:  # --locale: the same site in another language
        base = base.model_copy(update={"site": base.site.model_copy(update={"locale": locale})})
    scenario = load_scenario(scenario_path, base)
    store_path = data / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)  # each demo starts with an empty store

    async def main(stop: asyncio.Event) -> None:
        broker = MqttBroker()
        port = await broker.start()
        config = on_local_ports(base, port, store_path)
        site = SimulatedSite(config, scenario)
        site.fault_listeners.append(
            lambda asset, fault, active: print(
                f"          SIMULATOR {'injects' if active else 'clears '} {fault} on {asset}", flush=True
            )
        )
        print(f"monitord demo — {config.site.name or config.site.id}: {len(config.assets)} simulated assets")
        for s in site.servers:
            units = ", ".join(f"unit {d.unit} {d.model.asset}" for d in s.devices)
            print(f"  modbus tcp {s.host}:{s.port}  ({units})")
        print(f"  mqtt broker 127.0.0.1:{port}  (elevators publish here)")
        print(f"  store {store_path}")
        print(f"  scenario: {scenario.description or scenario.scenario}; Ctrl-C to stop", flush=True)
        sim = asyncio.create_task(site.run(), name="simulators")
        await site.ready.wait()
        try:
            await run_daemon(config, stop)
        finally:
            sim.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim
            await broker.stop()
        tickets = f"monitord tickets --config {config_path} --store {store_path}"
        print(f"demo finished; tickets: {tickets} list", flush=True)

    asyncio.run(until_stopped(main, duration))
    return 0
