"""Logging for the daemon and the tools: to stderr, as text or as one JSON object per line.

Text lines carry date, time and zone (``2026-12-01 21:09:05 CST INFO    monitord.daemon.app: ...``);
JSON lines carry ``ts`` (ISO 8601 with the zone's offset), ``level``, ``logger`` and ``message``,
plus ``exc`` when there is a traceback. Times are in this machine's local zone: a log is read
next to the host's other logs. pymodbus's loggers stay at CRITICAL unless the level is debug,
and even then at WARNING: they must never print frames.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from monitord.core.units import format_time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]
_QUIET = ("pymodbus", "pymodbus.logging")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return format_time(record.created)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so a second ``setup_logging`` replaces it and leaves other handlers (pytest's) alone."""


def setup_logging(level: str = "info", fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (default stderr) at ``level`` and above, in ``fmt``.

    Calling it again replaces the handler an earlier call installed, and no other.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING if level == "debug" else logging.CRITICAL)
