"""The built-in rule packs: their rule tests pass, and each rule is shown to fire and to stay quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config.yamlio import load_yaml
from monitord.rules import PACKS_DIR
from monitord.rules.spec import RuleSpec
from monitord.tools.ruletest import load_rule_tests, run_file

TEST_FILES = sorted((PACKS_DIR / "tests").glob("*.test.yaml"))
PACKS = sorted(PACKS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_pack_rule_tests_pass(path: Path) -> None:
    failures = [(o.name, o.failures) for o in run_file(path) if not o.ok]
    assert failures == []


@pytest.mark.parametrize("pack", PACKS, ids=[p.name for p in PACKS])
def test_every_rule_fires_in_a_test_and_is_quiet_in_another(pack: Path) -> None:
    rules = [RuleSpec.model_validate(r) for r in load_yaml(pack)]
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        spec, _ = load_rule_tests(path)
        for test in spec.tests:
            for expectation in test.expect:
                for rule in rules:
                    for asset in test.assets:
                        if rule.applies_to.type not in (None, asset.type):
                            continue
                        key = f"{rule.id}/{asset.id}"
                        (fires if key in expectation.firing else quiet).add(rule.id)
    ids = {r.id for r in rules}
    assert ids - fires == set(), "rules never shown firing"
    assert ids - quiet == set(), "rules never shown quiet"
    assert all(r.summary for r in rules), "every rule says what is wrong"
