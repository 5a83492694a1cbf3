"""Config errors: each broken file gets one exact file:line key.path message, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, coverage, load_config
from monitord.core.errors import ConfigError
from tests.support.configs import GOOD, PROFILES, check, problems, write


def test_the_good_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert [a.id for a in config.assets] == ["P1", "E1"]
    assert config.rules[0].for_ == 5.0


CASES = [
    (
        "port out of range",
        ("port: 1502", "port: 70000"),
        ["site.yaml:10 assets[0].connection.modbus.port: must be 1..65535, got 70000"],
    ),
    (
        "unit id out of range",
        ("unit: 1}", "unit: 300}"),
        ["site.yaml:10 assets[0].connection.modbus.unit: must be 0..247, got 300"],
    ),
    (
        "unknown key with a hint",
        ("    profile: pump-set\n", "    profile: pump-set\n    pol: 2s\n"),
        [
            "site.yaml:10 assets[0].pol: unknown key (did you mean 'poll'?); expected one of: connection, "
            "depends_on, id, location, name, params, poll, profile, tags, type"
        ],
    ),
    (
        "unknown profile",
        ("profile: pump-set\n    connection", "profile: pump-sett\n    connection"),
        ["site.yaml:9 assets[0].profile: unknown profile 'pump-sett' (did you mean 'pump-set'?)"],
    ),
    (
        "type does not match profile",
        ("type: pump", "type: ahu"),
        ["site.yaml:8 assets[0].type: asset type 'ahu' does not match profile 'pump-set' (pump)"],
    ),
    (
        "unknown asset type",
        ("type: pump", "type: boiler"),
        [
            "site.yaml:8 assets[0].type: must be one of 'elevator', 'pump', 'ahu', 'chiller', 'power_meter', "
            "'sensor', 'gateway', 'drive', 'water_meter' or 'ups', got 'boiler'"
        ],
    ),
    (
        "bad duration",
        ("for: 5s", "for: 5 minutes"),
        ["site.yaml:19 rules[0].for: must be a duration like 500ms, 5s, 2m, 1h, got '5 minutes'"],
    ),
    (
        "unknown point in a rule",
        ("suction_pressure < param", "suction_presure < param"),
        [
            "site.yaml:18 rules[0].when: unknown point 'suction_presure' (did you mean 'suction_pressure'?)"
            " at column 18 in "
            "'running == 1 and suction_presure < param.suction_min'"
        ],
    ),
    (
        "forbidden construct in a rule",
        ('when: "running == 1 and', 'when: "__import__(1) or'),
        [
            "site.yaml:18 rules[0].when: unknown function '__import__' at column 1 in "
            "'__import__(1) or suction_pressure < param.suction_min'"
        ],
    ),
    ("duplicate asset id", ("id: E1", "id: P1"), ["site.yaml:11 assets[1].id: duplicate asset id 'P1'"]),
    (
        "missing required key",
        ("    profile: elevator-gbt24476\n", ""),
        ["site.yaml:11 assets[1].profile: required key is missing"],
    ),
    (
        "both connections",
        ("connection: {mqtt: {}}", "connection: {mqtt: {}, modbus: {host: h}}"),
        ["site.yaml:14 assets[1].connection: give exactly one of modbus, mqtt, bacnet or snmp"],
    ),
    (
        "unknown dependency",
        ("    connection: {mqtt: {}}\n", "    connection: {mqtt: {}}\n    depends_on: [X9]\n"),
        ["site.yaml:15 assets[1].depends_on[0]: unknown asset 'X9'"],
    ),
    (
        "bad broker url",
        ('url: "mqtt://127.0.0.1:1883"', 'url: "http://broker"'),
        [
            "site.yaml:2 mqtt.url: 'http://broker' has characters that are not allowed (pattern ^mqtts?://[^:/]+(:\\d+)?/?$)"
        ],
    ),
    (
        "YAML syntax",
        ("site: {id: t1, name: Test}", "site: {id: t1, name: Test"),
        ["site.yaml:2 YAML syntax: expected ',' or '}', but got ':'"],
    ),
]


@pytest.mark.parametrize(("label", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_config_names_file_line_and_key(
    tmp_path: Path, label: str, edit: tuple[str, str], expected: list[str]
) -> None:
    old, new = edit
    assert old in GOOD, label
    assert problems(tmp_path, GOOD.replace(old, new, 1)) == expected


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = GOOD.replace("port: 1502", "port: 0").replace("type: elevator", "type: lift")
    assert len(problems(tmp_path, text)) == 2


def test_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    profile = (PROFILES / "pump-set.yaml").read_text().replace("max_gap: 8", "max_gap: 500")
    write(tmp_path, profile, "pump.yaml")
    text = GOOD.replace(f"{PROFILES}/pump-set.yaml", "pump.yaml")
    [message] = problems(tmp_path, text)
    assert message == f"{tmp_path / 'pump.yaml'}:10 profiles[0].modbus.max_gap: must be 0..124, got 500"


def test_check_command_exits_2_and_prints_each_problem(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port: 1502", "port: 70000"))
    out = check(path, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "site.yaml:10 assets[0].connection.modbus.port: must be 1..65535, got 70000"
    ok = check(CONFIG_DIR / "sites" / "demo.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "8 assets" in ok.stdout


def test_environment_variables_fill_secrets_and_unset_ones_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = GOOD.replace('url: "mqtt://127.0.0.1:1883"', 'url: "${BROKER_URL}"')
    monkeypatch.setenv("BROKER_URL", "mqtt://10.0.0.9:1884")
    assert load_config(write(tmp_path, text)).mqtt.url == "mqtt://10.0.0.9:1884"  # type: ignore[union-attr]
    monkeypatch.delenv("BROKER_URL")
    assert problems(tmp_path, text) == ["site.yaml:2 mqtt.url: environment variable BROKER_URL is not set"]
    with_default = GOOD.replace('url: "mqtt://127.0.0.1:1883"', 'url: "${BROKER_URL:-mqtt://127.0.0.1:1999}"')
    assert load_config(write(tmp_path, with_default)).mqtt.url == "mqtt://127.0.0.1:1999"  # type: ignore[union-attr]


def test_the_notification_log_lies_beside_the_store_unless_given(tmp_path: Path) -> None:
    """It went to ./monitord-data/notifications.db under whatever folder the daemon started in."""
    base = "site: {id: s}\nassets: []\n"
    sqlite = tmp_path / "a.yaml"
    sqlite.write_text(base + f"store: {{kind: sqlite, path: {tmp_path}/data/site.db}}\n")
    assert load_config(sqlite).notify_log == tmp_path / "data" / "notifications.db"
    influx = tmp_path / "b.yaml"
    store = f"store: {{kind: influxdb, url: 'http://h:8086', bucket: b, spool: {tmp_path}/sp}}\n"
    influx.write_text(base + store)
    assert load_config(influx).notify_log == tmp_path / "notifications.db"
    given = tmp_path / "c.yaml"
    given.write_text(base + f"notify: {{log: {tmp_path}/n/log.db}}\n")
    assert load_config(given).notify_log == tmp_path / "n" / "log.db"


def test_every_problem_of_a_file_in_one_run(tmp_path: Path) -> None:
    """A bad port used to hide the unknown profile and the bad depends_on until it was fixed."""
    text = (
        GOOD.replace("port: 1502", "port: 70000")
        .replace("profile: elevator-gbt24476", "profile: elevator-gbt")
        .replace("connection: {mqtt: {}}", "connection: {mqtt: {}}\n    depends_on: [PM-9]")
    )
    assert problems(tmp_path, text) == [
        "site.yaml:10 assets[0].connection.modbus.port: must be 1..65535, got 70000",
        "site.yaml:13 assets[1].profile: unknown profile 'elevator-gbt' (did you mean 'elevator-gbt24476'?)",
        "site.yaml:15 assets[1].depends_on[0]: unknown asset 'PM-9'",
    ]


def test_a_default_the_user_never_wrote_is_named_as_the_default(tmp_path: Path) -> None:
    team = "{skills: [plumbing], members: [{name: Zhang, console: true}]}"
    roster = f"roster:\n  teams:\n    plumbing: {team}\n"
    assert problems(tmp_path, GOOD + roster) == [
        "site.yaml:16 rules[0]: the rule gives no ticket.skill, so the default 'general' holds:"
        " no roster team serves skill 'general'; known: plumbing"
    ]
    written = GOOD.replace("for: 5s", "for: 5s\n    ticket: {skill: plumbin}") + roster
    assert problems(tmp_path, written) == [
        "site.yaml:20 rules[0].ticket.skill: no roster team serves skill 'plumbin'; known: plumbing"
    ]


def test_the_readmes_config_example_checks(tmp_path: Path) -> None:
    """The site a newcomer copies from the README loads: the built-in power pack reads leakage and
    cable-temperature points its SDM630 does not have, and that is a coverage warning, not an error."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("## Writing a config", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    site = tmp_path / "site.yaml"
    site.write_text(example.replace("../profiles/", f"{CONFIG_DIR}/profiles/"))
    config = load_config(site)
    gaps = {(g.asset, g.rule) for g in coverage(config)}
    assert ("A-PM-MAIN", "power.residual_current") in gaps
    # A name no device defines is still an error, at its line.
    site.write_text(site.read_text().replace("suction_pressure < param", "suction_presure < param"))
    with pytest.raises(ConfigError) as err:
        load_config(site)
    assert "unknown point 'suction_presure'" in str(err.value)
