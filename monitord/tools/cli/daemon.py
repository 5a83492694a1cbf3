"""``check``, ``run``, ``sim`` and ``demo``: the daemon, the simulators, or both in one process."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from monitord.config.across_sites import clashes
from monitord.config.fleet import Member
from monitord.config.mqtt import publishes_changes, status_topic
from monitord.config.shards import ShardPlan
from monitord.config.site import (
    CONFIG_DIR,
    SiteConfig,
    coverage,
    line_budgets,
    load_config,
    modbus_lines,
    modbus_of,
)
from monitord.core.errors import ConfigError, MonitordError
from monitord.core.i18n import translator
from monitord.core.units import parse_duration
from monitord.daemon.runner import run_daemon, until_stopped
from monitord.simulators.scenario import load_scenario
from monitord.simulators.site import SimulatedSite
from monitord.tools.cli.common import lang_args, locale_arg, locale_of
from monitord.tools.demo import run_demo
from monitord.tools.fleet import fleet_lines, read_fleet
from monitord.tools.sitecheck import online_code_check


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    c = sub.add_parser("check", help="validate configurations (without --online: connecting to nothing)")
    c.add_argument("config", nargs="+", help="site files; several: no two sites may share a ticket code")
    c.add_argument(
        "--online", action="store_true", help="also ask each site's store whether another site uses its code"
    )
    lang_args(c)
    c.set_defaults(fn=check)

    r = sub.add_parser("run", help="run the daemon against the devices in CONFIG")
    r.add_argument("config")
    r.add_argument("--metrics-port", type=int, default=None, help="override metrics.port (0: any free port)")
    r.add_argument("--instance", default=None, help="this instance's name in its fleet (default: host)")
    r.add_argument("--shard", type=int, default=None, help="fleet.mode shard: this instance's shard (from 0)")
    r.set_defaults(fn=run)

    s = sub.add_parser("sim", help="run the simulators for the assets in CONFIG")
    s.add_argument("config")
    s.add_argument("--scenario", help="fault timeline YAML")
    s.add_argument("--duration", help="stop after this long, e.g. 90s")
    s.add_argument(
        "--step",
        default="0.2s",
        help="physics step of every model (default 0.2s; 1s lets one process serve thousands of meters)",
    )
    s.add_argument(
        "--serial",
        action="append",
        default=[],
        metavar="CONFIG_PORT=SIM_PORT",
        help="serve the config's serial line CONFIG_PORT on SIM_PORT (the cable's other end); repeatable",
    )
    s.set_defaults(fn=sim)

    f = sub.add_parser("fleet", help="the instances of CONFIG's site and their roles (from the broker)")
    f.add_argument("config")
    f.set_defaults(fn=fleet)

    d = sub.add_parser("demo", help="simulated building + daemon + fault scenario in one process")
    d.add_argument("--duration", default=None, help="stop after this long, e.g. 90s (default: until Ctrl-C)")
    d.add_argument("--config", default=str(CONFIG_DIR / "sites" / "demo.yaml"))
    d.add_argument("--scenario", default=str(CONFIG_DIR / "scenarios" / "demo.yaml"))
    d.add_argument("--data", default="./monitord-data", help="folder for the demo's store")
    d.add_argument(
        "--locale",
        type=locale_arg,
        default=None,
        help="zh-CN or en: the demo's language (default: the site's)",
    )
    d.set_defaults(fn=demo)


def check(args: argparse.Namespace) -> int:
    configs, problems = [], []
    for path in args.config:  # every file's problems in one run
        try:
            configs.append((Path(path), load_config(path)))
        except ConfigError as exc:
            problems += exc.problems
            continue
        _check_one(args, path, configs[-1][1])
    if problems := problems + clashes(configs):
        raise ConfigError(problems)
    return online_code_check(configs, getattr(args, "lang", None)) if args.online else 0


def _check_one(args: argparse.Namespace, path: str, config: SiteConfig) -> None:
    _ = translator(locale_of(args, config))  # --lang, else the site's: as the daemon will speak
    print(
        _("{path}: ok — {assets} assets, {profiles} profiles, {rules} rules").format(
            path=path,
            assets=len(config.assets),
            profiles=len(config.profiles),
            rules=len(config.rules),
        )
    )
    # Not errors: a pack serves profiles with and without some points; but say what is not watched.
    for gap in coverage(config):
        print(
            _("warning: {asset}: {rule} cannot be evaluated, profile lacks {points}").format(
                asset=gap.asset, rule=gap.rule, points=", ".join(gap.missing)
            )
        )
    if config.fleet.mode == "shard":
        counts = ", ".join(
            _("shard {k}: {n}").format(k=k, n=n) for k, n in enumerate(ShardPlan.of(config).counts())
        )
        print(
            _("fleet: {shards} shards, assets per shard: {counts}").format(
                shards=config.fleet.shards, counts=counts
            )
        )
    for b in line_budgets(config):
        baud, parity, stop, size = b.line.settings
        print(
            _(
                "line {line} (RTU {baud} {size}{parity}{stop}): one poll of every device takes {ms:.0f} ms"
                " on the wire; the line carries {capacity:.1f} polls/s, the poll intervals ask {demand:.1f}"
                " ({share:.0%})"
            ).format(
                line=b.line.name,
                baud=baud,
                size=size,
                parity=parity,
                stop=stop,
                ms=b.poll_seconds * 1000,
                capacity=b.capacity,
                demand=b.demand,
                share=b.utilisation,
            )
        )
        if b.utilisation > 1:
            print(
                _(
                    "warning: line {line}: the poll intervals ask {share:.0%} of what the line carries; polls"
                    " will come late (lengthen poll:, raise the baud rate, or split the line)"
                ).format(line=b.line.name, share=b.utilisation)
            )
    for a in config.assets:  # a device that reports changes needs a way to be heard between them
        conn = a.connection.mqtt
        if conn is None or not publishes_changes(config, a) or conn.gateway or status_topic(config, a):
            continue
        print(
            _(
                "warning: {asset} reports only changes and has no status topic: unless it sends a message"
                " at least every {seconds:g} s (a changed field or a keep-alive), it is judged offline"
                " between changes"
            ).format(asset=a.id, seconds=config.engine.offline_after_polls * config.poll_of(a))
        )
    for assets in modbus_lines(config).values():
        if (line := modbus_of(assets[0]).line).pipeline > 1:
            print(
                _(
                    "line {line} (Modbus TCP): up to {n} requests in flight on one connection "
                    "(pipeline: {n}); the gateway must answer each under its transaction id"
                ).format(line=line.name, n=line.pipeline)
            )


def fleet(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    presences, claim = read_fleet(config)
    print("\n".join(fleet_lines(config, presences, claim)))
    return 0 if presences else 1


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    member = Member.from_args(args.instance, args.shard)
    member.check(config.fleet)

    async def main(stop: asyncio.Event) -> None:
        await run_daemon(config, stop, metrics_port=args.metrics_port, member=member)

    asyncio.run(until_stopped(main, None))
    return 0


def sim(args: argparse.Namespace) -> int:
    step = _duration(args.step, "--step")
    if not step or step <= 0:
        raise MonitordError(f"--step: {args.step!r} is not a positive duration")
    config = load_config(args.config)
    serial_ports = {}
    for pair in args.serial:
        config_port, sep, sim_port = pair.partition("=")
        if not sep or not config_port or not sim_port:
            raise MonitordError(f"--serial {pair!r}: give CONFIG_PORT=SIM_PORT, e.g. /dev/ttyUSB0=/dev/pts/7")
        serial_ports[config_port] = sim_port
    scenario = load_scenario(Path(args.scenario), config) if args.scenario else None

    sites: list[SimulatedSite] = []

    async def main(stop: asyncio.Event) -> None:
        site = SimulatedSite(config, scenario, step=step, serial_ports=serial_ports)
        sites.append(site)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(site.run())
            await site.ready.wait()
            pub = site.publisher
            print(
                f"simulating {len(site.models)} assets of {config.site.id}: "
                + ", ".join(
                    [f"modbus {s.name}" for s in site.servers]
                    + [f"{e.protocol} {e.host}:{e.port}" for e in site.endpoints]
                    + ([f"mqtt {pub.host}:{pub.port}"] if pub else [])
                ),
                flush=True,
            )
            await stop.wait()
            task.cancel()

    try:
        asyncio.run(until_stopped(main, _duration(args.duration)))
    except* OSError as group:  # a simulator that cannot listen: say which, without a traceback
        raise MonitordError("; ".join(str(e) for e in _leaves(group))) from None
    pub = sites[0].publisher if sites else None
    if pub is not None and pub.published == 0:  # the run "worked" for nothing: say so, and fail
        raise MonitordError(
            f"no MQTT broker at {pub.host}:{pub.port}: the {len(pub.devices)} MQTT assets published nothing"
        )
    return 0


def _leaves(group: BaseExceptionGroup[OSError]) -> list[BaseException]:
    """The exceptions in a (nested) exception group."""
    return [e for x in group.exceptions for e in (_leaves(x) if isinstance(x, BaseExceptionGroup) else [x])]


def demo(args: argparse.Namespace) -> int:
    return run_demo(
        Path(args.config), Path(args.scenario), _duration(args.duration), Path(args.data), args.locale
    )


def _duration(text: str | None, option: str = "--duration") -> float | None:
    try:
        return parse_duration(text) if text else None
    except ValueError as exc:
        raise MonitordError(f"{option}: {exc}") from None
