"""Alert lifecycle per (rule, asset): inactive → pending → firing → resolved.

Fourth stage: the rule engine hands over, per rule, which assets meet the
``when`` condition and which meet the ``clear`` condition (both already gated
on good, fresh data). The tracker applies ``for`` and ``clear_for`` with numpy
state arrays, and emits an ``AlertEvent`` only on a transition. It never talks
to people; the ticket desk and notifiers act on its events.

Pending ``for`` timers survive a restart: ``PendingFile`` keeps the start of
every pending alert in a small JSON file, and ``resume_pending`` hands them
back; a resumed timer continues from its old start once the condition is seen
again (within ``RESUME_WITHIN`` of the restart), so a kill -9 does not delay a
P1 by the time it had already waited.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]
INACTIVE, PENDING, FIRING = 0, 1, 2
TIMER_MARGIN = 0.001  # seconds
log = logging.getLogger(__name__)
#: seconds after a restart in which a saved pending timer may resume (the condition must show by then)
RESUME_WITHIN = 60.0


def fingerprint(rule: str, asset: str) -> str:
    """Stable id of one alert series; the same on every instance and restart."""
    return hashlib.sha1(f"{rule}\x00{asset}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    ts: float
    rule: str
    asset: str
    state: Literal["firing", "resolved", "flapping"]
    severity: str
    since: float  # when the condition first held in this episode
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.asset)


class _RuleAlerts:
    def __init__(self, n: int, flap_transitions: int) -> None:
        self.state = np.zeros(n, dtype=np.int8)
        self.since = np.full(n, math.nan)
        self.clear_since = np.full(n, math.nan)
        # Times of the last transitions per asset (a ring), to tell a flapping alert.
        self.transitions = np.full((n, max(flap_transitions, 1)), -math.inf)
        self.flapping = np.zeros(n, dtype=bool)
        self.due = math.inf  # the next instant a timer of this rule (`for`, `clear_for`) runs out
        # Pending timers from before a restart: index → start, resumed when the condition shows.
        self.resume: dict[int, float] = {}
        self.resume_until = -math.inf

    def record(self, mask: Bools, now: float) -> None:
        if mask.any():
            self.transitions[mask] = np.roll(self.transitions[mask], 1, axis=1)
            self.transitions[mask, 0] = now


@dataclass(frozen=True, slots=True)
class Transition:
    index: int  # position in the rule's asset list
    state: Literal["firing", "resolved", "flapping"]
    since: float


class AlertTracker:
    def __init__(self) -> None:
        self._rules: dict[str, _RuleAlerts] = {}

    def forget(self) -> None:
        """Drop every alert's state (an HA instance about to restore them from the shared store)."""
        self._rules.clear()

    def update(
        self,
        rule: str,
        fire: Bools,
        clear: Bools,
        *,
        hold_for: float,
        clear_for: float,
        now: float,
        flap_window: float = 600.0,
        flap_transitions: int = 6,
    ) -> list[Transition]:
        """Apply one evaluation; return the transitions it caused.

        An alert that changed state ``flap_transitions`` times within
        ``flap_window`` is flapping: it stays firing (one ``flapping``
        transition says so) until its clear condition has held for the whole
        window, so it neither floods people nor hides.
        """
        st = self._rules.get(rule)
        if st is None:
            st = self._rules[rule] = _RuleAlerts(len(fire), flap_transitions)
        if st.resume:
            self._resume(st, fire, now)
        if not fire.any() and not st.state.any():
            st.due = math.inf
            return []

        start = (st.state == INACTIVE) & fire
        st.state[start] = PENDING
        st.since[start] = now
        pending = st.state == PENDING
        st.state[pending & ~fire] = INACTIVE  # the condition must hold throughout `for`
        promote = pending & fire & (now - st.since >= hold_for)
        st.state[promote] = FIRING

        firing = (st.state == FIRING) & ~promote
        clearing = firing & clear
        st.clear_since[firing & ~clear] = math.nan
        st.clear_since[clearing & np.isnan(st.clear_since)] = now
        calm_for = np.where(st.flapping, max(clear_for, flap_window), clear_for)
        resolve = clearing & (now - st.clear_since >= calm_for)
        recent = st.transitions[:, -1] > now - flap_window  # oldest of the last N is recent
        start_flapping = resolve & recent & ~st.flapping
        resolve &= ~start_flapping
        st.flapping |= start_flapping
        st.state[resolve] = INACTIVE
        st.clear_since[resolve] = math.nan
        st.flapping[resolve] = False
        st.record(promote | resolve, now)
        timers = np.concatenate(
            (st.since[st.state == PENDING] + hold_for, (st.clear_since + calm_for)[st.state == FIRING])
        )
        # A millisecond past the instant, so that an evaluation then sees the timer run out even
        # where floating point puts `now - since` a hair under `for`.
        st.due = float(np.nanmin(timers)) + TIMER_MARGIN if np.isfinite(timers).any() else math.inf

        out = [Transition(int(i), "firing", float(st.since[i])) for i in np.flatnonzero(promote)]
        out += [Transition(int(i), "flapping", float(st.since[i])) for i in np.flatnonzero(start_flapping)]
        out += [Transition(int(i), "resolved", float(st.since[i])) for i in np.flatnonzero(resolve)]
        return out

    def next_due(self) -> float:
        """When the earliest running `for` or `clear_for` timer runs out (inf: none runs).

        The daemon evaluates then, whether or not new data came: a fault is confirmed the moment
        its `for` has passed, not at the next poll after it.
        """
        return min((st.due for st in self._rules.values()), default=math.inf)

    def firing(self, rule: str) -> Bools:
        st = self._rules.get(rule)
        return np.zeros(0, dtype=bool) if st is None else st.state == FIRING

    def active(self, rule: str) -> Bools:
        """Pending or firing, per asset of the rule (empty before its first evaluation)."""
        st = self._rules.get(rule)
        return np.zeros(0, dtype=bool) if st is None else (st.state == PENDING) | (st.state == FIRING)

    def state_of(self, rule: str, index: int) -> int:
        st = self._rules.get(rule)
        return INACTIVE if st is None else int(st.state[index])

    def since_of(self, rule: str, index: int) -> float:
        """When the current episode of an alert began (NaN when it is inactive)."""
        st = self._rules.get(rule)
        return float("nan") if st is None else float(st.since[index])

    def _resume(self, st: _RuleAlerts, fire: Bools, now: float) -> None:
        """Saved pending timers continue from their start when the condition is seen again."""
        if now > st.resume_until:
            st.resume.clear()
            return
        for i, since in list(st.resume.items()):
            if i < len(fire) and fire[i] and st.state[i] == INACTIVE:
                st.state[i] = PENDING
                st.since[i] = since
                del st.resume[i]

    def pending(self) -> dict[str, dict[int, float]]:
        """Start of every pending alert (and of every saved one not yet resumed), by rule and index."""
        out: dict[str, dict[int, float]] = {}
        for rule, st in self._rules.items():
            timers = {int(i): float(st.since[i]) for i in np.flatnonzero(st.state == PENDING)}
            timers.update({i: t for i, t in st.resume.items() if i not in timers})
            if timers:
                out[rule] = timers
        return out

    def resume_pending(self, rule: str, n: int, index: int, since: float, until: float) -> None:
        """A pending timer saved before a restart: it resumes if the condition holds before ``until``."""
        st = self._rules.get(rule)
        if st is None:
            st = self._rules[rule] = _RuleAlerts(n, 6)
        st.resume[index] = since
        st.resume_until = until

    def restore(self, rule: str, n: int, index: int, since: float) -> None:
        """Mark an alert as firing after a restart, so it is not opened twice."""
        st = self._rules.get(rule)
        if st is None:
            st = self._rules[rule] = _RuleAlerts(n, 6)
        st.state[index] = FIRING
        st.since[index] = since


