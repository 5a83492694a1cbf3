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

from monitord.config.site import CONFIG_DIR, SiteConfig, load_config
from monitord.core.errors import ConfigError, MonitordError
from monitord.core.units import format_duration, parse_duration
from monitord.rules.spec import RuleSpec
from monitord.rules.windows import Window
from monitord.store.base import Store

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
    from monitord.daemon.app import Monitord
    from monitord.people.console import ConsoleReporter

    app = Monitord(config, metrics_port=metrics_port)
    console = ConsoleReporter(app.core.assets)
    app.core.road.alert_listeners.append(console.alert)
    app.core.road.ticket_listeners.append(console.ticket)
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
    from monitord.simulators.scenario import load_scenario
    from monitord.simulators.site import SimulatedSite

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
    from monitord.tools.demo import run_demo

    duration = parse_duration(args.duration) if args.duration else None
    return run_demo(Path(args.config), Path(args.scenario), duration, Path(args.data))


def _open_store(args: argparse.Namespace) -> Store:
    """The store a config names, or a SQLite file given by path."""
    from monitord.store.open import open_store
    from monitord.store.sqlite import SqliteStore

    if args.config:
        return open_store(load_config(args.config), writer=False)
    path = Path(args.store)
    if not path.exists():
        raise MonitordError(f"no store at {path}")
    return SqliteStore(path, writer=False)


def _api_call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, object] | None = None
) -> object:
    """Call the daemon's API as the duty desk; raises MonitordError with the daemon's own words."""
    import json
    import os
    import urllib.error
    import urllib.request

    api = args.api or os.environ.get("MONITORD_API", "http://127.0.0.1:9109")
    token = args.token or os.environ.get("MONITORD_TOKEN", "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{api.rstrip('/')}{path}",
        method=method,
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise MonitordError(f"{path}: {json.loads(exc.read()).get('error', exc.code)}") from None
    except OSError as exc:
        raise MonitordError(f"cannot reach the daemon's API at {api}: {exc}") from None


def _cmd_silence(args: argparse.Namespace) -> int:
    import os

    if args.action == "add":
        matcher = {"assets": args.asset or [], "rules": args.rule or [], "types": args.type or []}
        body = {
            "matcher": matcher,
            "author": args.author or os.environ.get("USER", "cli"),
            "reason": args.reason,
            "expires_in": args.duration,
        }
        s = _api_call(args, "POST", "/silences", body)
        assert isinstance(s, dict)
        print(f"silence {s['id']} until {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['expires']))}")
        return 0
    if args.action == "expire":
        _api_call(args, "POST", f"/silences/{args.id}/expire", {})
        print(f"silence {args.id} expired")
        return 0
    listed = _api_call(args, "GET", "/silences")
    assert isinstance(listed, list)
    for s in listed:
        state = "active " if s["active"] else "expired"
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(s["expires"]))
        print(f"{s['id']}  {state} until {until}  {s['author']}: {s['reason']}  {s['matcher']}")
    return 0


