"""Alert lifecycle per (rule, asset): inactive → pending → firing → resolved.

Fourth stage: the rule engine hands over, per rule, which assets meet the
``when`` condition and which meet the ``clear`` condition (both already gated
on good, fresh data). The tracker applies ``for`` and ``clear_for`` with numpy
state arrays, and emits an ``AlertEvent`` only on a transition. It never talks
to people; the ticket desk and notifiers act on its events.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]
INACTIVE, PENDING, FIRING = 0, 1, 2
TIMER_MARGIN = 0.001  # seconds


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

    def state_of(self, rule: str, index: int) -> int:
        st = self._rules.get(rule)
        return INACTIVE if st is None else int(st.state[index])

    def since_of(self, rule: str, index: int) -> float:
        """When the current episode of an alert began (NaN when it is inactive)."""
        st = self._rules.get(rule)
        return float("nan") if st is None else float(st.since[index])

    def restore(self, rule: str, n: int, index: int, since: float) -> None:
        """Mark an alert as firing after a restart, so it is not opened twice."""
        st = self._rules.get(rule)
        if st is None:
            st = self._rules[rule] = _RuleAlerts(n, 6)
        st.state[index] = FIRING
        st.since[index] = since
