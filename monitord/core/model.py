"""The data that flows through the pipeline: samples in batches, with quality.

Drivers produce ``SampleBatch`` objects (one device read = one batch, values
and qualities as numpy arrays), the ``SampleBus`` hands them to the state table
and the store. Quality is part of the data: a failed read is never a value.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
QualityArray = npt.NDArray[np.int8]


class Quality(enum.IntEnum):
    GOOD = 0
    STALE = 1
    COMM_ERROR = 2
    DECODE_ERROR = 3
    OUT_OF_RANGE = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Values of several points of one asset taken at one instant.

    ``points`` is shared between all batches of the same read plan, so
    consumers can cache column lookups by the tuple's identity.
    """

    ts: float
    asset: str
    points: tuple[str, ...]
    values: FloatArray
    quality: QualityArray

    @classmethod
    def failed(cls, ts: float, asset: str, points: tuple[str, ...], quality: Quality) -> SampleBatch:
        """A batch that says the read failed: NaN values, every point marked."""
        n = len(points)
        return cls(
            ts,
            asset,
            points,
            np.full(n, math.nan),
            np.full(n, int(quality), dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True, slots=True)
class Frame:
    """Many batches of one read plan (same points), as matrices: rows are batches.

    How the store keeps samples and how replay reads them: a frame moves the
    samples of every device with one profile over one flush interval at once,
    so a day of data is stored and replayed without per-sample work.
    Rows are in time order.
    """

    points: tuple[str, ...]
    assets: npt.NDArray[np.object_]  # (rows,) asset ids; an array so that row slices are views
    ts: FloatArray  # (rows,)
    values: npt.NDArray[np.float64]  # (rows, points)
    quality: npt.NDArray[np.int8]  # (rows, points)

    @classmethod
    def of(cls, batches: Sequence[SampleBatch]) -> Frame:
        """Batches that share their points tuple, in any order."""
        ordered = sorted(batches, key=lambda b: b.ts)
        return cls(
            ordered[0].points,
            np.array([b.asset for b in ordered], dtype=object),
            np.array([b.ts for b in ordered], dtype=np.float64),
            np.stack([b.values for b in ordered]).astype(np.float64, copy=False),
            np.stack([b.quality for b in ordered]).astype(np.int8, copy=False),
        )

    def __len__(self) -> int:
        return len(self.assets)

    def batches(self) -> Iterator[SampleBatch]:
        for i, asset in enumerate(self.assets.tolist()):
            yield SampleBatch(float(self.ts[i]), asset, self.points, self.values[i], self.quality[i])

    def split(self, before: float) -> tuple[Frame | None, Frame | None]:
        """The rows older than ``before``, and the rest."""
        k = int(np.searchsorted(self.ts, before, side="left"))
        if k == 0:
            return None, self
        if k == len(self):
            return self, None
        return self._rows(slice(0, k)), self._rows(slice(k, None))

    def within(self, since: float | None, until: float | None) -> Frame | None:
        """The rows in [``since``, ``until``) (None: open at that end), or None when none is."""
        part: Frame | None = self if since is None else self.split(since)[1]
        if part is not None and until is not None:
            part = part.split(until)[0]
        return part

    def _rows(self, rows: slice) -> Frame:
        return Frame(self.points, self.assets[rows], self.ts[rows], self.values[rows], self.quality[rows])


def in_time_order(frames: Iterable[Frame], asset: str | None = None) -> Iterator[SampleBatch]:
    """The batches of frames that come in order of their first row, in time order (optionally one
    asset's): frames of one flush or window overlap in time, so a small heap merges them."""
    waiting: list[tuple[float, int, SampleBatch]] = []
    n = 0
    for frame in frames:
        start = float(frame.ts[0])
        while waiting and waiting[0][0] < start:  # later frames start later: these are final
            yield heapq.heappop(waiting)[2]
        for b in frame.batches():
            if asset in (None, b.asset):
                heapq.heappush(waiting, (b.ts, n, b))
                n += 1
    while waiting:
        yield heapq.heappop(waiting)[2]


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A device went offline or came back; drivers emit it once per change.

    ``said``: the device itself (its status topic, last will or gateway) said so, and the state
    table takes its word (offline at once; online while silent) until a change that is not said
    (the driver lost the broker) hands the verdict back to silence. A driver's own verdict on one
    read (``said=False``, Modbus) is logged and counted, never taken as the device's state.
    """

    ts: float
    asset: str
    online: bool
    reason: str
    said: bool = False


def batches_of(
    stamps: Iterable[float],
    assets: Iterable[str],
    points: tuple[str, ...],
    values: Iterable[FloatArray],
    quality: Iterable[QualityArray],
) -> list[SampleBatch]:
    """``SampleBatch(ts, asset, points, values, quality)`` for each row, made without the frozen
    dataclass's ``__init__``, which sets each field through ``object.__setattr__`` (0.63 µs a batch
    against 0.35, timeit; a worker's chunk of gateway rows is ~190 batches): the same class, the same
    fields (``tests/test_sample_block.py`` holds it to the ``__init__``)."""
    return list(map(_batch, stamps, assets, itertools.repeat(points), values, quality))


_new = object.__new__
_set_ts, _set_asset, _set_points, _set_values, _set_quality = (
    getattr(SampleBatch, name).__set__ for name in ("ts", "asset", "points", "values", "quality")
)


def _batch(
    ts: float, asset: str, points: tuple[str, ...], values: FloatArray, quality: QualityArray
) -> SampleBatch:
    batch: SampleBatch = _new(SampleBatch)
    _set_ts(batch, ts)
    _set_asset(batch, asset)
    _set_points(batch, points)
    _set_values(batch, values)
    _set_quality(batch, quality)
    return batch


class SampleBlock(list[SampleBatch]):
    """Batches of one point list, every quality good, whose values are the rows of ``values``
    (rows × points; batch i's ``values`` is row i): still a list of batches to any sink."""

    def __init__(self, batches: list[SampleBatch], points: tuple[str, ...], values: npt.NDArray[np.float64]):
        super().__init__(batches)
        self.points = points
        self.values = values