def _cmd_ticket_action(args: argparse.Namespace) -> int:
    """The duty desk's actions go through the daemon's API, so the daemon sees and tells them."""
    import os

    body: dict[str, object] = {"actor": args.actor or os.environ.get("USER", "cli"), "note": args.note or ""}
    if getattr(args, "assignee", None):
        body["assignee"] = args.assignee
    ev = _api_call(args, "POST", f"/tickets/{args.id}/{args.action}", body)
    assert isinstance(ev, dict)
    print(f"{ev['ticket']}: {ev['event']} by {ev['actor']} — now {ev['state']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from monitord.tickets.desk import TicketDesk
    from monitord.tools.kpi import render, report

    store = _open_store(args)
    config = load_config(args.config) if args.config else None
    desk = TicketDesk()
    try:
        desk.restore(store.ticket_events())
        alerts = store.alert_events()
    finally:
        store.close()
    from monitord.tickets.sla import DEFAULT_SLA, Sla

    def default_sla(priority: str) -> Sla:
        return DEFAULT_SLA[priority]

    sla_of = config.sla_of if config else default_sla
    for line in render(report(list(desk.tickets.values()), alerts, sla_of, time.time())):
        print(line)
    return 0


def _cmd_oncall(args: argparse.Namespace) -> int:
    from monitord.people.roster import Roster

    config = load_config(args.config)
    if config.roster is None:
        print("no roster in this config", file=sys.stderr)
        return 1
    at = parse_time(args.at) if args.at else time.time()
    roster = Roster(config.roster)
    for name, team in config.roster.teams.items():
        chain = roster.chain(team.skills[0], at)
        print(
            f"{name:14} {', '.join(team.skills):28} on call: {chain[0].name if chain else '-'}"
            + (f"  then {', '.join(c.name for c in chain[1:])}" if len(chain) > 1 else "")
        )
    return 0


def _cmd_tickets(args: argparse.Namespace) -> int:
    from monitord.tickets.desk import TicketDesk

    if args.action not in ("list", "show"):
        return _cmd_ticket_action(args)
    store = _open_store(args)
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
    from monitord.tools.ruletest import run_file

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


def _cmd_replay(args: argparse.Namespace) -> int:
    from monitord.config.site import load_rules
    from monitord.tools.replay import Progress, compare, replay, source_of

    config = load_config(args.config)
    step = parse_duration(args.step)
    rule_sets: list[tuple[str, list[RuleSpec] | None]] = [
        (name, load_rules(name, config)) for name in (args.rules or [])
    ] or [(args.config, None)]
    if args.compare:
        rule_sets.append((args.compare, load_rules(args.compare, config)))
    results = []
    for name, rules in rule_sets:
        source, total = source_of(Path(args.source))
        result = replay(config, source, rules=rules, step=step, progress=Progress(total))
        results.append(result)
        days = (result.span[1] - result.span[0]) / 86400
        fired = sum(1 for a in result.alerts if a.state == "firing")
        opened = sum(1 for t in result.tickets if t.event == "opened")
        print(
            f"{name}: {result.samples:,} samples ({result.batches:,} batches, {days:.2f} days) in "
            f"{result.seconds:.1f}s — {fired} alerts fired, {opened} tickets opened"
        )
        if not args.compare:
            for a in result.alerts:
                if a.state == "firing":
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.ts))
                    print(f"  {stamp}  {a.severity:8} {a.rule:36} {a.asset:12} {a.summary}")
    if args.compare:
        diff = compare(results[0], results[1])
        for label, items in diff.items():
            label = label.replace(" A", f" {rule_sets[0][0]}").replace(" B", f" {rule_sets[1][0]}")
            print(f"{label}: {len(items)}")
            for rule, asset, since in sorted(items, key=lambda x: x[2]):
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
                print(f"  {stamp}  {rule:36} {asset}")
    return 0


