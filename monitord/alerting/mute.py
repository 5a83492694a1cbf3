"""Muting, with reasons: maintenance windows and silences.

Between the alert tracker and the ticket desk. An alert that a maintenance
window (定期保养, scheduled in config) or a silence (ad hoc, by matcher, with
an author, a reason and an expiry — never without one) covers is still
recorded in the store, but opens no ticket and notifies no one; ``mutes``
says why. Silences live in the notification-log database, so they survive a
restart; expired ones stay listed as expired.

Life-safety rules (``life_safety: true``: entrapment, fire, residual current)
are never muted by a maintenance window, and a silence mutes one only when it
names that rule itself (no glob, no "every rule of the asset"); each time it
does, an audit row (``silence_audit``: silence, author, reason, rule, asset,
time) is written beside the silences and a warning is logged.
"""

from __future__ import annotations

import datetime
import datetime as dt
import fnmatch
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from monitord.core.assets import Asset
from monitord.core.schema import Strict

log = logging.getLogger(__name__)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Matcher(Strict):
    """Which alerts: every given part must match (rules as glob patterns, e.g. ``pump.*``)."""

    assets: list[str] = []
    types: list[str] = []
    tags: list[str] = []
    rules: list[str] = []


class WeeklySlot(Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str = Field(pattern=r"^\d{2}:\d{2}$")
    end: str = Field(pattern=r"^\d{2}:\d{2}$")


class MaintenanceWindow(Strict):
    """定期保养: alerts are recorded but open no tickets and notify no one."""

    id: str
    match: Matcher
    reason: str = ""
    weekly: list[WeeklySlot] = []
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None

    @model_validator(mode="after")
    def _when(self) -> MaintenanceWindow:
        if not self.weekly and (self.start is None or self.end is None):
            raise PydanticCustomError("window", "give weekly slots, or start and end")
        return self


def matches(m: Matcher, rule: str, asset: Asset) -> bool:
    return (
        (not m.assets or asset.id in m.assets)
        and (not m.types or asset.type in m.types)
        and all(t in asset.tags for t in m.tags)
        and (not m.rules or any(fnmatch.fnmatchcase(rule, pattern) for pattern in m.rules))
    )


def in_window(w: MaintenanceWindow, at: float, tz: dt.tzinfo) -> bool:
    local = dt.datetime.fromtimestamp(at, tz)
    if w.start is not None and w.end is not None:
        return (
            w.start.replace(tzinfo=w.start.tzinfo or tz).timestamp()
            <= at
            < w.end.replace(tzinfo=w.end.tzinfo or tz).timestamp()
        )
    minutes = local.hour * 60 + local.minute
    for slot in w.weekly:
        if _DAYS[local.weekday()] not in slot.days:
            continue
        h1, m1 = (int(x) for x in slot.start.split(":"))
        h2, m2 = (int(x) for x in slot.end.split(":"))
        if h1 * 60 + m1 <= minutes < h2 * 60 + m2:
            return True
    return False


@dataclass(frozen=True)
class Silence:
    id: str
    matcher: Matcher
    author: str
    reason: str
    created: float
    expires: float

    def active(self, at: float) -> bool:
        return self.created <= at < self.expires


class MuteStages:
    def __init__(self, windows: list[MaintenanceWindow], db_path: Path | None, timezone: str = "UTC") -> None:
        """``db_path`` None: windows only, no silences (replay of recorded data)."""
        self.windows = windows
        self.tz = ZoneInfo(timezone)
        self.db_path = db_path
        self.silences: list[Silence] = []
        #: told each silence added or expired here: an HA pair's shared store (docs/scale-out.md)
        self.on_change: Callable[[Silence], None] | None = None
        if db_path is not None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(db_path) as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, matcher TEXT, "
                    "author TEXT, reason TEXT, created REAL, expires REAL)"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS silence_audit (silence TEXT, author TEXT, reason TEXT, "
                    "rule TEXT, asset TEXT, at REAL, PRIMARY KEY (silence, rule, asset, at))"
                )
                rows = db.execute(
                    "SELECT id, matcher, author, reason, created, expires FROM silences"
                ).fetchall()
            self.silences = [
                Silence(i, Matcher.model_validate_json(m), a, r, c, e) for i, m, a, r, c, e in rows
            ]

    def mutes(self, rule: str, asset: Asset, at: float, *, life_safety: bool = False) -> str | None:
        """Why this alert must not reach people now, or None.

        A life-safety alert: no maintenance window, and only a silence that names ``rule`` exactly
        (an audited decision by a person, not a side effect of a broad matcher)."""
        if not life_safety:
            for w in self.windows:
                if matches(w.match, rule, asset) and in_window(w, at, self.tz):
                    return f"maintenance window {w.id}" + (f" ({w.reason})" if w.reason else "")
        for s in self.silences:
            if not (s.active(at) and matches(s.matcher, rule, asset)):
                continue
            if life_safety and rule not in s.matcher.rules:
                continue
            if life_safety:
                self._audit(s, rule, asset.id, at)
            return f"silence {s.id} by {s.author}: {s.reason}"
        return None

    def _audit(self, s: Silence, rule: str, asset: str, at: float) -> None:
        log.warning(
            "life-safety alert %s on %s silenced by %s (%s: %s)", rule, asset, s.id, s.author, s.reason
        )
        if self.db_path is not None:
            with sqlite3.connect(self.db_path) as db:
                db.execute(
                    "INSERT OR IGNORE INTO silence_audit VALUES (?, ?, ?, ?, ?, ?)",
                    (s.id, s.author, s.reason, rule, asset, at),
                )

    def audit(self) -> list[tuple[str, str, str, str, str, float]]:
        """Life-safety alerts silences muted: (silence, author, reason, rule, asset, at), oldest first."""
        if self.db_path is None:
            return []
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute(
                "SELECT silence, author, reason, rule, asset, at FROM silence_audit ORDER BY at"
            ).fetchall()
        return [(str(a), str(b), str(c), str(d), str(e), float(f)) for a, b, c, d, e, f in rows]

    def add_silence(
        self, matcher: Matcher, author: str, reason: str, seconds: float, now: float | None = None
    ) -> Silence:
        if not author or not reason:
            raise ValueError("a silence needs an author and a reason")
        if not 0 < seconds <= 30 * 86400:
            raise ValueError("a silence needs an expiry between 1 s and 30 days")
        if self.db_path is None:
            raise ValueError("silences need the notification-log database")
        now = time.time() if now is None else now
        s = Silence(uuid.uuid4().hex[:8], matcher, author, reason, now, now + seconds)
        with sqlite3.connect(self.db_path) as db:
            db.execute(
                "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?)",
                (s.id, matcher.model_dump_json(), author, reason, s.created, s.expires),
            )
        self.silences.append(s)
        self._tell(s)
        return s

    def adopt(self, silences: Iterable[Silence]) -> int:
        """Silences set on another instance of the site (an HA takeover): kept here as if set here,
        a silence ended early (expired) winning over its
        longer original. How many changed."""
        mine = {s.id: s for s in self.silences}
        changed = [s for s in silences if s.id not in mine or mine[s.id].expires > s.expires]
        for s in changed:
            mine[s.id] = s
        if changed and self.db_path is not None:
            with sqlite3.connect(self.db_path) as db:
                db.executemany(
                    "INSERT OR REPLACE INTO silences VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (s.id, s.matcher.model_dump_json(), s.author, s.reason, s.created, s.expires)
                        for s in changed
                    ],
                )
        self.silences = list(mine.values())
        return len(changed)

    def _tell(self, s: Silence) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(s)
        except Exception as exc:  # set here all the same; only a takeover would not see it
            log.error("silence %s not recorded in the shared store: %s", s.id, exc)

    def expire(self, silence_id: str, now: float | None = None) -> Silence:
        now = time.time() if now is None else now
        found = next((s for s in self.silences if s.id == silence_id), None)
        if found is None:
            raise KeyError(silence_id)
        ended = Silence(
            found.id, found.matcher, found.author, found.reason, found.created, min(found.expires, now)
        )
        if self.db_path is not None:
            with sqlite3.connect(self.db_path) as db:
                db.execute("UPDATE silences SET expires = ? WHERE id = ?", (ended.expires, silence_id))
        self.silences = [ended if s.id == silence_id else s for s in self.silences]
        self._tell(ended)
        return ended
