"""Command line: check, run, sim, demo, tickets.

Exit status: 0 fine, 2 configuration problem (nothing started), 1 anything
else. Logging goes to stderr; pymodbus's own logger is kept at WARNING so it
never prints frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .config import CONFIG_DIR, SiteConfig, load_config
from .errors import ConfigError, MonitordError
from .units import format_duration, parse_duration

log = logging.getLogger("monitord")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("pymodbus", "pymodbus.logging"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if not verbose else logging.WARNING)


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(
        f"{args.config}: ok — {len(config.assets)} assets, {len(config.profiles)} profiles, "
        f"{len(config.rules)} rules"
    )
    return 0


async def _until_stopped(main: Callable[[asyncio.Event], Awaitable[None]], duration: float | None) -> None:
    """Run ``main`` until Ctrl-C, SIGTERM or ``duration`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await main(stop)


async def run_daemon(config: SiteConfig, stop: asyncio.Event, *, metrics_port: int | None = None) -> None:
    """The daemon with a console reporter, until ``stop`` is set; then a clean shutdown."""
    from .app import Monitord
    from .console import ConsoleReporter

    app = Monitord(config, metrics_port=metrics_port)
    console = ConsoleReporter(app.assets)
    app.pipeline.alert_listeners.append(console.alert)
    app.pipeline.ticket_listeners.append(console.ticket)
    daemon = asyncio.create_task(app.run(), name="monitord")
    stopper = asyncio.create_task(stop.wait())
    started = asyncio.create_task(app.started.wait())
    await asyncio.wait([daemon, started], return_when=asyncio.FIRST_COMPLETED)
    if app.started.is_set():
        print(f"metrics: {app.metrics_url}", flush=True)
    await asyncio.wait([daemon, stopper], return_when=asyncio.FIRST_COMPLETED)
    app.stop()
    stopper.cancel()
    started.cancel()
    await daemon


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)

    async def main(stop: asyncio.Event) -> None:
        await run_daemon(config, stop, metrics_port=args.metrics_port)

    asyncio.run(_until_stopped(main, None))
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from simulators.scenario import load_scenario
    from simulators.site import SimulatedSite

    config = load_config(args.config)
    scenario = load_scenario(Path(args.scenario), config) if args.scenario else None

    async def main(stop: asyncio.Event) -> None:
        site = SimulatedSite(config, scenario)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(site.run())
            await site.ready.wait()
            print(
                f"simulating {len(site.models)} assets of {config.site.id}: "
                + ", ".join(f"modbus {s.host}:{s.port}" for s in site.servers),
                flush=True,
            )
            await stop.wait()
            task.cancel()

    asyncio.run(_until_stopped(main, parse_duration(args.duration) if args.duration else None))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    duration = parse_duration(args.duration) if args.duration else None
    return run_demo(Path(args.config), Path(args.scenario), duration, Path(args.data))


def _open_store(args: argparse.Namespace) -> object:
    from .sqlite_store import SqliteStore

    path = Path(load_config(args.config).store.path) if args.config else Path(args.store)
    if not path.exists():
        raise MonitordError(f"no store at {path}")
    return SqliteStore(path)


def _cmd_tickets(args: argparse.Namespace) -> int:
    from .sqlite_store import SqliteStore
    from .tickets import TicketDesk

    store = _open_store(args)
    assert isinstance(store, SqliteStore)
    desk = TicketDesk()
    try:
        desk.restore(store.ticket_events())
    finally:
        store.close()
    if args.action == "list":
        rows = sorted(desk.tickets.values(), key=lambda t: t.opened_at, reverse=True)
        if args.open:
            rows = [t for t in rows if t.state == "open"]
        if not rows:
            print("no tickets")
        for t in rows:
            opened = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.opened_at))
            print(f"{t.id}  {t.state:8} {t.priority} {t.category:10} {t.asset:12} {opened}  {t.summary}")
        return 0
    found = desk.tickets.get(args.id)
    if found is None:
        print(f"no ticket {args.id}", file=sys.stderr)
        return 1
    t = found
    print(f"{t.id}  [{t.state}]  {t.priority}  {t.category}")
    print(f"  asset:    {t.asset}" + (f"  ({t.location})" if t.location else ""))
    print(f"  rule:     {t.rule}")
    print(f"  summary:  {t.summary}")
    print(f"  since:    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t.since))}")
    print(f"  alerts:   {t.alert_count}")
    print("  events:")
    for ev in t.events:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.ts))
        after = format_duration(ev.ts - t.opened_at)
        print(f"    {stamp} (+{after})  {ev.event:9} by {ev.actor}: {ev.summary}")
    return 0


def _cmd_rules_test(args: argparse.Namespace) -> int:
    from .ruletest import run_file

    failed = passed = 0
    for name in args.files:
        for outcome in run_file(Path(name)):
            if outcome.ok:
                passed += 1
                if args.verbose_tests:
                    print(f"ok    {name}: {outcome.name}")
            else:
                failed += 1
                print(f"FAIL  {name}: {outcome.name}")
                for line in outcome.failures:
                    print(f"        {line}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monitord", description="Equipment monitoring and alerting for buildings"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate a configuration without connecting to anything")
    c.add_argument("config")
    c.set_defaults(fn=_cmd_check)

    r = sub.add_parser("run", help="run the daemon against the devices in CONFIG")
    r.add_argument("config")
    r.add_argument("--metrics-port", type=int, default=None, help="override metrics.port (0: any free port)")
    r.set_defaults(fn=_cmd_run)

    s = sub.add_parser("sim", help="run the simulators for the assets in CONFIG")
    s.add_argument("config")
    s.add_argument("--scenario", help="fault timeline YAML")
    s.add_argument("--duration", help="stop after this long, e.g. 90s")
    s.set_defaults(fn=_cmd_sim)

    d = sub.add_parser("demo", help="simulated building + daemon + fault scenario in one process")
    d.add_argument("--duration", default=None, help="stop after this long, e.g. 90s (default: until Ctrl-C)")
    d.add_argument("--config", default=str(CONFIG_DIR / "sites" / "demo.yaml"))
    d.add_argument("--scenario", default=str(CONFIG_DIR / "scenarios" / "demo.yaml"))
    d.add_argument("--data", default="./monitord-data", help="folder for the demo's store")
    d.set_defaults(fn=_cmd_demo)

    rules = sub.add_parser("rules", help="tools for rule authors")
    rsub = rules.add_subparsers(dest="action", required=True)
    rt = rsub.add_parser("test", help="run rule unit tests (YAML)")
    rt.add_argument("files", nargs="+")
    rt.add_argument("--verbose-tests", action="store_true", help="list passing tests too")
    rt.set_defaults(fn=_cmd_rules_test)

    t = sub.add_parser("tickets", help="read tickets from the store")
    t.add_argument("--config", help="site config (its store is read)")
    t.add_argument("--store", default="./monitord-data/monitord.db", help="SQLite store file")
    tsub = t.add_subparsers(dest="action", required=True)
    tl = tsub.add_parser("list")
    tl.add_argument("--open", action="store_true", help="open tickets only")
    ts = tsub.add_parser("show")
    ts.add_argument("id")
    t.set_defaults(fn=_cmd_tickets)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    except MonitordError as exc:
        print(f"monitord: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
