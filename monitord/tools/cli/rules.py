"""For rule authors: ``rules test``, ``rules explain``, ``replay`` and ``samples`` export/import."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from monitord.config.site import coverage, load_config, load_rules, site_zone
from monitord.core.errors import MonitordError
from monitord.core.model import Frame
from monitord.core.units import counted, format_duration, format_time, parse_duration
from monitord.rules.engine import matches
from monitord.rules.spec import RuleSpec
from monitord.tools.cli.common import time_arg
from monitord.tools.explain import explain_store
from monitord.tools.replay import Progress, compare, replay, site_source, source_of
from monitord.tools.ruletest import run_file
from monitord.tools.storage import export_samples, import_samples, open_reader, open_sqlite, sqlite_reader


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    rules = sub.add_parser("rules", help="tools for rule authors")
    rsub = rules.add_subparsers(dest="action", required=True)
    rt = rsub.add_parser("test", help="run rule unit tests (YAML)")
    rt.add_argument("files", nargs="+")
    rt.add_argument("--verbose-tests", action="store_true", help="list passing tests too")
    rt.set_defaults(fn=rules_test)
    re_ = rsub.add_parser("explain", help="show every term of a rule for one asset, from the store")
    re_.add_argument("rule")
    re_.add_argument("--asset", required=True)
    re_.add_argument("--config", required=True)
    re_.add_argument("--store", help="SQLite store (default: the config's)")
    re_.set_defaults(fn=rules_explain)
    rc = rsub.add_parser("coverage", help="per asset, the rules its profile cannot feed")
    rc.add_argument("config")
    rc.set_defaults(fn=rules_coverage)

    rp = sub.add_parser("replay", help="run recorded samples through the rules, alerts and tickets")
    rp.add_argument("--config", required=True, help="the site the samples come from")
    src = rp.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", help="SQLite store file or CSV export")
    src.add_argument(
        "--from-store",
        action="store_true",
        help="the site's own store as --config names it (SQLite or InfluxDB: this site's samples only)",
    )
    rp.add_argument("--since", help="replay samples from this time (epoch seconds or ISO; the site's zone)")
    rp.add_argument("--until", help="replay samples before this time (epoch seconds or ISO; the site's zone)")
    rp.add_argument("--rules", action="append", help="rule file to use instead of the site's rules")
    rp.add_argument("--compare", help="a second rule file: print which alerts and tickets differ")
    rp.add_argument("--step", default="1s", help="evaluation step (default 1s)")
    rp.set_defaults(fn=replay_cmd)

    sm = sub.add_parser("samples", help="export samples to CSV or import them")
    smsub = sm.add_subparsers(dest="action", required=True)
    ex = smsub.add_parser("export")
    exs = ex.add_mutually_exclusive_group(required=True)
    exs.add_argument("--store", help="SQLite store file")
    exs.add_argument("--config", help="the site whose own store to read (SQLite or InfluxDB)")
    ex.add_argument("--csv", required=True)
    ex.add_argument("--asset")
    ex.add_argument("--since", help="epoch seconds or ISO time (local zone)")
    ex.add_argument("--until", help="epoch seconds or ISO time (local zone)")
    im = smsub.add_parser("import")
    im.add_argument("--csv", required=True)
    im.add_argument("--store", required=True)
    sm.set_defaults(fn=samples)


def rules_test(args: argparse.Namespace) -> int:
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


def rules_coverage(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    gaps = coverage(config)
    by_asset: dict[str, list[str]] = {}
    for gap in gaps:
        by_asset.setdefault(gap.asset, []).append(f"{gap.rule} (lacks {', '.join(gap.missing)})")
    assets = config.domain_assets()
    for a in config.assets:
        applies = sum(1 for r in config.rules if matches(r, assets[a.id]))
        missing = by_asset.get(a.id, [])
        print(f"{a.id}: {applies - len(missing)} of {applies} rules evaluated")
        for line in missing:
            print(f"  not evaluated: {line}")
    return 0


def rules_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = sqlite_reader(config, Path(args.store) if args.store else None)
    try:
        lines = explain_store(config, args.rule, args.asset, store)
    finally:
        store.close()
    for line in lines:
        print(line)
    return 0


def replay_cmd(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tz = site_zone(config)
    try:
        step = parse_duration(args.step)
    except ValueError as exc:
        raise MonitordError(f"--step: {exc}") from None
    rule_sets: list[tuple[str, list[RuleSpec] | None]] = [
        (name, load_rules(name, config)) for name in (args.rules or [])
    ] or [(args.config, None)]
    if args.compare:
        rule_sets.append((args.compare, load_rules(args.compare, config)))
    since, until = time_arg(args.since, tz), time_arg(args.until, tz)
    if since is not None and until is not None and until <= since:
        raise MonitordError(f"--until {args.until} is not after --since {args.since}")
    results = []
    for name, rules in rule_sets:
        source: Iterable[Frame]
        if args.from_store:
            source, total = site_source(config, since, until), None
        else:
            source, total = source_of(Path(args.source), since, until)
        result = replay(config, source, rules=rules, step=step, progress=Progress(total))
        if not result.batches:
            where = f"site {config.site.id}'s store" if args.from_store else args.source
            raise MonitordError(f"no samples in {where}{_range(since, until, tz)}: nothing to replay")
        results.append(result)
        span = format_duration(result.span[1] - result.span[0])
        fired = sum(1 for a in result.alerts if a.state == "firing")
        opened = sum(1 for t in result.tickets if t.event == "opened")
        print(
            f"{name}: {result.samples:,} samples ({result.batches:,} batches, {span} of data from"
            f" {format_time(result.span[0], tz)}) in {result.seconds:.1f}s"
            f" — {counted(fired, 'alert')} fired, {counted(opened, 'ticket')} opened"
        )
        if not args.compare:
            for a in result.alerts:
                if a.state == "firing":
                    print(f"  {format_time(a.ts, tz)}  {a.severity:8} {a.rule:36} {a.asset:12} {a.summary}")
    if args.compare:
        diff = compare(results[0], results[1])
        for label, items in diff.items():
            label = label.replace(" A", f" {rule_sets[0][0]}").replace(" B", f" {rule_sets[1][0]}")
            print(f"{label}: {len(items)}")
            for rule, asset, since in sorted(items, key=lambda x: x[2]):
                print(f"  {format_time(since, tz)}  {rule:36} {asset}")
    return 0


def _range(since: float | None, until: float | None, tz: tzinfo | None) -> str:
    """The range for a message: between A and B, from A, before B, or nothing."""
    if since is not None and until is not None:
        return f" between {format_time(since, tz)} and {format_time(until, tz)}"
    if since is not None:
        return f" from {format_time(since, tz)}"
    return f" before {format_time(until, tz)}" if until is not None else ""


def samples(args: argparse.Namespace) -> int:
    if args.action == "export":
        since, until = time_arg(args.since, None), time_arg(args.until, None)
        store = open_sqlite(Path(args.store)) if args.store else open_reader(load_config(args.config), None)
        rows = export_samples(store, Path(args.csv), args.asset, since, until)
        print(f"{rows:,} samples written to {args.csv}")
        return 0
    count = import_samples(Path(args.csv), Path(args.store))
    print(f"{count:,} batches imported into {args.store}")
    return 0
