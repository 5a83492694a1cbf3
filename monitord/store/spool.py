"""On-disk spool: batches that could not be written wait here, in order.

Used by store backends when the store is down, slow or refusing writes. Each
batch is one file, written to a temporary name, fsynced and renamed, so a
kill -9 leaves either the whole batch or nothing. Files are replayed oldest
first and removed only after the store took them. The spool is bounded: past
``max_bytes`` the oldest batches are dropped. A disk that refuses a batch
(full, read-only) makes ``append`` return False and leaves nothing behind; the
backend then decides what to do with the batch. A folder that cannot be made,
or written in for any reason but a full disk, is a ``StoreError`` at once. Every line given up — dropped
at the bound, unreadable, or cut short by a crash — is counted in ``losses``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from monitord.core.errors import StoreError
from monitord.store.losses import Losses


@dataclass(frozen=True)
class SpoolName:
    """A spooled batch's file name, ``<seq>-<lines>[.<precision>].batch``.

    Its place in line, how many lines it holds, and the time precision of those lines (files
    written before the precision was part of the name hold milliseconds).
    """

    seq: int
    lines: int
    precision: str = "ms"

    SUFFIX = ".batch"

    def format(self) -> str:
        return f"{self.seq:012d}-{self.lines}.{self.precision}{self.SUFFIX}"

    @classmethod
    def parse(cls, name: str) -> SpoolName:
        seq, rest = name.split("-", 1)
        parts = rest.split(".")
        return cls(int(seq), int(parts[0]), parts[1] if len(parts) > 2 else "ms")


class Spool:
    def __init__(self, folder: Path, max_bytes: int, losses: Losses | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.losses = losses or Losses(f"spool {folder}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # at start-up, not as a first outage finds it
            raise StoreError(f"spool folder {folder}: cannot make it: {exc.strerror or exc}") from exc
        self._probe()
        for leftover in folder.glob("*.tmp"):  # a batch cut short by a crash never landed here
            with contextlib.suppress(ValueError):
                self.losses.count(
                    "crash_leftover", SpoolName.parse(leftover.name).lines, "half-written batch"
                )
            leftover.unlink()
        self._lock = threading.Lock()
        self._files = sorted(folder.glob("*" + SpoolName.SUFFIX))
        self._bytes = sum(f.stat().st_size for f in self._files)
        self._seq = SpoolName.parse(self._files[-1].name).seq + 1 if self._files else 0
        self.failing: str | None = None  # why the last append failed; None once one succeeds

    def _probe(self) -> None:
        """A folder no batch could ever be written to is a start-up error; a full disk is not (it may
        have room by the time an outage comes, and is counted and reported if not)."""
        probe = self.folder / ".writable"
        try:
            probe.touch()
            probe.unlink()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise StoreError(
                    f"spool folder {self.folder}: cannot write in it: {exc.strerror or exc}"
                ) from exc

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

    def append(self, payload: bytes, lines: int, precision: str = "ms") -> bool:
        """Spool one batch behind the others; False when the disk would not take it."""
        with self._lock:
            name = SpoolName(self._seq, lines, precision).format()
            tmp = self.folder / (name + ".tmp")
            final = self.folder / name
            try:
                with tmp.open("wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                tmp.rename(final)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()  # a partial file would only take the space a later batch needs
                self.failing = f"{exc.strerror or exc} ({self.folder})"
                return False
            self.failing = None
            self._seq += 1
            self._sync_folder()
            self._files.append(final)
            self._bytes += len(payload)
            while self._bytes > self.max_bytes and len(self._files) > 1:
                self._drop_oldest("spool_full", f"spool past {self.max_bytes} bytes; oldest batch dropped")
            return True

    def make_room(self, reason: str, detail: str) -> bool:
        """Drop the oldest batch to free disk space for a newer one; False when nothing is left to drop."""
        with self._lock:
            if not self._files:
                return False
            self._drop_oldest(reason, detail)
            return True

    def _drop_oldest(self, reason: str, detail: str) -> None:
        oldest = self._files.pop(0)
        with contextlib.suppress(OSError):
            self._bytes -= oldest.stat().st_size
            oldest.unlink()
        self.losses.count(reason, SpoolName.parse(oldest.name).lines, detail)

    def peek(self) -> tuple[Path, bytes] | None:
        """The oldest batch; an unreadable one is dropped (and counted) so it cannot block the rest."""
        while True:
            with self._lock:
                if not self._files:
                    return None
                head = self._files[0]
            try:
                return head, head.read_bytes()
            except OSError as exc:
                self.discard(head, f"cannot read {head.name}: {exc.strerror or exc}")

    def contents(self) -> list[bytes]:
        """Every waiting batch, oldest first (one popped meanwhile is left out: it reached the store)."""
        with self._lock:
            files = list(self._files)
        out = []
        for f in files:
            with contextlib.suppress(OSError):
                out.append(f.read_bytes())
        return out

    def discard(self, head: Path, detail: str) -> None:
        """Give up a batch that cannot be sent (unreadable, corrupt), counted as lost."""
        with self._lock:
            if self._files and self._files[0] == head:
                self._drop_oldest("unreadable", detail)

    def pop(self, head: Path) -> None:
        with self._lock:
            if self._files and self._files[0] == head:
                self._files.pop(0)
                with contextlib.suppress(OSError):
                    self._bytes -= head.stat().st_size
                    head.unlink()

    def _sync_folder(self) -> None:
        with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
