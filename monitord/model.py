"""The data that flows through the pipeline: samples in batches, with quality.

Drivers produce ``SampleBatch`` objects (one device read = one batch, values
and qualities as numpy arrays), the ``SampleBus`` hands them to the state table
and the store. Quality is part of the data: a failed read is never a value.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import NamedTuple

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


class RawBatch(NamedTuple):
    """A batch with values and qualities still packed as bytes (little-endian float64, int8).

    How the store keeps samples and replay reads them: unpacking is left to
    whoever needs arrays, so a day of data moves without per-sample work.
    """

    ts: float
    asset: str
    points: tuple[str, ...]
    values: bytes
    quality: bytes

    @staticmethod
    def pack(batch: SampleBatch) -> tuple[bytes, bytes]:
        return batch.values.astype("<f8").tobytes(), batch.quality.astype(np.int8).tobytes()

    def unpack(self) -> SampleBatch:
        return SampleBatch(
            self.ts,
            self.asset,
            self.points,
            np.frombuffer(self.values, dtype="<f8").astype(np.float64),
            np.frombuffer(self.quality, dtype=np.int8).copy(),
        )


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A device went offline or came back; drivers emit it once per change."""

    ts: float
    asset: str
    online: bool
    reason: str
