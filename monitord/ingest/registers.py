"""Modbus register codec shared by the Modbus driver and the device simulator.

The driver decodes the registers of one read request into engineering values;
the simulator encodes model values into the same registers. Both use one
``RegisterCodec`` built once per request plan, which groups points by data type
and byte/word order so that decoding a block is a few numpy operations, never a
Python loop per point.

Orders follow the usual field names: ``ABCD`` big-endian, ``CDAB`` word swap,
``BADC`` byte swap inside each word, ``DCBA`` both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

DataType = Literal[
    "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64", "bool", "bitfield"
]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
RegisterKind = Literal["holding", "input", "coil", "discrete"]

WORDS: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "bool": 1,
    "bitfield": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
_BIG_ENDIAN_DTYPE: dict[str, str] = {
    "int16": ">i2",
    "uint16": ">u2",
    "int32": ">i4",
    "uint32": ">u4",
    "float32": ">f4",
    "int64": ">i8",
    "uint64": ">u8",
    "float64": ">f8",
}
BIT_KINDS = ("coil", "discrete")
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True, slots=True)
class PointEncoding:
    """Where a point lives and how it is encoded; read from a device profile."""

    name: str
    kind: RegisterKind
    address: int
    dtype: DataType = "uint16"
    order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    bit: int = 0

    @property
    def words(self) -> int:
        return 1 if self.kind in BIT_KINDS else WORDS[self.dtype]


@dataclass(frozen=True, slots=True)
class _Group:
    """Points sharing data type and order: decoded together by fancy indexing."""

    dtype: str
    swap_bytes: bool
    positions: npt.NDArray[np.intp]  # index of each point in the codec's output
    offsets: npt.NDArray[np.intp]  # (n, words) register offsets, most significant first
    scale: npt.NDArray[np.float64]
    offset: npt.NDArray[np.float64]
    bits: npt.NDArray[np.intp]


def _swap(words: U16) -> U16:
    return ((words >> 8) | (words << 8)).astype(np.uint16)


class RegisterCodec:
    """Decodes and encodes the points of one contiguous register range."""

    def __init__(self, start: int, count: int, points: Sequence[PointEncoding]) -> None:
        self.start = start
        self.count = count
        self.points = tuple(points)
        self.names = tuple(p.name for p in points)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, p in enumerate(self.points):
            if not (start <= p.address and p.address + p.words <= start + count):
                raise ValueError(f"point {p.name} at {p.address} outside {start}+{count}")
            key = ("bit", "ABCD") if p.kind in BIT_KINDS else (p.dtype, p.order)
            groups.setdefault(key, []).append(i)
        self._groups = [self._group(dtype, order, idx) for (dtype, order), idx in groups.items()]

    def _group(self, dtype: str, order: str, idx: list[int]) -> _Group:
        pts = [self.points[i] for i in idx]
        words = pts[0].words
        rel = np.array([p.address - self.start for p in pts], dtype=np.intp)
        offsets = rel[:, None] + np.arange(words, dtype=np.intp)[None, :]
        if order in ("CDAB", "DCBA"):
            offsets = offsets[:, ::-1]
        return _Group(
            dtype=dtype,
            swap_bytes=order in ("BADC", "DCBA"),
            positions=np.array(idx, dtype=np.intp),
            offsets=np.ascontiguousarray(offsets),
            scale=np.array([p.scale for p in pts]),
            offset=np.array([p.offset for p in pts]),
            bits=np.array([p.bit for p in pts], dtype=np.intp),
        )

    def decode(self, registers: Sequence[int] | npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
        """Registers (or bits, for coil/discrete ranges) to engineering values.

        A matrix (one row of registers per device) decodes to a matrix of values, one row each: the
        poller decodes the replies of every device of a read plan in one go."""
        regs = np.asarray(registers)
        if regs.dtype.kind != "u" or regs.dtype.itemsize != 2:
            regs = regs.astype(np.uint16)
        # Big-endian words (as the TCP poller hands them over, straight from the frames) are
        # gathered and viewed as their type without a conversion either way.
        lead = regs.shape[:-1]
        out = np.empty((*lead, len(self.points)), dtype=np.float64)
        for g in self._groups:
            words = regs[..., g.offsets]
            if g.dtype == "bit":
                raw = (words[..., 0] != 0).astype(np.float64)
            elif g.dtype == "bool":
                raw = ((_swap(words[..., 0]) if g.swap_bytes else words[..., 0]) != 0).astype(np.float64)
            elif g.dtype == "bitfield":
                w = _swap(words[..., 0]) if g.swap_bytes else words[..., 0]
                raw = ((w >> g.bits) & 1).astype(np.float64)
            else:
                if g.swap_bytes:
                    words = _swap(words)
                raw = (
                    np.ascontiguousarray(words.astype(">u2", copy=False))
                    .view(_BIG_ENDIAN_DTYPE[g.dtype])
                    .reshape(*lead, -1)
                    .astype(np.float64)
                )
            out[..., g.positions] = raw * g.scale + g.offset
        return out

    def encode(self, values: Sequence[float] | npt.NDArray[np.float64], into: U16 | None = None) -> U16:
        """Engineering values to registers: the inverse of ``decode``.

        Integers are rounded and clipped to their type's range, as a device
        would. Bitfield points set or clear their bit in the shared register.
        """
        vals = np.asarray(values, dtype=np.float64)
        regs = np.zeros(self.count, dtype=np.uint16) if into is None else into
        for g in self._groups:
            raw = (vals[g.positions] - g.offset) / g.scale
            if g.dtype in ("bit", "bool"):
                words = (raw != 0).astype(np.uint16)[:, None]
            elif g.dtype == "bitfield":
                reg_idx = g.offsets[:, 0]
                current = _swap(regs[reg_idx]) if g.swap_bytes else regs[reg_idx].copy()
                for k in range(len(reg_idx)):  # bits may share a register: apply in turn
                    mask = np.uint16(1 << int(g.bits[k]))
                    current[k] = (current[k] | mask) if raw[k] != 0 else (current[k] & ~mask)
                    current[k + 1 :][reg_idx[k + 1 :] == reg_idx[k]] = current[k]
                regs[reg_idx] = _swap(current) if g.swap_bytes else current
                continue
            else:
                dt = np.dtype(_BIG_ENDIAN_DTYPE[g.dtype])
                if dt.kind in "iu":
                    info = np.iinfo(dt)
                    raw = np.clip(np.rint(raw), float(info.min), float(info.max))
                    typed = np.array([int(x) for x in raw], dtype=dt) if dt.itemsize == 8 else raw.astype(dt)
                else:
                    typed = raw.astype(dt)
                words = np.ascontiguousarray(typed).view(">u2").reshape(len(raw), -1).astype(np.uint16)
                if g.swap_bytes:
                    words = _swap(words)
            regs[g.offsets] = words
        return regs


# ASCII strings (device facts: serial number, model, firmware) are not samples: samples are floats.
# They are decoded on their own, N registers at a time, two characters per register.
StringOrder = Literal["ABCD", "BADC"]  # ABCD: first character in the high byte (most devices); BADC: swapped


def decode_ascii(registers: Sequence[int] | npt.NDArray[np.generic], order: StringOrder = "ABCD") -> str:
    """Registers to text; trailing NULs and spaces are padding. Raises ``ValueError`` on a byte that
    is not printable ASCII (or a NUL inside the text): a wrong register map, never a string to show."""
    words = np.asarray(registers, dtype=np.uint16)
    if order == "BADC":
        words = _swap(words)
    raw = words.astype(">u2").tobytes().rstrip(b"\x00 ")
    bad = [b for b in raw if not 0x20 <= b <= 0x7E]
    if bad:
        raise ValueError(f"not printable ASCII: byte 0x{bad[0]:02x} in {raw!r}")
    return raw.decode("ascii")


def encode_ascii(text: str, count: int, order: StringOrder = "ABCD") -> U16:
    """Text to ``count`` registers, NUL-padded: the inverse of ``decode_ascii``."""
    raw = text.encode("ascii")
    if len(raw) > 2 * count:
        raise ValueError(f"{text!r} needs {(len(raw) + 1) // 2} registers, has {count}")
    words = np.frombuffer(raw.ljust(2 * count, b"\x00"), dtype=">u2").astype(np.uint16)
    return _swap(words) if order == "BADC" else words
