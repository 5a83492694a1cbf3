"""The command line's own surface: --version, logging formats, and how times are shown."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import monitord
from monitord.config.site import CONFIG_DIR, load_config, site_zone
from monitord.core.errors import ConfigError
from monitord.core.logs import setup_logging
from monitord.core.units import format_time, parse_time
from monitord.tools.cli import build_parser, main

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local zone set to America/New_York for the test, then put back."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"monitord {monitord.__version__}\n"
    out = subprocess.run(
        [sys.executable, "-m", "monitord", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout == f"monitord {monitord.__version__}\n"


def test_log_options_and_the_old_verbose_flag() -> None:
    parse = build_parser().parse_args
    assert parse(["check", "x"]).log_level == "info" and parse(["check", "x"]).log_format == "text"
    assert parse(["-v", "check", "x"]).log_level == "debug"
    assert parse(["--log-level", "warning", "--log-format", "json", "check", "x"]).log_format == "json"
    with pytest.raises(SystemExit):
        parse(["--log-level", "loud", "check", "x"])


def test_format_time_shows_date_time_and_zone(local_zone: None) -> None:
    ts = datetime(2026, 12, 1, 21, 9, 5, tzinfo=SHANGHAI).timestamp()
    assert format_time(ts, SHANGHAI) == "2026-12-01 21:09:05 CST"
    assert format_time(ts, ZoneInfo("UTC")) == "2026-12-01 13:09:05 UTC"
    assert format_time(ts) == "2026-12-01 08:09:05 EST"  # no zone given: the local one
    assert format_time(ts - 180 * 86400) == "2026-06-04 09:09:05 EDT"


def test_parse_time_reads_naive_times_in_the_given_zone(local_zone: None) -> None:
    ts = datetime(2026, 12, 1, 21, 9, 5, tzinfo=SHANGHAI).timestamp()
    assert parse_time("2026-12-01T21:09:05", SHANGHAI) == ts
    assert parse_time("2026-12-01T08:09:05") == ts  # local zone
    assert parse_time("2026-12-01T13:09:05+00:00", SHANGHAI) == ts  # an explicit zone wins
    assert parse_time(str(ts)) == ts
    with pytest.raises(ValueError, match="epoch seconds or ISO 8601"):
        parse_time("yesterday")


def test_times_are_shown_in_the_roster_zone() -> None:
    config = load_config(CONFIG_DIR / "sites" / "demo.yaml")
    assert site_zone(config) == SHANGHAI
    assert site_zone(config.model_copy(update={"roster": None})) is None
    assert site_zone(None) is None
    assert config.roster is not None
    odd = config.model_copy(update={"roster": config.roster.model_copy(update={"timezone": "Mars/Base"})})
    with pytest.raises(ConfigError):
        site_zone(odd)


def test_text_log_lines_carry_date_and_zone() -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("pymodbus.logging").level)
    out = io.StringIO()
    setup_logging("info", "text", stream=out)
    try:
        logging.getLogger("monitord.test").info("hello %s", "there")
        logging.getLogger("monitord.test").debug("not shown")
        logging.getLogger("pymodbus.logging").error("frame 01 03 00 00")  # pymodbus: CRITICAL only
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]
        logging.getLogger("pymodbus.logging").setLevel(before[2])
    [line] = out.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ INFO    monitord.test: hello there", line), line


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "monitord", "--log-format", "json", "demo", "--duration", "3s"]
    out = subprocess.run(
        [*command, "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    entries = [json.loads(line) for line in out.stderr.splitlines()]
    assert entries and all(set(e) == {"ts", "level", "logger", "message"} for e in entries)
    assert any(e["logger"] == "monitord.daemon.app" and e["message"].startswith("API at") for e in entries)
    for e in entries:
        ts = datetime.fromisoformat(e["ts"])
        assert ts.tzinfo is not None and abs(ts.timestamp() - time.time()) < 120
        assert e["level"] in ("INFO", "WARNING", "ERROR")
