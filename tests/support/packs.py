"""Which rule tests honestly show a pack rule firing, and honestly quiet.

A rule is shown *quiet* only by an expectation of a rule test whose file loads the rule's pack, for
an asset the rule applies to whose series give the rule every point it reads (its ``when`` and
``clear`` expressions' points, ``age()`` points included) with a value (not a failed read) at or
before that time, and which lists no firing of that rule on that asset. A ``firing: []`` in a file
that never loads the pack, or for an asset that lacks the rule's inputs, shows nothing about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from monitord.core.assets import Asset
from monitord.rules.engine import matches
from monitord.rules.expr import compile_expression
from monitord.rules.spec import RuleSpec
from monitord.tools.ruletest import MISSING, RuleTestFile, TestAsset, parse_series


def points_read(rule: RuleSpec) -> set[str]:
    """Every point a rule's expressions read (gating or through ``age()``)."""
    out: set[str] = set()
    for text in (rule.when, rule.clear):
        if text:
            compiled = compile_expression(text)
            out |= compiled.points | compiled.aged_points
    return out


def loads(path: Path, spec: RuleTestFile, pack: Path) -> bool:
    """Whether the rule-test file at ``path`` loads the pack file ``pack``."""
    return any((path.parent / name).resolve() == pack.resolve() for name in spec.rule_files)


def _fed(series: dict[str, str], point: str, step: int) -> bool:
    """Whether the series give ``point`` a value by ``step``: its last entry so far that is not a
    gap is a number, not a failed read (a rule gated off by bad quality shows nothing)."""
    text = series.get(point)
    if text is None:
        return False
    entries = [v for v in parse_series(text)[: step + 1] if v != MISSING]
    return bool(entries) and isinstance(entries[-1], float)


def _applies(rule: RuleSpec, asset: TestAsset) -> bool:
    return matches(rule, Asset(asset.id, asset.type, tags=tuple(asset.tags), params=asset.params))


def shown(
    rules: Iterable[RuleSpec], pack: Path, files: Iterable[tuple[Path, RuleTestFile]]
) -> tuple[set[str], set[str]]:
    """(ids of the rules shown firing, ids of the rules shown quiet) by the rule-test files."""
    fires: set[str] = set()
    quiet: set[str] = set()
    rules = list(rules)
    reads = {r.id: points_read(r) for r in rules}
    for path, spec in files:
        if not loads(path, spec, pack):
            continue
        for test in spec.tests:
            for expectation in test.expect:
                step = round(expectation.at / test.interval)
                for rule in rules:
                    for asset in test.assets:
                        if not _applies(rule, asset):
                            continue
                        if f"{rule.id}/{asset.id}" in expectation.firing:
                            fires.add(rule.id)
                            continue
                        series = test.series.get(asset.id, {})
                        if all(_fed(series, p, step) for p in reads[rule.id]):
                            quiet.add(rule.id)
    return fires, quiet
