"""The built-in rule packs: their rule tests pass, and each rule is shown to fire and to stay quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config.yamlio import load_yaml
from monitord.rules import PACKS_DIR
from monitord.rules.spec import RuleSpec
from monitord.tools.ruletest import load_rule_tests, run_file
from tests.support.packs import shown

TEST_FILES = sorted((PACKS_DIR / "tests").glob("*.test.yaml"))
PACKS = sorted(PACKS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_pack_rule_tests_pass(path: Path) -> None:
    failures = [(o.name, o.failures) for o in run_file(path) if not o.ok]
    assert failures == []


@pytest.mark.parametrize("pack", PACKS, ids=[p.name for p in PACKS])
def test_every_rule_fires_in_a_test_and_is_quiet_in_another(pack: Path) -> None:
    rules = [RuleSpec.model_validate(r) for r in load_yaml(pack)]
    files = [(path, load_rule_tests(path)[0]) for path in TEST_FILES]
    fires, quiet = shown(rules, pack, files)
    ids = {r.id for r in rules}
    assert ids - fires == set(), "rules never shown firing"
    assert ids - quiet == set(), "rules never shown quiet (fed every point they read, in a file loading them)"
    assert all(r.summary for r in rules), "every rule says what is wrong"


PACK = """
- id: demo.too_hot
  applies_to: {type: ahu}
  when: "supply_temp > 30"
  summary: too hot
"""


def crafted(tmp_path: Path, name: str, rule_files: list[str], series: str, firing: str = "") -> Path:
    path = tmp_path / name
    path.write_text(
        f"rule_files: {rule_files}\n"
        "tests:\n"
        "  - name: crafted\n"
        "    assets: [{id: H1, type: ahu}]\n"
        f"    series: {{H1: {series}}}\n"
        f"    expect: [{{at: 2s, firing: [{firing}]}}]\n"
    )
    return path


def test_the_quiet_check_counts_only_honest_quiet_cases(tmp_path: Path) -> None:
    pack = tmp_path / "demo.yaml"
    pack.write_text(PACK)
    (tmp_path / "other.yaml").write_text(PACK.replace("demo.too_hot", "other.rule"))
    [rule] = [RuleSpec.model_validate(r) for r in load_yaml(pack)]
    fires = crafted(tmp_path, "fires.test.yaml", ["demo.yaml"], '{supply_temp: "35x3"}', "demo.too_hot/H1")
    # quiet only where the pack is not loaded: the old check counted this as "shown quiet"
    elsewhere = crafted(tmp_path, "elsewhere.test.yaml", ["other.yaml"], '{supply_temp: "20x3"}')
    # loaded, but the asset never gives the point the rule reads: quiet for want of input
    unfed = crafted(tmp_path, "unfed.test.yaml", ["demo.yaml"], '{return_temp: "20x3"}')
    # loaded, the point fed, but its last read failed: gated off by quality, not shown quiet
    failed = crafted(tmp_path, "failed.test.yaml", ["demo.yaml"], '{supply_temp: "20 errx2"}')
    dishonest = [fires, elsewhere, unfed, failed]
    files = [(p, load_rule_tests(p)[0]) for p in dishonest]
    assert all(o.ok for p in dishonest for o in run_file(p)), "every crafted file passes as a rule test"
    assert shown([rule], pack, files) == ({"demo.too_hot"}, set()), "never shown quiet: the check fails"
    honest = crafted(tmp_path, "quiet.test.yaml", ["demo.yaml"], '{supply_temp: "20x3"}')
    assert shown([rule], pack, [*files, (honest, load_rule_tests(honest)[0])]) == (
        {"demo.too_hot"},
        {"demo.too_hot"},
    )
