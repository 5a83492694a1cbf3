"""Durations as people write them in YAML (``500ms``, ``5s``, ``2m``, ``1h``, ``1d``), and times as
people read and type them on a terminal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``5s``-style text or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"a duration like 5s, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration must not be negative, got {value}")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"a duration like 500ms, 5s, 2m, 1h, got {value!r}")


def _validate(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "must be {why}", {"why": str(exc)}) from None


Duration = Annotated[float, BeforeValidator(_validate)]


def format_duration(seconds: float) -> str:
    """Short human form for terminals: ``45s``, ``3m05s``, ``2h10m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def counted(n: int, noun: str) -> str:
    """``1 alert``, ``4 alerts`` (English nouns that take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def format_time(ts: float, tz: tzinfo | None = None) -> str:
    """Epoch seconds as people read them: ``2026-12-01 21:09:05 CST``: date, time and zone.

    ``tz`` is the site's zone where there is one; ``None`` means this machine's local zone.
    """
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def format_clock(ts: float, tz: tzinfo | None = None) -> str:
    """Only the time of day, ``21:09:05``, in ``tz`` (``None``: this machine's local zone): for lines
    printed as things happen, where the date and zone are those of the whole session."""
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%H:%M:%S")


def parse_time(text: str, tz: tzinfo | None = None) -> float:
    """Epoch seconds from epoch seconds or ISO 8601 text; a time without a zone is in ``tz``
    (``None``: this machine's local zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"a time as epoch seconds or ISO 8601 (2026-12-01T21:09), got {text!r}") from None
    if moment.tzinfo is None and tz is not None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()
