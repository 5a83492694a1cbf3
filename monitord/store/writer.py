"""The write path every store backend shares: callers queue, one thread writes.

``write_samples``, ``write_alerts`` and ``write_tickets`` only append to
in-memory queues, so a slow or dead store never blocks polling or alerting;
events wake the writer at once (people wait on them), samples wait for the next
round, at most ``flush_interval`` away. Each round the writer thread takes
everything queued and hands it to the backend's ``_write_round``. A round that
fails with one of the backend's ``retry_on`` errors goes back to the front of
the queues, in order, for the next round; any other error is isolated (events
and samples are tried apart, samples that still fail are dropped and counted),
so one bad round never ends the writer. What the writer gives up is counted in
``losses`` (``monitord_store_points_dropped_total{reason}``): batches without a
finite time (``bad_time``), the oldest samples past ``max_queued`` points while
the store is unwritable (``queue_full``), samples the backend cannot write
(``unwritable``) and what is still queued when ``close`` gives up
(``shutdown``). ``health`` names what is wrong now (for ``/healthz``).
``flush`` waits until everything queued was written; ``close`` writes what is
left and stops the thread.

A backend subclasses ``QueuedWriter`` and supplies ``_open`` and ``_shut`` (its
connection, in the writer thread), ``_write_round`` and, when it has work to do
between rounds (draining a spool), ``idle_every`` and ``_idle``. A backend that
spools what the store does not take (``spill.Spill``) makes it with ``_spill_to``:
its metrics, health and exit are then looked after here.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from operator import attrgetter
from typing import ClassVar

from monitord.alerting.tracker import AlertEvent
from monitord.core.errors import StoreError
from monitord.core.metrics import Metrics
from monitord.core.model import SampleBatch, SampleBlock
from monitord.store.losses import Losses
from monitord.store.spill import Spill
from monitord.store.spool import Spool
from monitord.tickets.desk import TicketEvent

log = logging.getLogger(__name__)

_ts_of = attrgetter("ts")


class QueuedWriter(ABC):
    #: errors after which a round is queued again instead of ending the writer thread
    retry_on: ClassVar[tuple[type[Exception], ...]] = ()
    #: when set, the writer wakes this often between rounds and calls ``_idle``
    idle_every: ClassVar[float | None] = None
    #: how long ``close`` waits for the last round
    close_timeout: ClassVar[float] = 30.0
    #: samples (points) kept in memory while the store cannot be written; past it the oldest go
    max_queued: ClassVar[int] = 5_000_000
    #: seconds between two log lines about the same failing write
    error_log_every: ClassVar[float] = 60.0
    #: bytes of spilled batches held in memory when neither the store nor the spool's disk takes them
    held_max_bytes: ClassVar[int] = 64 * 2**20

    def __init__(
        self,
        label: str,
        thread_name: str,
        flush_interval: float,
        *,
        start: bool,
        metrics: Metrics | None = None,
    ) -> None:
        """``label`` names the store in errors; ``start=False`` for readers, which need no thread."""
        self._label = label
        self.flush_interval = flush_interval
        self.losses = Losses(label)
        self.metrics: Metrics | None = None
        self._spilling: Spill | None = None
        if metrics is not None:
            self.attach_metrics(metrics)
        self._lock = threading.Condition()
        self._samples: list[SampleBatch] = []
        self._queued_points = 0
        self._alerts: list[AlertEvent] = []
        self._tickets: list[TicketEvent] = []
        self._busy = False  # a round is being written
        self._closing = False
        self._failing: str | None = None  # why the last round failed; None once one succeeds
        self._dead: str | None = None  # the writer thread ended without being closed
        self._last_error: tuple[str, float] = ("", -math.inf)
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        if start:
            self._thread.start()

    def attach_metrics(self, metrics: Metrics) -> None:
        """Report into the daemon's metrics (losses so far included)."""
        self.metrics = metrics
        self.losses.attach(metrics)
        if self._spilling is not None:
            self._spilling.metrics = metrics

    def _spill_to(self, spool: Spool) -> Spill:
        """What this backend cannot write now goes to ``spool`` (its losses are this writer's)."""
        spill = self._spilling = Spill(spool, self.held_max_bytes)
        spill.metrics = self.metrics
        return spill

    def health(self) -> list[str]:
        """What is wrong with storing right now, for people; empty when all is well."""
        problems = []
        if self._dead is not None:
            problems.append(f"{self._label}: writer stopped: {self._dead}")
        elif self._thread.ident is not None and not self._thread.is_alive() and not self._closing:
            problems.append(f"{self._label}: writer stopped")
        if self._failing is not None:
            problems.append(f"{self._label}: writes failing: {self._failing}")
        if self._spilling is not None:
            problems += self._spilling.health(self._label)
        return problems

    # -- the backend's part (writer thread) ----------------------------------
    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _write_round(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None: ...

    def _idle(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        pass

    @abstractmethod
    def _shut(self) -> None: ...

    # -- writes (any thread) -------------------------------------------------
    def write_samples(self, batches: Sequence[SampleBatch]) -> None:
        if type(batches) is SampleBlock and all(map(math.isfinite, map(_ts_of, batches))):
            # Rows of one matrix (a gateway's flood): times checked in C, points counted per block.
            self._queue_samples(batches, len(batches) * len(batches.points))
            return
        # A batch of no point (a keep-alive of a device that reports changes) is contact, not data.
        kept = [b for b in batches if b.points]
        good = [b for b in kept if math.isfinite(b.ts)]
        if len(good) < len(kept):  # a frame has one time per row: a NaN would poison the whole round
            bad = [b for b in kept if not math.isfinite(b.ts)]
            self.losses.count("bad_time", sum(len(b) for b in bad), f"a sample of {bad[0].asset} has no time")
        self._queue_samples(good, sum(len(b) for b in good))

    def _queue_samples(self, batches: Sequence[SampleBatch], points: int) -> None:
        with self._lock:
            self._samples.extend(batches)
            self._queued_points += points
            self._bound_queue()

    def _bound_queue(self) -> None:
        """Drop the oldest queued samples past ``max_queued`` points (lock held)."""
        if self._queued_points <= self.max_queued:
            return
        cut, dropped = 0, 0
        while self._queued_points - dropped > self.max_queued and cut < len(self._samples):
            dropped += len(self._samples[cut])
            cut += 1
        del self._samples[:cut]
        self._queued_points -= dropped
        self.losses.count("queue_full", dropped, f"{self.max_queued} points waiting for the store")

    def write_alerts(self, events: Sequence[AlertEvent]) -> None:
        with self._lock:
            self._alerts.extend(events)
            self._lock.notify()

    def write_tickets(self, events: Sequence[TicketEvent]) -> None:
        with self._lock:
            self._tickets.extend(events)
            self._lock.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued was written (or, for a spooling backend, spooled)."""
        with self._lock:
            self._lock.notify()
            done = self._lock.wait_for(
                lambda: not (self._samples or self._alerts or self._tickets or self._busy), timeout
            )
        if not done:
            raise StoreError(f"{self._label}: flush did not finish in {timeout}s")

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=self.close_timeout)

    @property
    def queued(self) -> int:
        """Samples waiting for the writer."""
        with self._lock:
            return self._queued_points

    # -- the writer thread ---------------------------------------------------
    def _run(self) -> None:
        try:
            self._open()
            self._rounds()
        except BaseException as exc:  # say so in /healthz instead of dying silently
            self._dead = f"{type(exc).__name__}: {exc}"
            log.exception("%s: writer stopped", self._label)
            raise
        finally:
            with self._lock:
                left = self._queued_points
                self._samples, self._queued_points = [], 0
                self._busy = False
                self._lock.notify_all()
            self.losses.count("shutdown", left, "still queued when the writer stopped")
            if self._spilling is not None:
                self._spilling.shut()
            self._shut()

    def _rounds(self) -> None:
        next_round = time.monotonic()
        while True:
            with self._lock:
                wait = max(0.0, next_round - time.monotonic())
                if self.idle_every is not None:
                    wait = min(wait, self.idle_every)
                self._lock.wait_for(lambda: self._closing or bool(self._alerts or self._tickets), wait)
                closing = self._closing
                due = closing or bool(self._alerts or self._tickets) or time.monotonic() >= next_round
                if due:
                    samples, alerts, tickets = self._samples, self._alerts, self._tickets
                    self._samples, self._alerts, self._tickets = [], [], []
                    self._queued_points = 0
                    self._busy = True
            if not due:
                self._idle()
                continue
            next_round = time.monotonic() + self.flush_interval
            try:
                self._write_safely(samples, alerts, tickets)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()
            if closing:
                return

    def _write_safely(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None:
        try:
            self._write_round(samples, alerts, tickets)
        except self.retry_on as exc:
            self._fail(exc)
            self._requeue(samples, alerts, tickets)  # in order, for the next round
            return
        except Exception as exc:  # not the store being away: something in this round
            self._fail(exc)
            self._isolate(samples, alerts, tickets)
            return
        self._failing = None

    def _isolate(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None:
        """A round failed for a reason retrying will not cure: try events and samples apart."""
        if alerts or tickets:
            try:
                self._write_round([], alerts, tickets)
            except Exception as exc:  # events are kept and retried, never dropped
                self._fail(exc)
                self._requeue([], alerts, tickets)
        if samples:
            try:
                self._write_round(samples, [], [])
            except Exception as exc:
                self._fail(exc)
                self.losses.count("unwritable", sum(len(b) for b in samples), f"write failed: {exc}")

    def _requeue(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None:
        with self._lock:
            self._samples[:0], self._alerts[:0], self._tickets[:0] = samples, alerts, tickets
            self._queued_points += sum(len(b) for b in samples)
            self._bound_queue()

    def _fail(self, exc: Exception) -> None:
        """Remember why writes fail; log it once a minute, not once a round."""
        self._failing = self._log_failure(exc)

    def _log_failure(self, exc: Exception) -> str:
        """Log a failed write once a minute, not once a round (a spooled one too); its message."""
        message = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if message != self._last_error[0] or now - self._last_error[1] >= self.error_log_every:
            self._last_error = (message, now)
            log.error(
                "%s: write failed: %s (retrying; logged again in %.0fs if it goes on)",
                self._label,
                message,
                self.error_log_every,
            )
        return message
