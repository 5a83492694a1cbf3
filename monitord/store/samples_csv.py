"""Samples as CSV, for exchange and for replay: ``ts,asset,point,value,quality``.

One row per sample; ``value`` is empty when the read failed, ``quality`` is
the label (``good``, ``comm_error``, ...). Times and values are written with
``repr`` so an export read back is bit-for-bit the same. Rows of one asset with
one timestamp form one batch again on import.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from monitord.core.model import Frame, Quality, SampleBatch

HEADER = ["ts", "asset", "point", "value", "quality"]
_QUALITY = {q.label: int(q) for q in Quality}


def write_csv(batches: Iterable[SampleBatch], path: Path) -> int:
    """Write every sample; returns the number of rows."""
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for b in batches:
            ts = repr(b.ts)
            for point, value, quality in zip(b.points, b.values.tolist(), b.quality.tolist(), strict=True):
                out.writerow(
                    [ts, b.asset, point, "" if math.isnan(value) else repr(value), Quality(quality).label]
                )
                rows += 1
    return rows


def read_csv(path: Path, frame_rows: int = 1000) -> Iterator[Frame]:
    """Frames back from a CSV export: consecutive batches of one read plan, in file order."""
    group: list[SampleBatch] = []
    for batch in read_batches(path):
        if group and (batch.points != group[0].points or len(group) >= frame_rows):
            yield Frame.of(group)
            group = []
        group.append(batch)
    if group:
        yield Frame.of(group)


def read_batches(path: Path) -> Iterator[SampleBatch]:
    """Batches back from a CSV export, in file order."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER:
            raise ValueError(f"{path}: expected the header {','.join(HEADER)}, got {header}")
        key: tuple[str, str] | None = None
        points: list[str] = []
        values: list[float] = []
        quality: list[int] = []
        for line, row in enumerate(reader, start=2):
            if len(row) != 5:
                raise ValueError(f"{path}:{line}: expected 5 columns, got {len(row)}")
            ts, asset, point, value, label = row
            if (ts, asset) != key:
                if key is not None:
                    yield _pack(key, points, values, quality)
                key, points, values, quality = (ts, asset), [], [], []
            if label not in _QUALITY:
                raise ValueError(f"{path}:{line}: unknown quality {label!r}")
            points.append(point)
            values.append(float(value) if value else math.nan)
            quality.append(_QUALITY[label])
        if key is not None:
            yield _pack(key, points, values, quality)


def _pack(key: tuple[str, str], points: list[str], values: list[float], quality: list[int]) -> SampleBatch:
    return SampleBatch(
        float(key[0]),
        key[1],
        tuple(points),
        np.array(values, dtype=np.float64),
        np.array(quality, dtype=np.int8),
    )
