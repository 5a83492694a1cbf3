"""``monitord rules test``: unit tests for rules, in the spirit of promtool.

A test file names rule files and gives, per test, assets, input series in a
compact notation and the alerts expected to be firing at given times::

    rule_files: [../pump.yaml]
    tests:
      - name: dry run fires after 5 s, clears with hysteresis
        interval: 1s
        assets: [{id: P1, type: pump}, {id: P2, type: pump}]
        series:
          P1: {running: "1x40", suction_pressure: "0.15x4 0.02x20 0.15x16"}
          P2: {running: "1x40", suction_pressure: "0.15x40"}
        expect:
          - {at: 8s, firing: []}
          - {at: 10s, firing: [pump.dry_run/P1]}
          - {at: 39s, firing: []}

An asset may list ``points:``, the points its profile provides (``has()``,
coverage); by default it provides every point the rules read.

Series notation, one token per step or ``xN`` for N steps: ``0.5`` a value,
``0.5x10`` ten times, ``1+0.5x4`` 1, 1.5, 2, 2.5, ``_`` no sample, ``err`` a
failed read (``comm_error``). Each test runs the real rule engine and alert
tracker on a manual clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitord.alerting.tracker import AlertTracker
from monitord.config.yamlio import load_yaml, problem
from monitord.core.assets import Asset
from monitord.core.clock import ManualClock
from monitord.core.errors import ConfigError
from monitord.core.model import Quality, SampleBatch
from monitord.core.units import Duration
from monitord.daemon.pipeline import alert_transitions
from monitord.ingest.profiles import AssetType
from monitord.ingest.state import AssetSlot, StateTable
from monitord.rules.engine import RuleEngine
from monitord.rules.expr import compile_expression
from monitord.rules.spec import RuleSpec

_TOKEN = re.compile(
    r"^(?P<base>_|err|[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?:(?P<step>[-+]\d+(?:\.\d+)?)?x(?P<n>\d+))?$"
)
MISSING, FAILED = "missing", "failed"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TestAsset(_Model):
    id: str
    type: AssetType
    params: dict[str, float] = {}
    tags: list[str] = []
    #: the points the asset's profile provides (for ``has()``); default: every point the rules read
    points: list[str] | None = None


class Expectation(_Model):
    at: Duration
    firing: list[str] = []


class RuleTest(_Model):
    name: str
    interval: Duration = 1.0
    start: datetime = datetime(2026, 1, 1)  # local time at the test's site (time_of_day, in_hours)
    assets: list[TestAsset]
    series: dict[str, dict[str, str]]
    expect: list[Expectation] = Field(min_length=1)


class RuleTestFile(_Model):
    timezone: str = "UTC"
    rule_files: list[str]
    tests: list[RuleTest]


def parse_series(text: str) -> list[float | str]:
    """The compact notation to one entry per step: a number, MISSING or FAILED."""
    out: list[float | str] = []
    for token in text.split():
        m = _TOKEN.match(token)
        if m is None:
            raise ValueError(f"cannot read {token!r} (expected e.g. 0.5, 0.5x10, 1+0.5x4, _, err)")
        base, step, n = m.group("base"), m.group("step"), m.group("n")
        count = int(n) if n else 1
        if base in ("_", "err"):
            out += [MISSING if base == "_" else FAILED] * count
        else:
            inc = float(step) if step else 0.0
            out += [float(base) + i * inc for i in range(count)]
    return out


@dataclass
class Outcome:
    name: str
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def run_test(test: RuleTest, specs: list[RuleSpec], tz: tzinfo = UTC) -> Outcome:
    series = {a: {p: parse_series(t) for p, t in points.items()} for a, points in test.series.items()}
    needed: dict[str, set[str]] = {}
    for spec in specs:
        for text in (spec.when, spec.clear):
            if text:
                compiled = compile_expression(text)
                for a in test.assets:
                    if spec.applies_to.type in (None, a.type):
                        needed.setdefault(a.id, set()).update(compiled.points | compiled.aged_points)

    def provided(a: TestAsset) -> set[str]:
        return set(a.points) if a.points is not None else needed.get(a.id, set()) | set(series.get(a.id, {}))

    # Every point read stays a column of the type's table, as every profile of a type adds its columns.
    columns: dict[str, set[str]] = {}
    for a in test.assets:
        columns.setdefault(a.type, set()).update(needed.get(a.id, set()) | set(series.get(a.id, {})))
    clock = ManualClock(test.start.replace(tzinfo=tz).timestamp())
    start = clock.now()
    slots = [
        AssetSlot(
            a.id,
            a.type,
            tuple(sorted(provided(a))),
            3 * test.interval,
        )
        for a in test.assets
    ]
    state = StateTable(slots, started=start, columns={t: tuple(sorted(c)) for t, c in columns.items()})
    facts = [Asset(a.id, a.type, tags=tuple(a.tags), params=a.params) for a in test.assets]
    engine = RuleEngine(specs, state, facts, tz=tz)
    tracker = AlertTracker()
    steps = max((len(v) for pts in series.values() for v in pts.values()), default=0)
    last_check = max(e.at for e in test.expect)
    steps = max(steps, math.ceil(last_check / test.interval) + 1)
    expect = {round(e.at / test.interval): e for e in test.expect}
    firing: set[str] = set()
    failures = []
    for i in range(steps):
        now = start + i * test.interval
        clock.set(now)
        for asset, points in series.items():
            names, values, quality = [], [], []
            for point, entries in points.items():
                if i < len(entries) and entries[i] != MISSING:
                    names.append(point)
                    failed = entries[i] == FAILED
                    values.append(math.nan if failed else float(entries[i]))
                    quality.append(int(Quality.COMM_ERROR if failed else Quality.GOOD))
            if names:
                state.apply(
                    SampleBatch(now, asset, tuple(names), np.array(values), np.array(quality, dtype=np.int8))
                )
        for rule, tr in alert_transitions(engine, tracker, now):
            key = f"{rule.spec.id}/{rule.assets[tr.index]}"
            if tr.state == "firing":
                firing.add(key)
            elif tr.state == "resolved":
                firing.discard(key)
        if i in expect:
            want = set(expect[i].firing)
            if want != firing:
                at = f"{expect[i].at:g}s"
                failures.append(
                    f"at {at}: expected firing {sorted(want) or 'nothing'}, got {sorted(firing) or 'nothing'}"
                )
    return Outcome(test.name, failures)


def load_rule_tests(path: Path) -> tuple[RuleTestFile, list[RuleSpec]]:
    raw: Any = load_yaml(path)
    try:
        spec = RuleTestFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([problem(raw, tuple(e["loc"]), e["msg"]) for e in exc.errors()]) from None
    rules: list[RuleSpec] = []
    for i, name in enumerate(spec.rule_files):
        rule_path = path.parent / name
        data: Any = load_yaml(rule_path)
        try:
            rules += [RuleSpec.model_validate(r) for r in data]
        except ValidationError as exc:
            raise ConfigError([problem(raw, ("rule_files", i), f"{rule_path}: {exc}")]) from None
    for t, test in enumerate(spec.tests):
        for asset, points in test.series.items():
            for point, text in points.items():
                try:
                    parse_series(text)
                except ValueError as exc:
                    raise ConfigError(
                        [problem(raw, ("tests", t, "series", asset, point), str(exc))]
                    ) from None
    return spec, rules


def run_file(path: Path) -> list[Outcome]:
    spec, rules = load_rule_tests(path)
    tz = ZoneInfo(spec.timezone)
    return [run_test(t, rules, tz) for t in spec.tests]