def _cmd_rules_explain(args: argparse.Namespace) -> int:
    from monitord.config.site import SqliteStoreConfig
    from monitord.store.sqlite import SqliteStore
    from monitord.tools.explain import explain

    config = load_config(args.config)
    if not args.store and not isinstance(config.store, SqliteStoreConfig):
        raise MonitordError(
            "rules explain reads a SQLite store: give --store (export InfluxDB data with replay CSV)"
        )
    store = SqliteStore(Path(args.store or config.store.path), writer=False)  # type: ignore[union-attr]
    windows = [w.seconds for r in config.rules if r.id == args.rule for w in _windows(r)]
    horizon = max([*windows, 10 * config.poll]) + 60
    last = store.last_sample_time()
    if last is None:
        print(f"no samples for {args.asset} in {store.path}", file=sys.stderr)
        return 1
    try:
        for line in explain(config, args.rule, args.asset, store.frames(since=last - horizon)):
            print(line)
    except KeyError as exc:
        print(f"monitord: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0


def _windows(spec: RuleSpec) -> list[Window]:
    from monitord.rules.expr import compile_expression

    return [w for text in (spec.when, spec.clear) if text for w in compile_expression(text).windows]


def _cmd_samples(args: argparse.Namespace) -> int:
    from monitord.store.samples_csv import read_csv, write_csv
    from monitord.store.sqlite import SqliteStore

    if args.action == "export":
        reader = SqliteStore(Path(args.store), writer=False)
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        rows = write_csv(reader.samples(args.asset, since, until), Path(args.csv))
        print(f"{rows:,} samples written to {args.csv}")
        return 0
    store = SqliteStore(Path(args.store))
    count = 0
    try:
        for frame in read_csv(Path(args.csv)):
            store.write_samples(list(frame.batches()))
            count += len(frame)
        store.flush(timeout=600)
    finally:
        store.close()
    print(f"{count:,} batches imported into {args.store}")
    return 0


def parse_time(text: str) -> float:
    """Epoch seconds or ISO 8601 local time."""
    from datetime import datetime

    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def _store_args(p: argparse.ArgumentParser) -> None:
    """Where commands that read the store find it (see ``_open_store``)."""
    p.add_argument("--config", help="site config (its store, and its SLAs for reports)")
    p.add_argument("--store", default="./monitord-data/monitord.db", help="SQLite store file")


def _api_args(p: argparse.ArgumentParser) -> None:
    """How commands that act through the daemon reach it (see ``_api_call``)."""
    p.add_argument("--api", help="daemon API (default $MONITORD_API or http://127.0.0.1:9109)")
    p.add_argument("--token", help="API token (default $MONITORD_TOKEN)")


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
    re_ = rsub.add_parser("explain", help="show every term of a rule for one asset, from the store")
    re_.add_argument("rule")
    re_.add_argument("--asset", required=True)
    re_.add_argument("--config", required=True)
    re_.add_argument("--store", help="SQLite store (default: the config's)")
    re_.set_defaults(fn=_cmd_rules_explain)

    rp = sub.add_parser("replay", help="run recorded samples through the rules, alerts and tickets")
    rp.add_argument("--config", required=True, help="the site the samples come from")
    rp.add_argument("--from", dest="source", required=True, help="SQLite store file or CSV export")
    rp.add_argument("--rules", action="append", help="rule file to use instead of the site's rules")
    rp.add_argument("--compare", help="a second rule file: print which alerts and tickets differ")
    rp.add_argument("--step", default="1s", help="evaluation step (default 1s)")
    rp.set_defaults(fn=_cmd_replay)

    sm = sub.add_parser("samples", help="export samples to CSV or import them")
    smsub = sm.add_subparsers(dest="action", required=True)
    ex = smsub.add_parser("export")
    ex.add_argument("--store", required=True)
    ex.add_argument("--csv", required=True)
    ex.add_argument("--asset")
    ex.add_argument("--since", help="epoch seconds or ISO time")
    ex.add_argument("--until", help="epoch seconds or ISO time")
    im = smsub.add_parser("import")
    im.add_argument("--csv", required=True)
    im.add_argument("--store", required=True)
    sm.set_defaults(fn=_cmd_samples)

    t = sub.add_parser("tickets", help="read tickets from the store")
    _store_args(t)
    tsub = t.add_subparsers(dest="action", required=True)
    tl = tsub.add_parser("list")
    tl.add_argument("--open", action="store_true", help="open tickets only")
    ts = tsub.add_parser("show")
    ts.add_argument("id")
    from monitord.tickets.desk import ACTIONS

    for action in ACTIONS:
        ta = tsub.add_parser(action, help=f"{action} a ticket through the daemon's API")
        ta.add_argument("id")
        ta.add_argument("--note", help="what you did or saw")
        ta.add_argument("--actor", help="who (default: $USER)")
        _api_args(ta)
        if action == "assign":
            ta.add_argument("assignee")
    t.set_defaults(fn=_cmd_tickets)

    si = sub.add_parser("silence", help="silences: mute matching alerts for a while, with a reason")
    _api_args(si)
    sisub = si.add_subparsers(dest="action", required=True)
    sa = sisub.add_parser("add")
    sa.add_argument("--asset", action="append", help="asset id (repeatable)")
    sa.add_argument("--rule", action="append", help="rule id or glob such as 'pump.*' (repeatable)")
    sa.add_argument("--type", action="append", help="asset type (repeatable)")
    sa.add_argument(
        "--for", dest="duration", required=True, help="how long, e.g. 2h: no silence without expiry"
    )
    sa.add_argument("--reason", required=True)
    sa.add_argument("--author", help="who (default: $USER)")
    sisub.add_parser("list")
    se = sisub.add_parser("expire")
    se.add_argument("id")
    si.set_defaults(fn=_cmd_silence)

    rep = sub.add_parser("report", help="KPIs: MTTA, MTTR, SLA compliance, repeats, follow-up, alarm rates")
    _store_args(rep)
    rep.set_defaults(fn=_cmd_report)

    oc = sub.add_parser("oncall", help="who is on call for each team")
    oc.add_argument("config")
    oc.add_argument("--at", help="epoch seconds or ISO time (default: now)")
    oc.set_defaults(fn=_cmd_oncall)
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
