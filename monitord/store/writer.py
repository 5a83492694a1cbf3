"""The write path every store backend shares: callers queue, one thread writes.

``write_samples``, ``write_alerts`` and ``write_tickets`` only append to
in-memory queues, so a slow or dead store never blocks polling or alerting;
events wake the writer at once (people wait on them), samples wait for the next
round, at most ``flush_interval`` away. Each round the writer thread takes
everything queued and hands it to the backend's ``_write_round``. A round that
fails with one of the backend's ``retry_on`` errors goes back to the front of
the queues, in order, for the next round. ``flush`` waits until everything
queued was written; ``close`` writes what is left and stops the thread.

A backend subclasses ``QueuedWriter`` and supplies ``_open`` and ``_shut`` (its
connection, in the writer thread), ``_write_round`` and, when it has work to do
between rounds (draining a spool), ``idle_every`` and ``_idle``.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from monitord.alerting.tracker import AlertEvent
from monitord.core.errors import StoreError
from monitord.core.model import SampleBatch
from monitord.tickets.desk import TicketEvent

log = logging.getLogger(__name__)


class QueuedWriter(ABC):
    #: errors after which a round is queued again instead of ending the writer thread
    retry_on: ClassVar[tuple[type[Exception], ...]] = ()
    #: when set, the writer wakes this often between rounds and calls ``_idle``
    idle_every: ClassVar[float | None] = None
    #: how long ``close`` waits for the last round
    close_timeout: ClassVar[float] = 30.0

    def __init__(self, label: str, thread_name: str, flush_interval: float, *, start: bool) -> None:
        """``label`` names the store in errors; ``start=False`` for readers, which need no thread."""
        self._label = label
        self.flush_interval = flush_interval
        self._lock = threading.Condition()
        self._samples: list[SampleBatch] = []
        self._alerts: list[AlertEvent] = []
        self._tickets: list[TicketEvent] = []
        self._busy = False  # a round is being written
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        if start:
            self._thread.start()

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
        with self._lock:
            self._samples.extend(batches)

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
            return sum(len(b) for b in self._samples)

    # -- the writer thread ---------------------------------------------------
    def _run(self) -> None:
        self._open()
        try:
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
                        self._busy = True
                if not due:
                    self._idle()
                    continue
                next_round = time.monotonic() + self.flush_interval
                try:
                    self._write_round(samples, alerts, tickets)
                except self.retry_on as exc:
                    # Put everything back in order and retry on the next round.
                    log.error("%s: write failed: %s", self._label, exc)
                    with self._lock:
                        self._samples[:0], self._alerts[:0], self._tickets[:0] = samples, alerts, tickets
                finally:
                    with self._lock:
                        self._busy = False
                        self._lock.notify_all()
                if closing:
                    return
        finally:
            self._shut()
