"""What an instance of an HA pair does as it becomes the active one, and as it stops being it.

Daemon layer, between ``fleet`` (who leads) and ``app`` (what acting is).
Before the new active restores tickets from the shared store it takes over
what the other one shared: the keys of the notifications it delivered (so
the outbox never sends one again) and the silences; it gives the devices it
did not poll until now a fresh start (not offline before they had the chance
to answer, as at a daemon start). After the restore it pages again, under
the same idempotency keys, every unacknowledged ticket's current level (a
page the dead one queued but never delivered goes out; one it delivered does
not), then lets its outbox send. On demotion the outbox holds again.
docs/scale-out.md#ha-pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from monitord.alerting.mute import Silence
from monitord.alerting.tracker import PendingFile
from monitord.core.errors import StoreError
from monitord.core.model import SampleBatch
from monitord.daemon.core import Core
from monitord.daemon.fleet import FleetLink
from monitord.people.dispatch import Dispatcher
from monitord.people.notify import Outbox
from monitord.store.influx import InfluxStore
from monitord.store.shared import SharedLog

log = logging.getLogger(__name__)
T = TypeVar("T")
RuleAssets = Mapping[str, Sequence[str]]  # rule series → its assets, in the tracker's order


async def _until_done(what: str, call: Callable[[], T]) -> T:
    """Call the shared store, retrying every 2 s while it does not answer (decisions wait)."""
    told = False
    while True:
        try:
            return await asyncio.to_thread(call)
        except StoreError as exc:
            if not told:
                log.warning("cannot get %s from the shared store yet (%s); the takeover waits", what, exc)
                told = True
            await asyncio.sleep(2.0)


class Takeover:
    """The HA side of one ``Monitord``: ``begin`` before it restores, ``restored`` after, ``end`` on
    demotion. ``polled``: the assets only the active polls (Modbus, BACnet, SNMP)."""

    def __init__(
        self, core: Core, polled: Sequence[str], link: FleetLink, timers: PendingFile, rules: RuleAssets
    ) -> None:
        self.core, self.link, self.timers, self.rules = core, link, timers, rules
        # The active's pending `for` timers go to the broker (retained) as it saves them.
        timers.on_saved = link.publish_pending
        assert isinstance(core.store, InfluxStore)  # `monitord check` refuses ha on anything else
        self.shared = SharedLog(core.store)
        self.polled = set(polled)
        self.outbox: Outbox | None = None
        self.dispatcher: Dispatcher | None = None
        self.acted = False
        self.active = False
        # A standby keeps its state table current from MQTT but stores no samples: the active does.
        store = core.store

        def write_while_active(batches: Sequence[SampleBatch]) -> None:
            if self.active:
                store.write_samples(batches)

        core.bus.replace(store.write_samples, write_while_active)
        mute = core.pipeline.mute
        if mute is not None:
            mute.on_change = self._share_silence

    def _share_silence(self, silence: Silence) -> None:
        """A silence set or expired here (an API call, on the event loop): written off the loop, so a
        slow store never holds the daemon, its evaluations or its beats."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not from the daemon's loop: nothing to hold up
            self.shared.record_silence(silence)
            return
        done = loop.run_in_executor(None, self.shared.record_silence, silence)

        def told(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("silence %s not shared with the other instance: %s", silence.id, f.exception())

        done.add_done_callback(told)

    def attach(self, outbox: Outbox | None, dispatcher: Dispatcher | None) -> None:
        """The people side, once built: the outbox starts held and records what it delivers."""
        self.outbox, self.dispatcher = outbox, dispatcher
        if outbox is not None:
            outbox.record = self.shared.record_sent
            outbox.before_send = self._stored
            outbox.hold()

    def _stored(self) -> None:
        """Before a page goes out, the ticket events that caused it reach the shared store: a kill -9
        just after the page must not leave the next active without the ticket (it would open it again
        under a new number and page again). Bounded: a page never waits long for a slow store."""
        try:
            self.core.store.flush(timeout=2.0)
        except StoreError as exc:
            log.warning("paging before the ticket events are stored: %s", exc)

    async def begin(self) -> None:
        """Become able to act: what the other instance shared, and devices given their first chance."""
        pipeline = self.core.pipeline
        if self.acted:  # acted before, then stood by: what it knew is stale, the store knows better
            # What it decided itself must be in the store before it reads it back (spooled if away).
            await _until_done("its own last decisions (flush)", self.core.store.flush)
            pipeline.forget()
            log.info("taking over again: tickets and alerts are restored from the store afresh")
        self.acted = self.active = True
        pipeline.tickets_ready = False
        sent = await _until_done("sent notifications", self.shared.sent)
        silences = await _until_done("silences", self.shared.silences)
        adopted = self.outbox.adopt(sent) if self.outbox is not None else 0
        muted = pipeline.mute.adopt(silences) if pipeline.mute is not None else 0
        now = self.core.clock.now()
        if self.link.pending is not None:  # the last active's pending timers, as a restart resumes its own
            self.timers.restore_from(self.link.pending, self.core.tracker, self.rules, now, "the last active")
        for table in self.core.state.tables.values():
            rows = [i for i, a in enumerate(table.assets) if a in self.polled]
            table.last_good[rows] = np.fmax(table.last_good[rows], now)
        log.info("taking over: %d sent notifications and %d silences from the shared store", adopted, muted)

    def restored(self) -> None:
        """Tickets are restored: page what may not have gone out, then let the outbox send."""
        if self.dispatcher is not None:
            n = self.dispatcher.resend(self.core.clock.now())
            log.info("taking over: %d unacknowledged tickets paged again where not yet sent", n)
        if self.outbox is not None:
            released = self.outbox.release()
            if released:
                log.info("taking over: %d held notifications released", released)

    def end(self) -> None:
        """No longer active: store and send nothing more."""
        self.active = False
        if self.outbox is not None:
            self.outbox.hold()
