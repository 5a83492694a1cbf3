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
_BIG_ENDIAN_WORD = np.dtype(">u2")
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
    # The fast path (a number type, most significant word first, bytes in order, every point on the
    # same word alignment): the block viewed as big-endian values of the type, at these indices.
    typed: str | None  # the big-endian dtype of that view; None: the general path only
    base: int  # the word the view starts at (the points' alignment)
    take: slice | npt.NDArray[np.intp]  # the points' values in the view: a slice if evenly spaced
    identity: bool  # scale 1 and offset 0 everywhere


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
        # Every group on the fast path: decode without the general gather; one group of every point
        # in order (a typical block, e.g. an SDM630's float32s): written straight into the output.
        self._fast = all(g.typed is not None for g in self._groups)
        self._whole = (
            len(self._groups) == 1
            and self._fast
            and np.array_equal(self._groups[0].positions, np.arange(len(self.points)))
        )

    def _group(self, dtype: str, order: str, idx: list[int]) -> _Group:
        pts = [self.points[i] for i in idx]
        words = pts[0].words
        rel = np.array([p.address - self.start for p in pts], dtype=np.intp)
        offsets = rel[:, None] + np.arange(words, dtype=np.intp)[None, :]
        if order in ("CDAB", "DCBA"):
            offsets = offsets[:, ::-1]
        scale = np.array([p.scale for p in pts])
        offset = np.array([p.offset for p in pts])
        typed: str | None = None
        base = 0
        take: slice | npt.NDArray[np.intp] = slice(0)
        if dtype in _BIG_ENDIAN_DTYPE and order == "ABCD" and len({int(r) % words for r in rel}) == 1:
            typed, base = _BIG_ENDIAN_DTYPE[dtype], int(rel[0]) % words
            at = (rel - base) // words
            step = int(at[1] - at[0]) if len(at) > 1 else 1
            evenly = step > 0 and np.array_equal(at, at[0] + step * np.arange(len(at)))
            take = slice(int(at[0]), int(at[-1]) + 1, step) if evenly else at
        return _Group(
            dtype=dtype,
            swap_bytes=order in ("BADC", "DCBA"),
            positions=np.array(idx, dtype=np.intp),
            offsets=np.ascontiguousarray(offsets),
            scale=scale,
            offset=offset,
            bits=np.array([p.bit for p in pts], dtype=np.intp),
            typed=typed,
            base=base,
            take=take,
            identity=bool(np.all(scale == 1.0) and np.all(offset == 0.0)),
        )

    def decode(
        self,
        registers: Sequence[int] | npt.NDArray[np.generic],
        out: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Registers (or bits, for coil/discrete ranges) to engineering values, written into ``out``
        when given (shaped as the result: e.g. the poller's columns of this request).

        A matrix (one row of registers per device) decodes to a matrix of values, one row each: the
        poller decodes the replies of every device of a read plan in one go."""
        regs = np.asarray(registers)
        if regs.dtype.kind != "u" or regs.dtype.itemsize != 2:
            regs = regs.astype(np.uint16)
        if out is None:
            out = np.empty((*regs.shape[:-1], len(self.points)), dtype=np.float64)
        if self._fast and regs.shape[-1] == self.count:
            return self._decode_fast(regs, out)
        return self._decode_general(regs, out)

    def _decode_fast(self, regs: U16, out: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``_decode_general``'s result, bit for bit, in fewer numpy calls (a few µs per call, which
        is the whole cost of a one-device block): the words viewed as the type in place, the values
        taken by a slice, cast into ``out`` in one copy, the scale and offset only where not 1 and 0,
        no scatter when one group holds every point in order (tests/test_register_fast.py holds it to
        the general path over every built-in profile)."""
        if regs.dtype != _BIG_ENDIAN_WORD:
            regs = regs.astype(_BIG_ENDIAN_WORD)
        elif regs.strides[-1] != 2:  # a view as another type needs the words side by side
            regs = np.ascontiguousarray(regs)
        for g in self._groups:
            assert g.typed is not None
            words = WORDS[g.dtype]
            usable = (self.count - g.base) // words * words
            view = regs[..., g.base : g.base + usable].view(g.typed)[..., g.take]
            into = out if self._whole else np.empty((*regs.shape[:-1], len(g.positions)))
            np.copyto(into, view, casting="unsafe")
            if not g.identity:
                with np.errstate(over="ignore"):  # see _decode_general
                    into *= g.scale
                    into += g.offset
            elif g.typed[1] == "f":
                # x * 1 + 0 is x, except -0.0, which the general path turns into +0.0: so do it here.
                into += 0.0
            if not self._whole:
                out[..., g.positions] = into
        return out

    def _decode_general(self, regs: U16, out: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Any group: gather each point's words, swap as its order says, view, scale and scatter."""
        # Big-endian words (as the TCP poller hands them over, straight from the frames) are
        # gathered and viewed as their type without a conversion either way.
        lead = regs.shape[:-1]
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
            # A float64 near its largest value times a scale overflows to ±inf: an ordinary outcome
            # of a device's reply, not a fault of ours; mark_quality makes it a decode_error.
            with np.errstate(over="ignore"):
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