class PendingFile:
    """Pending alerts' start times in a small JSON file, written when they change (and every
    ``refresh`` seconds while any is pending, so its age tells how long the daemon was away).

    Keyed by rule series and asset id, not by position, so a changed asset list cannot shift them.
    """

    def __init__(self, path: Path, refresh: float = 5.0, max_gap: float = RESUME_WITHIN) -> None:
        self.path, self.refresh, self.max_gap = path, refresh, max_gap
        self._last: tuple[float, dict[str, dict[int, float]]] = (-math.inf, {})
        #: told the JSON of each save: an HA pair hands it to the standby (docs/scale-out.md)
        self.on_saved: Callable[[str], None] | None = None

    def save(self, tracker: AlertTracker, assets: Mapping[str, Sequence[str]], now: float) -> None:
        timers = tracker.pending()
        last_at, last = self._last
        if timers == last and (not timers or now - last_at < self.refresh):
            return
        entries = [
            {"rule": rule, "asset": assets[rule][i], "since": since}
            for rule, by_index in sorted(timers.items())
            if rule in assets
            for i, since in sorted(by_index.items())
            if i < len(assets[rule])
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"saved_at": now, "pending": entries})
            tmp.write_text(text)
            tmp.replace(self.path)  # whole or not at all, even on a kill -9
        except OSError as exc:
            log.warning("cannot save pending alert timers to %s: %s", self.path, exc)
            return
        self._last = (now, timers)
        if self.on_saved is not None:
            self.on_saved(text)

    def restore(self, tracker: AlertTracker, assets: Mapping[str, Sequence[str]], now: float) -> int:
        """Hand saved timers back to ``tracker``; how many. Too old a file (daemon away longer than
        ``max_gap``) or an unreadable one restores nothing: the timers start over, as before."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("ignoring pending alert timers in %s: %s", self.path, exc)
            return 0
        return self.restore_from(text, tracker, assets, now, str(self.path))

    def restore_from(
        self, text: str, tracker: AlertTracker, assets: Mapping[str, Sequence[str]], now: float, source: str
    ) -> int:
        """``restore`` from a saved JSON text (``source`` names it in the log: a file, another instance)."""
        try:
            saved = json.loads(text)
            saved_at, entries = float(saved["saved_at"]), list(saved["pending"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring pending alert timers in %s: %s", source, exc)
            return 0
        if not 0 <= now - saved_at <= self.max_gap:
            log.info("pending alert timers in %s are %.0fs old; not resumed", source, now - saved_at)
            return 0
        n = 0
        for e in entries:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                ids = assets[e["rule"]]
                since = float(e["since"])
                if e["asset"] in ids and math.isfinite(since):
                    tracker.resume_pending(
                        e["rule"], len(ids), list(ids).index(e["asset"]), since, now + self.max_gap
                    )
                    n += 1
        if n:
            log.info("resuming %d pending alert timers saved %.0fs ago", n, now - saved_at)
        return n
