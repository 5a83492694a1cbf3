"""The latest value, time and quality of every point, as numpy columns.

Second stage of the pipeline: the ``SampleBus`` hands every ``SampleBatch``
to ``StateTable.apply``; the rule engine reads whole columns. One
``TypeTable`` per asset type: rows are assets, columns the union of the points
their profiles define. A failed read updates quality only, so the last good
value and its time stay for ``age()`` and for people, never as a fresh value.

Times here are receive times when the table has a clock (the daemon's): a
device's own clock may be wrong (the MQTT driver bounds it by
``max_clock_skew`` for what is stored), but whether a device is offline, and
whether a value is fresh, is judged by when monitord heard it. Replay applies
recorded frames, whose times were receive times or bounded device times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitord.core.model import Frame, HealthChange, Quality, SampleBatch, SampleBlock

_GOOD = int(Quality.GOOD)  # per batch: an enum member's lookup costs more than the compare


@dataclass(frozen=True)
class AssetSlot:
    """What the state table needs to know of an asset to give it a row."""

    id: str
    type: str
    points: tuple[str, ...]
    stale_after: float  # seconds without a good sample before a point counts as stale
    # The device reports only what changed (MQTT ``publishes: changes``): a value not sent again is
    # unchanged, so it stays fresh while the device is not offline, not just for ``stale_after``.
    held: bool = False


class TypeTable:
    """All assets of one type: rows × points matrices."""

    def __init__(
        self, asset_type: str, slots: list[AssetSlot], started: float, columns: tuple[str, ...] = ()
    ) -> None:
        self.asset_type = asset_type
        self.assets = [s.id for s in slots]
        self.row = {a: i for i, a in enumerate(self.assets)}
        # Columns: every point any profile of this type defines, so one rule serves all of them;
        # ``has`` says which an asset's own profile provides.
        union: dict[str, None] = dict.fromkeys(columns)
        for s in slots:
            union.update(dict.fromkeys(s.points))
        self.columns = list(union)
        self.col = {c: j for j, c in enumerate(self.columns)}
        n, m = len(slots), len(self.columns)
        self.value = np.full((n, m), math.nan)
        self.ts = np.full((n, m), math.nan)
        self.quality = np.full((n, m), int(Quality.STALE), dtype=np.int8)
        # Counting from start-up: a device is not offline before it had the chance to answer.
        self.last_good = np.full(n, started)
        self.stale_after = np.array([s.stale_after for s in slots])
        self.held = np.array([s.held for s in slots], dtype=bool)
        self._any_held = bool(self.held.any())
        # What the device said of itself (HealthChange.said): 1 online, -1 offline, 0 nothing.
        self.said = np.zeros(n, dtype=np.int8)
        self.has = np.zeros((n, m), dtype=bool)  # which points each asset's profile provides
        for i, s in enumerate(slots):
            self.has[i, [self.col[p] for p in s.points]] = True
        self._cols: dict[tuple[str, ...], npt.NDArray[np.intp]] = {}

    def columns_of(self, points: tuple[str, ...]) -> npt.NDArray[np.intp]:
        cols = self._cols.get(points)
        if cols is None:
            cols = np.array([self.col[p] for p in points], dtype=np.intp)
            self._cols[points] = cols
        return cols

    def apply(self, row: int, batch: SampleBatch, received: float | None = None) -> None:
        """One batch into the row; ``received`` (the daemon's clock) stands for the batch's time."""
        ts = batch.ts if received is None else received
        cols = self.columns_of(batch.points)
        self.quality[row, cols] = batch.quality
        good = batch.quality == _GOOD
        if good.all():
            self.value[row, cols] = batch.values
            self.ts[row, cols] = ts
            self.last_good[row] = ts
        elif good.any():
            gcols = cols[good]
            self.value[row, gcols] = batch.values[good]
            self.ts[row, gcols] = ts
            self.last_good[row] = ts
        else:
            return
        if self.said[row] < 0:  # a device that sends good data is not offline, whatever it said last
            self.said[row] = 0

    def apply_good(
        self,
        rows: npt.NDArray[np.intp],
        points: tuple[str, ...],
        values: npt.NDArray[np.float64],
        ts: npt.NDArray[np.float64],
    ) -> None:
        """All-good batches of distinct rows at once (``values``: one row each; ``ts``: one time
        each): what ``apply`` does for each, as one numpy update."""
        cols = self.columns_of(points)
        self.value[rows[:, None], cols] = values
        self.quality[rows[:, None], cols] = _GOOD
        self.ts[rows[:, None], cols] = ts[:, None]
        self.last_good[rows] = ts
        self.said[rows] = np.maximum(self.said[rows], 0)  # as in ``apply``: good data is not offline

    def fresh(self, now: float) -> npt.NDArray[np.bool_]:
        """Per cell: heard within ``stale_after``, or held (the asset reports changes) and the asset
        not offline."""
        fresh: npt.NDArray[np.bool_] = (now - self.ts) <= self.stale_after[:, None]
        if self._any_held:
            fresh |= (self.held & ~self.offline(now))[:, None]
        return fresh

    def valid(self, now: float) -> npt.NDArray[np.bool_]:
        """Good and fresh, per cell: what a process rule may act on."""
        valid: npt.NDArray[np.bool_] = (self.quality == Quality.GOOD) & self.fresh(now)
        return valid

    def offline(self, now: float) -> npt.NDArray[np.bool_]:
        """Per asset: no good sample for ``stale_after`` (docs/faults.md#comms: 3 poll intervals).

        A driver's verdict on one failed poll does not count: one lost reply is not an incident.
        What the device said of itself does (``HealthChange.said``): offline at once, and not
        offline while it says it is online (a device that publishes only on change).
        """
        silent = ~((now - self.last_good) <= self.stale_after)
        return np.where(self.said == 0, silent, self.said < 0)

    def is_offline(self, row: int, now: float) -> bool:
        """``offline`` for one asset (inference asks asset by asset)."""
        said = int(self.said[row])
        return said < 0 if said else not now - float(self.last_good[row]) <= float(self.stale_after[row])


class StateTable:
    def __init__(
        self,
        slots: list[AssetSlot],
        started: float = math.nan,
        columns: dict[str, tuple[str, ...]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock``: receive time for live batches (offline and freshness by it); None: batch times."""
        self.clock = clock
        by_type: dict[str, list[AssetSlot]] = {}
        for s in slots:
            by_type.setdefault(s.type, []).append(s)
        self.tables = {t: TypeTable(t, ss, started, (columns or {}).get(t, ())) for t, ss in by_type.items()}
        self.where = {s.id: (self.tables[s.type], self.tables[s.type].row[s.id]) for s in slots}
        self._row_of = {a: row for a, (_t, row) in self.where.items()}

    def apply(self, batch: SampleBatch) -> None:
        located = self.where.get(batch.asset)
        if located is None:
            return
        table, row = located
        table.apply(row, batch, None if self.clock is None else self.clock())

    def apply_many(self, batches: Sequence[SampleBatch]) -> None:
        """Batches handed over together (a drained chunk of MQTT messages), in order: runs of all-good
        batches as one numpy update per type and point list, any other batch on its own (after the
        run before it, so the order of what an asset sent is kept)."""
        received = None if self.clock is None else self.clock()
        if type(batches) is SampleBlock and self._apply_block(batches, received):
            return
        run: dict[tuple[TypeTable, tuple[str, ...]], list[tuple[int, SampleBatch]]] = {}
        for batch in batches:
            located = self.where.get(batch.asset)
            if located is None:
                continue
            table, row = located
            # not all GOOD (0): per cell, as ``apply`` does. count_nonzero is one C call (~0.3 µs);
            # .any() goes through numpy's Python wrapper (~1.4 µs), per batch of a flood
            if np.count_nonzero(batch.quality):
                _apply_run(run, received)
                run = {}
                table.apply(row, batch, received)
            else:
                run.setdefault((table, batch.points), []).append((row, batch))
        _apply_run(run, received)

    def _apply_block(self, block: SampleBlock, received: float | None) -> bool:
        """All-good rows of one matrix whose assets share one table: one update, no batch by batch
        (~1 µs a row less: a gateway's flood). False (nothing done) for anything else."""
        where = self.where
        located = [where.get(batch.asset) for batch in block]
        first = located[0] if located else None
        if first is None or any(loc is None or loc[0] is not first[0] for loc in located):
            return False
        rows = np.fromiter((loc[1] for loc in located if loc is not None), dtype=np.intp, count=len(located))
        keep = _last_of(rows)
        values = block.values
        if keep is not None:
            rows, values = rows[keep], values[keep]
        if received is None:  # replay: each batch's own time
            kept = range(len(block)) if keep is None else keep.tolist()
            ts = np.array([block[i].ts for i in kept], dtype=np.float64)
        else:
            ts = np.full(len(rows), received)
        first[0].apply_good(rows, block.points, values, ts)
        return True

    def apply_health(self, change: HealthChange) -> None:
        """A device's own word on its state (offline at once, online while silent), or, not said, the
        end of it: silence judges again."""
        located = self.where.get(change.asset)
        if located is not None:
            table, row = located
            table.said[row] = (1 if change.online else -1) if change.said else 0

    def apply_frame(self, frame: Frame) -> None:
        """Many batches of one read plan as one numpy update: replay's path."""
        row_of = self._row_of
        found = np.fromiter(
            (row_of.get(a, -1) for a in frame.assets.tolist()), dtype=np.intp, count=len(frame)
        )
        known = found >= 0
        if not known.any():
            return
        table = self.where[frame.assets[int(np.argmax(known))]][0]
        if known.all():
            rows, values, quality, ts = found[:, None], frame.values, frame.quality, frame.ts
        else:  # assets the config does not know (yet) are left out
            rows = found[known][:, None]
            values, quality, ts = frame.values[known], frame.quality[known], frame.ts[known]
        cols = table.columns_of(frame.points)
        good = quality == Quality.GOOD
        table.quality[rows, cols] = quality
        table.value[rows, cols] = np.where(good, values, table.value[rows, cols])
        table.ts[rows, cols] = np.where(good, ts[:, None], table.ts[rows, cols])
        any_good = good.any(axis=1)
        table.last_good[rows[any_good, 0]] = ts[any_good]

    def latest(self, asset: str) -> dict[str, tuple[float, float, Quality]]:
        """Point → (value, ts, quality) of one asset, for people and templates."""
        table, row = self.where[asset]
        return {
            c: (float(table.value[row, j]), float(table.ts[row, j]), Quality(int(table.quality[row, j])))
            for j, c in enumerate(table.columns)
        }


def _last_of(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp] | None:
    """Where some row comes twice, the positions of each one's last, in order (numpy does not
    promise which of a repeated index's assignments stands); None where every row comes once."""
    last = np.sort(len(rows) - 1 - np.unique(rows[::-1], return_index=True)[1])
    return last if len(last) < len(rows) else None


def _apply_run(
    run: dict[tuple[TypeTable, tuple[str, ...]], list[tuple[int, SampleBatch]]], received: float | None
) -> None:
    """A run of all-good batches, per table and point list: the last batch of each asset stands."""
    for (table, points), members in run.items():
        if len(members) == 1:
            row, batch = members[0]
            table.apply(row, batch, received)
            continue
        rows = np.fromiter((row for row, _b in members), dtype=np.intp, count=len(members))
        last = _last_of(rows)
        if last is not None:
            members = [members[i] for i in last]
            rows = rows[last]
        if received is None:
            ts = np.fromiter((b.ts for _r, b in members), dtype=np.float64, count=len(members))
        else:
            ts = np.full(len(members), received)
        table.apply_good(rows, points, np.stack([b.values for _r, b in members]), ts)
