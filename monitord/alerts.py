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


def fingerprint(rule: str, asset: str) -> str:
    """Stable id of one alert series; the same on every instance and restart."""
    return hashlib.sha1(f"{rule}\x00{asset}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    ts: float
    rule: str
    asset: str
    state: Literal["firing", "resolved"]
    severity: str
    since: float  # when the condition first held in this episode
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.asset)


class _RuleAlerts:
    def __init__(self, n: int) -> None:
        self.state = np.zeros(n, dtype=np.int8)
        self.since = np.full(n, math.nan)
        self.clear_since = np.full(n, math.nan)


@dataclass(frozen=True, slots=True)
class Transition:
    index: int  # position in the rule's asset list
    state: Literal["firing", "resolved"]
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
    ) -> list[Transition]:
        st = self._rules.get(rule)
        if st is None:
            st = self._rules[rule] = _RuleAlerts(len(fire))
        if not fire.any() and not st.state.any():
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
        resolve = clearing & (now - st.clear_since >= clear_for)
        st.state[resolve] = INACTIVE
        st.clear_since[resolve] = math.nan

        out = [Transition(int(i), "firing", float(st.since[i])) for i in np.flatnonzero(promote)]
        out += [Transition(int(i), "resolved", float(st.since[i])) for i in np.flatnonzero(resolve)]
        return out

    def firing(self, rule: str) -> Bools:
        st = self._rules.get(rule)
        return np.zeros(0, dtype=bool) if st is None else st.state == FIRING

    def restore(self, rule: str, n: int, index: int, since: float) -> None:
        """Mark an alert as firing after a restart, so it is not opened twice."""
        st = self._rules.get(rule)
        if st is None:
            st = self._rules[rule] = _RuleAlerts(n)
        st.state[index] = FIRING
        st.since[index] = since
