"""InfluxDB sample rows back as frames: what ``InfluxStore.frames`` (replay, export) makes of a query.

A stored row holds one float field per point that was good and ``bad_points`` for how many were not
(docs/storage.md#influxdb-samples); the rows of one measurement and window come as one series, in
time order, with a null wherever a row lacks a column. Here they become ``Frame``s, one per set of
points: the columns turned into matrices with numpy, not row by row, since a day of a site is
millions of rows. A row that says some points were bad gets its asset's own points (its profile's),
those it lacks marked ``STALE`` — never read as good.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monitord.core.model import Frame, Quality

TAGS = frozenset({"time", "site", "building", "asset"})
#: The store keeps no reason for a point that was not good; STALE is what the state table holds
#: for a point with no value at all.
NOT_GOOD = int(Quality.STALE)


def series_frames(
    columns: Sequence[str], values: Sequence[Sequence[Any]], points_of: Mapping[str, tuple[str, ...]]
) -> list[Frame]:
    """The rows of one series (``SELECT *`` of one measurement, no ``GROUP BY``: time-ordered), as
    frames in the rows' order, one per set of points."""
    if not values:
        return []
    col = {c: i for i, c in enumerate(columns)}
    fields = [c for c in columns if c not in TAGS and c != "bad_points"]
    table = np.array(values, dtype=object)
    ts = table[:, col["time"]].astype(np.float64) / 1e6
    assets = table[:, col["asset"]]
    raw = table[:, [col[f] for f in fields]]
    present = raw != None  # noqa: E711 (elementwise: numpy's object compare)
    vals = np.where(present, raw, np.nan).astype(np.float64)
    if "bad_points" in col:
        bad = table[:, col["bad_points"]]
        flagged = bad != None  # noqa: E711
        flagged[flagged] = bad[flagged].astype(np.int64) > 0
    else:
        flagged = np.zeros(len(table), dtype=bool)
    frames: list[tuple[int, Frame]] = []  # (first row, frame), to put them in the rows' order
    whole = ~flagged
    if whole.any():  # every point of the read was good: its fields are its points
        rows = np.flatnonzero(whole)
        patterns, which = np.unique(present[rows], axis=0, return_inverse=True)
        for k, pattern in enumerate(patterns):
            mine = rows[which.ravel() == k]
            cols = _in_profile_order(np.flatnonzero(pattern), fields, points_of.get(assets[mine[0]], ()))
            points = tuple(fields[j] for j in cols)
            if points:
                v = vals[np.ix_(mine, cols)]
                q = np.zeros(v.shape, dtype=np.int8)
                frames.append((int(mine[0]), Frame(points, assets[mine], ts[mine], v, q)))
    if flagged.any():  # rare: a failed read; which points failed is not stored, only how many
        frames += _flagged(np.flatnonzero(flagged), fields, assets, ts, vals, present, points_of)
    frames.sort(key=lambda f: f[0])
    return [f for _first, f in frames]


def _in_profile_order(cols: Any, fields: list[str], own: tuple[str, ...]) -> list[int]:
    """Columns (InfluxDB answers fields by name) in the order of the asset's profile, as the read
    had them, so that an export from InfluxDB is the export from SQLite; others after them."""
    rank = {p: i for i, p in enumerate(own)}
    return sorted(cols.tolist(), key=lambda j: (rank.get(fields[j], len(rank)), fields[j]))


def _flagged(
    rows: np.ndarray[Any, np.dtype[np.intp]],
    fields: list[str],
    assets: np.ndarray[Any, np.dtype[np.object_]],
    ts: np.ndarray[Any, np.dtype[np.float64]],
    vals: np.ndarray[Any, np.dtype[np.float64]],
    present: np.ndarray[Any, np.dtype[np.bool_]],
    points_of: Mapping[str, tuple[str, ...]],
) -> list[tuple[int, Frame]]:
    """Rows with ``bad_points``: the asset's points, those the row lacks not good; by points set."""
    field_at = {f: j for j, f in enumerate(fields)}
    groups: dict[tuple[str, ...], list[int]] = {}
    for r in rows.tolist():
        have = [fields[j] for j in np.flatnonzero(present[r])]
        own = points_of.get(assets[r], ())
        points = tuple(own) + tuple(p for p in have if p not in own)
        if points:  # an asset the config no longer knows, all bad: nothing to say of it
            groups.setdefault(points, []).append(r)
    out = []
    for points, mine in groups.items():
        idx = np.array(mine, dtype=np.intp)
        v = np.full((len(mine), len(points)), np.nan)
        q = np.full((len(mine), len(points)), NOT_GOOD, dtype=np.int8)
        for k, p in enumerate(points):
            j = field_at.get(p)
            if j is not None:
                got = present[idx, j]
                v[got, k] = vals[idx[got], j]
                q[got, k] = int(Quality.GOOD)
        out.append((mine[0], Frame(points, assets[idx], ts[idx], v, q)))
    return out
