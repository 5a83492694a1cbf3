"""Hostile config files: every one is a ``file:line key: message`` error with exit status 2, never a
traceback or an unbounded load, and no message shows a secret (issue 10, items 5 and 7).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.configs import GOOD, check, problems, write

ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True))
    + "site: {id: t1}\nassets: *h\n"
)

HOSTILE = [
    (
        "a bad date",
        ("name: Test", "name: 2024-13-45"),
        "site.yaml:1 name: cannot read timestamp: month must be in 1..12",
    ),
    (
        "a float that is not",
        ("unit: 1}", 'unit: !!float "abc"}'),
        "site.yaml:10 unit: cannot read float: could not convert string to float: 'abc'",
    ),
    (
        "a NUL byte",
        ("name: Test", "name: Te\0st"),
        "site.yaml:1 YAML syntax: character U+0000 is not allowed",
    ),
    (
        "500 nested not",
        ('when: "running', 'when: "' + "not " * 500 + "running"),
        "site.yaml:18 rules[0].when: expression nested too deeply",
    ),
    (
        "10,000 nested lists",
        ("name: Test", "name: " + "[" * 10_000 + "]" * 10_000),
        "site.yaml:1 YAML syntax: nested too deeply",
    ),
    ("a list as a key", ("name: Test", "? [a]: b"), "site.yaml:1 ['a']: a key must be a plain value"),
]


@pytest.mark.parametrize(("case", "edit", "want"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_configs_are_errors_that_name_file_line_and_key(
    tmp_path: Path, case: str, edit: tuple[str, str], want: str
) -> None:
    assert edit[0] in GOOD, case
    assert problems(tmp_path, GOOD.replace(*edit, 1))[0] == want


def test_an_alias_bomb_is_refused_before_it_grows(tmp_path: Path) -> None:
    path = write(tmp_path, ALIAS_BOMB)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"""
import resource, sys
from monitord.tools.cli import main
code = main(["check", {str(path)!r}])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
""",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2
    assert lines[0] == f"{path}:8 h: aliases expand to 102,908,579 nodes (at most 1,000,000); not loaded"
    assert int(lines[-1]) < 300_000, "peak RSS in KiB stays that of an empty check"


def test_check_exits_2_on_every_hostile_file(tmp_path: Path) -> None:
    for case, edit, _want in HOSTILE:
        path = write(tmp_path, GOOD.replace(*edit, 1), name=case.replace(" ", "_") + ".yaml")
        done = check(path)
        assert done.returncode == 2, (case, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith(f"{path}:"), case


SECRET = "s3cr3t-Value-7731"


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    text = GOOD.replace(
        'mqtt: {url: "mqtt://127.0.0.1:1883"}',
        'mqtt: {url: "mqtt://127.0.0.1:1883", password: 12, qos: "${ROBOT}"}\n'
        'api: {token: 42, public_url: "${DESK}"}',
    ).replace("port: 1502", 'port: "${ROBOT}"')
    path = write(tmp_path, text)
    done = check(path, env={"ROBOT": SECRET, "DESK": f"ftp://x?key={SECRET}"})
    assert done.returncode == 2
    assert SECRET not in done.stderr
    assert f"{path}:2 mqtt.qos: must be a whole number, got '${{ROBOT}}'" in done.stderr.splitlines()
    assert f"{path}:11 assets[0].connection.modbus.port: must be a whole number, got '${{ROBOT}}'" in (
        done.stderr.splitlines()
    )


def test_a_secret_by_its_key_name_is_never_echoed(tmp_path: Path) -> None:
    text = GOOD + "api: {token: 123456789}\n"
    assert problems(tmp_path, text) == ["site.yaml:21 api.token: input should be a valid string, got '***'"]
