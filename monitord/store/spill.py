"""What a store backend could not write now: the spool on disk, else memory, written back oldest first.

Store layer, shared by the InfluxDB and SQLite backends and used only from their
writer thread. A backend hands over a batch it could not write (``keep``) as the
bytes it would spool and a ``send`` that writes such bytes to the store; each
round it first calls ``drain``, and while anything waits new batches go behind
it, so the store gets everything in the order it was made. When the disk refuses
the spool (full, read-only) a batch goes straight to the store if it answers;
if neither takes it, the oldest spooled batch makes room, and past that batches
wait in memory up to ``held_max_bytes`` (oldest dropped). Every loss is counted
in the spool's ``losses``; what was spilled is counted in
``monitord_store_spooled_total``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from monitord.core.metrics import Metrics
from monitord.store.spool import Spool, SpoolName


class CorruptBatch(Exception):
    """A waiting batch that can never be written (it does not decode): given up, counted."""


#: write one waiting batch (payload, lines, precision) to the store; True when it took it (or refused it
#: for good, which the backend counts); raises ``CorruptBatch`` for bytes that do not decode
Send = Callable[[bytes, int, str], bool]


class Spill:
    #: spooled batches dropped at most to make room for one newer batch on a full disk
    make_room_tries = 3

    def __init__(self, spool: Spool, held_max_bytes: int) -> None:
        self.spool = spool
        self.losses = spool.losses
        self.held_max_bytes = held_max_bytes
        self.metrics: Metrics | None = None
        # batches neither the store nor the disk would take, oldest first: (payload, lines, precision)
        self._held: collections.deque[tuple[bytes, int, str]] = collections.deque()
        self._held_bytes = 0
        self.disk_full: str | None = None  # why the spool last refused a batch, until nothing needs it
        self._store_took = True  # the last send's outcome

    @property
    def waiting(self) -> bool:
        """Something waits for the store: a new batch must go behind it."""
        return bool(len(self.spool) or self._held)

    def keep(self, payload: bytes, lines: int, precision: str, send: Send, *, sent: bool) -> None:
        """Spool a batch the store did not take (``sent``: it was just tried); on a full disk, send
        it, make room, or hold it."""
        if self.spool.append(payload, lines, precision):
            self.disk_full = None
            self._spilled(lines)
            return
        self.disk_full = self.spool.failing
        if not sent and self._send(send, payload, lines, precision):
            return  # the disk is full but the store answers: keep writing to it
        for _ in range(self.make_room_tries):
            detail = f"disk full ({self.spool.failing}) and store down: oldest spooled batch dropped"
            if not self.spool.make_room("disk_full", detail):
                break
            if self.spool.append(payload, lines, precision):
                self._spilled(lines)
                return
        self._held.append((payload, lines, precision))
        self._held_bytes += len(payload)
        self._spilled(lines)
        while self._held_bytes > self.held_max_bytes and len(self._held) > 1:
            old, n, _precision = self._held.popleft()
            self._held_bytes -= len(old)
            self.losses.count("disk_full", n, "disk full, store down and memory bound reached")

    def drain(self, send: Send) -> bool:
        """Write what waits, oldest first, until the store stops taking it; True when nothing waits."""
        while (head := self.spool.peek()) is not None:
            path, payload = head
            name = SpoolName.parse(path.name)
            try:
                if not self._send(send, payload, name.lines, name.precision):
                    self.report()
                    return False
            except CorruptBatch as exc:
                self.spool.discard(path, f"corrupt spool file {path.name}: {exc}")
                continue
            self.spool.pop(path)
        while self._held:
            payload, lines, precision = self._held[0]
            if not self._send(send, payload, lines, precision):
                self.report()
                return False
            self._held.popleft()
            self._held_bytes -= len(payload)
        if self._store_took:
            self.disk_full = None  # the store takes writes and nothing waits: the disk is not needed
        self.report()
        return True

    def _spilled(self, lines: int) -> None:
        if self.metrics is not None:
            self.metrics.store_spooled.inc(lines)
        self.report()

    def _send(self, send: Send, payload: bytes, lines: int, precision: str) -> bool:
        self._store_took = send(payload, lines, precision)
        return self._store_took

    def health(self, label: str) -> list[str]:
        problems = []
        if self.disk_full is not None:
            problems.append(f"{label}: cannot spool: {self.disk_full}")
        if self._held:
            problems.append(f"{label}: {len(self._held)} batches held in memory (disk full)")
        return problems

    def report(self) -> None:
        if self.metrics is not None:
            self.metrics.spool_bytes.set(self.spool.size)
            self.metrics.spool_oldest_age.set(self.spool.oldest_age())

    def shut(self) -> None:
        """At exit: what only memory held is lost (the spool stays for the next start)."""
        held = sum(n for _b, n, _p in self._held)
        self.losses.count("shutdown", held, "held in memory (disk full) at exit")
        self._held.clear()
        self._held_bytes = 0
