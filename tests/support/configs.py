"""Config files for the config tests: a good small site, writing variants of it, and what
``load_config`` or ``monitord check`` says about them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, load_config
from monitord.core.errors import ConfigError
from tests.support.timeline import pump_site

PROFILES = CONFIG_DIR / "profiles"
GOOD = f"""\
site: {{id: t1, name: Test}}
mqtt: {{url: "mqtt://127.0.0.1:1883"}}
profiles:
  - include: {PROFILES}/pump-set.yaml
  - include: {PROFILES}/elevator-gbt24476.yaml
assets:
  - id: P1
    type: pump
    profile: pump-set
    connection: {{modbus: {{host: 127.0.0.1, port: 1502, unit: 1}}}}
  - id: E1
    type: elevator
    profile: elevator-gbt24476
    connection: {{mqtt: {{}}}}
rules:
  - id: pump.dry
    applies_to: {{type: pump}}
    when: "running == 1 and suction_pressure < param.suction_min"
    for: 5s
    params: {{suction_min: 0.05}}
"""


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    prefix = f"{path}:"
    return [p.replace(prefix, "site.yaml:") for p in err.value.problems]


def check(
    path: Path, *options: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``monitord check PATH [OPTIONS]`` in a process of its own, as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "monitord", "check", str(path), *options],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


#: One pump on MQTT and a dry-run rule that opens a P1 ticket: the smallest site a timeline needs.
ONE_PUMP = pump_site(
    "  - {id: A-P1, type: pump, profile: two-points, connection: {mqtt: {}}}\n",
    "  - id: pump.dry_run\n"
    "    applies_to: {type: pump}\n"
    '    when: "running == 1 and suction_pressure < 0.05"\n'
    '    clear: "suction_pressure > 0.06"\n'
    "    severity: critical\n"
    "    ticket: {priority: P1, skill: plumbing}\n",
)
