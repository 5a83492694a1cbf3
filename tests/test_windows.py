"""Windowed rule functions: no estimate from a window not yet watched, counts from what it holds."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitord.rules.expr import compile_expression

T0 = 1_767_225_600.0


class Series:
    """One row per asset; every call to ``at`` is one evaluation with fresh, good samples."""

    def __init__(self, text: str, rows: int = 1) -> None:
        self.expr = compile_expression(text)
        self.rows = rows
        self.now = T0
        self.values: dict[str, npt.NDArray[np.float64]] = {}
        self.ts = np.full(rows, T0)
        self.good = np.ones(rows, dtype=np.bool_)

    def at(self, seconds: float, **values: float) -> list[float]:
        self.now = T0 + seconds
        self.ts = np.full(self.rows, self.now)
        self.values = {k: np.full(self.rows, v) for k, v in values.items()}
        return [float(x) for x in np.atleast_1d(self.expr.fn(self))]  # type: ignore[arg-type]

    def column(self, point: str) -> npt.NDArray[np.float64]:
        return self.values[point]

    def newest(self, points: frozenset[str]) -> npt.NDArray[np.float64]:
        return self.ts

    def valid(self, points: frozenset[str]) -> npt.NDArray[np.bool_]:
        return self.good


def test_stddev_of_a_start_up_transient_is_no_verdict_until_the_window_is_watched() -> None:
    s = Series("stddev_over(p, 5m)")
    ramp = [0.60, 0.45, 0.42, 0.50, 0.58, 0.62]  # a pump settling after start
    seen = [s.at(i, p=v)[0] for i, v in enumerate(ramp)]
    assert all(math.isnan(x) for x in seen), "a 5 s start-up is not a 5 min spread"
    for t in range(6, 290):
        assert math.isnan(s.at(t, p=0.6)[0]), f"no verdict at {t} s"
    assert s.at(290, p=0.6)[0] > 0, "watched for the window (to one bucket): a verdict"
    assert s.at(400, p=0.6)[0] == 0.0, "the transient has left the window"


def test_a_return_after_a_gap_longer_than_the_window_starts_watching_again() -> None:
    s = Series("avg_over(p, 1m)")
    for t in range(0, 61):
        s.at(t, p=1.0)
    assert s.at(61, p=1.0) == [1.0]
    assert math.isnan(s.at(200, p=5.0)[0]), "back after 139 s of silence: one sample is no average"
    for t in range(201, 258):
        assert math.isnan(s.at(t, p=5.0)[0])
    assert s.at(260, p=5.0) == [5.0]


def test_zscore_and_rate_wait_too_but_counts_report_what_the_window_holds() -> None:
    z = Series("zscore(p, 1m)")
    assert math.isnan(z.at(0, p=1.0)[0]) and math.isnan(z.at(1, p=3.0)[0])
    r = Series("rate(p, 1m)")
    assert math.isnan(r.at(0, p=0.0)[0]) and math.isnan(r.at(10, p=10.0)[0])
    c = Series("changes(p, 1h)")
    assert [c.at(t, p=t % 2)[0] for t in range(4)] == [0.0, 1.0, 2.0, 3.0], "starts are starts at once"
    d = Series("delta(p, 1h)")
    assert math.isnan(d.at(0, p=0.0)[0]), "one sample has no delta"
    assert d.at(60, p=7.0) == [7.0]


def test_count_true_counts_the_samples_where_the_condition_held() -> None:
    s = Series("count_true(p > 1, 1m)")
    assert [s.at(t, p=v)[0] for t, v in enumerate([0.0, 2.0, 3.0, 0.5, 4.0])] == [0.0, 1.0, 2.0, 2.0, 3.0]
