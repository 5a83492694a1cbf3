"""On-disk spool: batches that could not be written wait here, in order.

Used by store backends when the store is down, slow or refusing writes. Each
batch is one file, written to a temporary name, fsynced and renamed, so a
kill -9 leaves either the whole batch or nothing. Files are replayed oldest
first and removed only after the store took them. The spool is bounded: past
``max_bytes`` the oldest batches are dropped, and the lines dropped are
counted (the metric should stay 0).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SpoolName:
    """A spooled batch's file name, ``<seq>-<lines>.batch``: its place in line and how many lines it holds."""

    seq: int
    lines: int

    SUFFIX = ".batch"

    def format(self) -> str:
        return f"{self.seq:012d}-{self.lines}{self.SUFFIX}"

    @classmethod
    def parse(cls, name: str) -> SpoolName:
        seq, rest = name.split("-", 1)
        return cls(int(seq), int(rest.split(".")[0]))


class Spool:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob("*.tmp"):  # a batch cut short by a crash never landed here
            leftover.unlink()
        self._lock = threading.Lock()
        self._files = sorted(folder.glob("*" + SpoolName.SUFFIX))
        self._bytes = sum(f.stat().st_size for f in self._files)
        self._seq = SpoolName.parse(self._files[-1].name).seq + 1 if self._files else 0
        self.dropped_lines = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    @property
    def size(self) -> int:
        """Bytes waiting."""
        with self._lock:
            return self._bytes

    def oldest_age(self) -> float:
        """Seconds since the oldest waiting batch was spooled (0 when empty)."""
        with self._lock:
            if not self._files:
                return 0.0
            try:
                return max(0.0, time.time() - self._files[0].stat().st_mtime)
            except FileNotFoundError:
                return 0.0

    def append(self, payload: bytes, lines: int) -> None:
        with self._lock:
            name = SpoolName(self._seq, lines).format()
            self._seq += 1
            tmp = self.folder / (name + ".tmp")
            with tmp.open("wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            final = self.folder / name
            tmp.rename(final)
            self._sync_folder()
            self._files.append(final)
            self._bytes += len(payload)
            while self._bytes > self.max_bytes and len(self._files) > 1:
                oldest = self._files.pop(0)
                self._bytes -= oldest.stat().st_size
                self.dropped_lines += SpoolName.parse(oldest.name).lines
                oldest.unlink()

    def peek(self) -> tuple[Path, bytes] | None:
        with self._lock:
            if not self._files:
                return None
            head = self._files[0]
        return head, head.read_bytes()

    def pop(self, head: Path) -> None:
        with self._lock:
            if self._files and self._files[0] == head:
                self._files.pop(0)
                self._bytes -= head.stat().st_size
                head.unlink()

    def _sync_folder(self) -> None:
        with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
