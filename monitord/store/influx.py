"""InfluxDB backend: line protocol through influxdb-client, InfluxQL for reads.

Writes go through influxdb-client's async client to ``/api/v2/write`` (which
InfluxDB 1.8+, 2.x and 3.x accept), gzip on, in batches of at most 5,000
lines, at least once per ``flush_interval``. The writer runs in its own thread
(``writer.QueuedWriter``) with its own event loop, so a slow or dead store
never blocks polling or alerting. What cannot be written waits in an on-disk
``Spool`` and is sent, oldest first, before anything newer once the store
answers again; a batch the store rejects as malformed (HTTP 400) is logged with
the reason, counted as lost and not retried. When the disk refuses the spool
(full, read-only) a batch goes straight to the store if it answers; if neither
takes it, the oldest spooled batch makes room, and past that batches wait in
memory up to ``held_max_bytes`` (oldest dropped): every loss is counted in
``losses`` and ``health`` reports the store unhealthy. Timestamps are in
microseconds, so two samples of one asset within a millisecond are two points;
two in one microsecond are counted as a collision. Reads use InfluxQL on
``/query``; samples come back in time windows as frames (``influx_frames``), a point that was not
good as not good.

Schema (docs/storage.md#influxdb): one measurement per asset type with tags ``site,
building, asset`` and one float field per good point (``bad_points`` counts the
rest); ``alert`` and ``ticket`` measurements for events (tagged ``site`` and,
where the asset has one, ``building``), keyed so that the same event written
twice lands once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gzip
import hashlib
import itertools
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from monitord.alerting.tracker import AlertEvent
from monitord.core.errors import StoreError
from monitord.core.metrics import Metrics
from monitord.core.model import Frame, Quality, SampleBatch, in_time_order
from monitord.people.audit import AuditEvent
from monitord.store.influx_frames import series_frames
from monitord.store.spill import CorruptBatch
from monitord.store.spool import Spool
from monitord.store.writer import QueuedWriter
from monitord.tickets.desk import TicketEvent

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH_LINES = 5000
#: Replay and export read samples in windows of this many seconds: bounded memory and answers.
READ_WINDOW = 300.0
PRECISION = "us"  # of every line written; spool files name their own (older ones hold "ms")
_SCALE = {"ms": 1e3, "us": 1e6}


def _stamp(ts: float) -> int:
    return round(ts * _SCALE[PRECISION])


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class InfluxTarget:
    url: str
    bucket: str
    org: str = ""
    token: str | None = None
    username: str | None = None
    password: str | None = None


class InfluxStore(QueuedWriter):
    idle_every = 0.2  # between rounds, keep sending the spool once the store answers again
    close_timeout = 60.0

    def __init__(
        self,
        target: InfluxTarget,
        site: str,
        assets: Mapping[str, tuple[str, str]],
        spool_dir: Path,
        *,
        spool_max_bytes: int = 512 * 2**20,
        flush_interval: float = 1.0,
        metrics: Metrics | None = None,
        writer: bool = True,
        points: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """``assets``: id → (asset type, building) for measurement and tags; ``points``: id → its
        profile's points, which a read-back row with ``bad_points`` names as not good."""
        self.target, self.site = target, site
        self._points = dict(points or {})
        self._series = {
            a: f"{_tag(t)},site={_tag(site)}" + (f",building={_tag(b)}" if b else "") + f",asset={_tag(a)}"
            for a, (t, b) in assets.items()
        }
        self._types = sorted({t for t, _b in assets.values()})
        # Alert and ticket lines carry the asset's building too, so that a dashboard filters them by it.
        self._building = {a: f",building={_tag(b)}" for a, (_t, b) in assets.items() if b}
        label = f"influxdb store {target.url}"
        super().__init__(label, "influx-writer", flush_interval, start=False, metrics=metrics)
        self._audit: list[str] = []  # audit lines for the next round (under the writer's lock)
        self._down_since: float | None = None
        self.rejected_lines = 0
        self._last_stamp: dict[str, int] = {}  # asset → its last stored time, to count collisions
        self.collisions = 0
        if writer:  # a reader (CLI, the other sites' check) leaves the writer's spool alone
            self.spool = Spool(spool_dir, spool_max_bytes, self.losses)
            self.spill = self._spill_to(self.spool)
            self._thread.start()

    # -- line protocol -------------------------------------------------------
    def sample_lines(self, batches: Sequence[SampleBatch]) -> list[str]:
        return list(self.each_sample_line(batches))

    def each_sample_line(self, batches: Sequence[SampleBatch]) -> Iterator[str]:
        """The lines of ``batches``, made as they are taken (the writer sends the first thousands
        while it makes the rest)."""
        by_plan: dict[tuple[str, ...], list[SampleBatch]] = {}
        for b in batches:
            if b.asset in self._series:
                by_plan.setdefault(b.points, []).append(b)
        for group in by_plan.values():
            frame = Frame.of(group)
            good = frame.quality == Quality.GOOD
            keys = [f"{p}=" for p in frame.points]
            for i, asset in enumerate(frame.assets.tolist()):
                row_good = good[i]
                fields = [
                    k + repr(v)
                    for k, v, ok in zip(keys, frame.values[i].tolist(), row_good.tolist(), strict=True)
                    if ok
                ]
                bad = len(keys) - len(fields)
                if bad:
                    fields.append(f"bad_points={bad}i")
                stamp = _stamp(float(frame.ts[i]))
                if self._last_stamp.get(asset) == stamp:
                    self._collide(asset)
                self._last_stamp[asset] = stamp
                yield f"{self._series[asset]} {','.join(fields)} {stamp}"

    def _collide(self, asset: str) -> None:
        self.collisions += 1
        if self.metrics:
            self.metrics.store_collisions.inc()
        log.debug("influxdb: two samples of %s in one microsecond; the later overwrites the earlier", asset)

    def alert_lines(self, events: Sequence[AlertEvent]) -> list[str]:
        return [
            f"alert,site={_tag(self.site)}{self._building.get(a.asset, '')},asset={_tag(a.asset)},"
            f"rule={_tag(a.rule)},severity={_tag(a.severity)} "
            f"state={_text(a.state)},since={a.since!r},fingerprint={_text(a.fingerprint)},"
            f"summary={_text(a.summary)} {_stamp(a.ts)}"
            for a in events
        ]

    def ticket_lines(self, events: Sequence[TicketEvent]) -> list[str]:
        lines = []
        for t in events:
            body = json.dumps(dataclasses.asdict(t), sort_keys=True)
            # eid: distinct events of one ticket in one millisecond stay distinct; the same event
            # written twice has the same eid and lands once.
            eid = hashlib.sha1(body.encode()).hexdigest()[:12]
            # A tag may not be empty: a resident's request (no asset) is tagged "-"; the body keeps "".
            lines.append(
                f"ticket,site={_tag(self.site)}{self._building.get(t.asset, '')},"
                f"asset={_tag(t.asset or '-')},ticket={_tag(t.ticket)},"
                f"priority={_tag(t.priority)},category={_tag(t.category)},event={_tag(t.event)},eid={eid} "
                f"state={_text(t.state)},summary={_text(t.summary)},body={_text(body)} {_stamp(t.ts)}"
            )
        return lines

    def audit_lines(self, events: Sequence[AuditEvent]) -> list[str]:
        lines = []
        for a in events:
            body = json.dumps(dataclasses.asdict(a), sort_keys=True)
            eid = hashlib.sha1(body.encode()).hexdigest()[:12]  # the same event written twice lands once
            lines.append(
                f"audit,site={_tag(self.site)},actor={_tag(a.actor)},action={_tag(a.action)},eid={eid} "
                f"outcome={a.outcome}i,target={_text(a.target)},body={_text(body)} {_stamp(a.ts)}"
            )
        return lines

    def write_audit(self, events: Sequence[AuditEvent]) -> None:
        """Queued for the next round (at most a flush interval away), which spools it if the store is
        down, like alert and ticket events."""
        lines = self.audit_lines(events)
        with self._lock:
            self._audit.extend(lines)
            self._lock.notify()

    def audit_events(self) -> list[AuditEvent]:
        rows = self.query(f'SELECT "body" FROM "audit" WHERE {self._where_site()}')
        return [AuditEvent(**json.loads(r["body"])) for r in rows]

    # -- the writer thread (queue and rounds: QueuedWriter) ------------------
    # influxdb-client is async: its event loop runs in a thread of its own for the client's lifetime,
    # so the writer thread makes the next batch's lines while the store takes the one before.
    def _open(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="influx-client", daemon=True)
        self._loop_thread.start()
        try:
            self._client, self._api = self._on_client(self._connect())
        except BaseException:
            self._stop_loop()
            raise

    def _on_client(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` on the client's loop; the writer thread waits for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join()
        self._loop.close()

    async def _connect(self) -> tuple[Any, Any]:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        t = self.target
        token = t.token or (f"{t.username}:{t.password}" if t.username else "")
        client = InfluxDBClientAsync(
            url=t.url, token=token, org=t.org or "-", enable_gzip=True, timeout=10_000
        )
        return client, client.write_api()

    def _write_round(
        self, samples: list[SampleBatch], alerts: list[AlertEvent], tickets: list[TicketEvent]
    ) -> None:
        with self._lock:
            audit, self._audit = self._audit, []
        events = audit + self.alert_lines(alerts) + self.ticket_lines(tickets)
        self._round(itertools.chain(events, self.each_sample_line(samples)))

    def _idle(self) -> None:
        if self.spill.waiting:
            self.spill.drain(self._send)
            time.sleep(0.2)

    def _shut(self) -> None:
        try:
            self._on_client(self._client.close())
        finally:
            self._stop_loop()

    def _send(self, payload: bytes, lines: int, precision: str) -> bool:
        """A spilled batch (gzip line protocol) to the store: ``spill.Send``."""
        if precision not in _SCALE:
            raise CorruptBatch(f"not line protocol (a {precision!r} batch)")
        try:
            body = gzip.decompress(payload).decode()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise CorruptBatch(str(exc)) from exc
        return bool(self._on_client(self._post(self._api, body, lines, precision)))

    def _round(self, lines: Iterable[str]) -> None:
        """``lines`` to the store in batches of ``BATCH_LINES``: each batch's lines are made while the
        batch before is in the store's hands (0.8 µs a point of the writer's CPU, which would
        otherwise wait for the store and the store for it), and it is sent only once that one is
        answered, so batches reach the store, or the spool, in order."""
        self.spill.drain(self._send)
        in_flight: tuple[concurrent.futures.Future[bool], str, int] | None = None
        try:
            while batch := list(itertools.islice(lines, BATCH_LINES)):
                chunk = "\n".join(batch)
                if in_flight is not None:
                    self._settle(*in_flight)
                    in_flight = None
                if self.spill.waiting:  # then this goes behind them, to keep order
                    self.spill.keep(
                        gzip.compress(chunk.encode()), len(batch), PRECISION, self._send, sent=False
                    )
                    continue
                posting = asyncio.run_coroutine_threadsafe(
                    self._post(self._api, chunk, len(batch), PRECISION), self._loop
                )
                in_flight = (posting, chunk, len(batch))
        finally:
            if in_flight is not None:
                self._settle(*in_flight)
        self.spill.report()

    def _settle(self, posting: concurrent.futures.Future[bool], chunk: str, n: int) -> None:
        """A batch's answer: one the store did not take goes to the spool."""
        if not posting.result():
            self.spill.keep(gzip.compress(chunk.encode()), n, PRECISION, self._send, sent=True)

    async def _post(self, api: Any, body: str, lines: int, precision: str) -> bool:
        """True when the store took the batch (or rejected it for good)."""
        from influxdb_client.rest import ApiException

        started = time.perf_counter()
        try:
            await api.write(
                bucket=self.target.bucket, org=self.target.org or "-", record=body, write_precision=precision
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            if status in (400, 413, 422):
                self.rejected_lines += lines
                self.losses.count("rejected", lines, f"influxdb rejected a batch (HTTP {status})")
                self._count_error("rejected")
                log.error(
                    "influxdb rejected a batch of %d lines (HTTP %d): %s",
                    lines,
                    status,
                    (exc.body or exc.reason or "")[:500],
                )
                return True
            return self._down(f"HTTP {status}")
        except (TimeoutError, OSError) as exc:
            return self._down(type(exc).__name__)
        except Exception as exc:  # aiohttp's client errors are not OSErrors
            return self._down(type(exc).__name__)
        if self.metrics:
            self.metrics.store_write_latency.observe(time.perf_counter() - started)
        if self._down_since is not None:
            log.info(
                "influxdb %s answers again after %.0fs; sending the spool",
                self.target.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        return True

    def _down(self, reason: str) -> bool:
        self._count_error(reason.split()[0].lower())
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "influxdb %s not taking writes (%s); spooling to %s",
                self.target.url,
                reason,
                self.spool.folder,
            )
        return False

    def _count_error(self, kind: str) -> None:
        if self.metrics:
            self.metrics.store_write_errors.labels(kind).inc()

    # -- reads ---------------------------------------------------------------
    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; the rows of every series, as dicts."""
        rows: list[dict[str, Any]] = []
        for series in self._series_of(q):
            tags = series.get("tags", {})
            for values in series.get("values", []):
                rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return sorted(rows, key=lambda r: r.get("time", 0))

    def _series_of(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; every series of the answer as InfluxDB gives it (``partial`` kept)."""
        t = self.target
        params = {"db": t.bucket, "q": q, "epoch": "u"}
        if t.username:
            params.update(u=t.username, p=t.password or "")
        request = urllib.request.Request(t.url.rstrip("/") + "/query?" + urllib.parse.urlencode(params))
        if t.token:
            request.add_header("Authorization", f"Token {t.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise StoreError(f"influxdb {t.url}: query failed: {exc}") from exc
        out: list[dict[str, Any]] = []
        for result in body.get("results", []):
            if "error" in result:
                raise StoreError(f"influxdb {t.url}: {result['error']}")
            for series in result.get("series", []):  # 1.x marks a cut answer on the result or the series
                out.append({**series, "partial": bool(series.get("partial") or result.get("partial"))})
        return out

    def _where_site(self) -> str:
        return '"site" = \'' + self.site.replace("'", "\\'") + "'"

    def ticket_events(self) -> list[TicketEvent]:
        rows = self.query(f'SELECT "body" FROM "ticket" WHERE {self._where_site()}')
        return [TicketEvent(**json.loads(r["body"])) for r in rows]

    def code_users(self, code: str) -> set[str]:
        """Other sites of this database whose ticket ids carry ``code`` (``WO-<code>-``): two sites
        sharing a code would hand out the same ids (docs/storage.md#ticket-ids)."""
        pattern = re.escape(f"WO-{code}-").replace("/", "\\/")
        rows = self.query(
            f'SHOW TAG VALUES FROM "ticket" WITH KEY = "site" WHERE "ticket" =~ /^{pattern}\\d{{8}}-/'
        )
        return {str(r["value"]) for r in rows} - {self.site}

    def alert_events(self) -> list[AlertEvent]:
        rows = self.query(f'SELECT * FROM "alert" WHERE {self._where_site()}')
        return [
            AlertEvent(
                r["time"] / 1e6, r["rule"], r["asset"], r["state"], r["severity"], r["since"], r["summary"]
            )
            for r in rows
        ]

    def samples(
        self, asset: str | None = None, since: float | None = None, until: float | None = None
    ) -> Iterator[SampleBatch]:
        """Batches in time order, optionally of one asset; read in windows, as ``frames``."""
        return in_time_order(self.frames(since, until, asset=asset), asset)

    def frames(
        self,
        since: float | None = None,
        until: float | None = None,
        *,
        asset: str | None = None,
        window: float = READ_WINDOW,
    ) -> Iterator[Frame]:
        """This site's samples in ``[since, until)`` as frames in order of their first row (as
        ``SqliteStore.frames``), one query per asset type and time window: memory holds one window,
        never the whole range. A window the server answers only in part (its ``max-row-limit``) is
        asked again in halves; one of a microsecond it still cuts is a ``StoreError``, never a gap."""
        where = [self._where_site()]
        if asset:
            where.append('"asset" = \'' + asset.replace("'", "\\'") + "'")
        span = self._span(" AND ".join(where), since, until)
        if span is None:
            return
        first, last = span
        step = max(1, round(window * 1e6))
        for start in range(first, last + 1, step):
            yield from self._windows(where, start, min(start + step, last + 1))  # never past `until`

    def _windows(self, where: list[str], start: int, stop: int) -> list[Frame]:
        """The frames of every asset type in one window, in order of their first row."""
        frames: list[Frame] = []
        for measurement in self._types:
            frames += self._window(measurement, where, start, stop)
        frames.sort(key=lambda f: float(f.ts[0]))  # stable: each type's frames keep their order
        return frames

    def _span(self, where: str, since: float | None, until: float | None) -> tuple[int, int] | None:
        """The first and last sample time (µs) of this site in the range, over every asset type."""
        if since is not None:
            where += f" AND time >= {_stamp(since)}u"
        if until is not None:
            where += f" AND time < {_stamp(until)}u"
        ends = []
        for measurement in self._types:
            for order in ("ASC", "DESC"):
                q = f'SELECT * FROM "{measurement}" WHERE {where} ORDER BY time {order} LIMIT 1'
                ends += [int(v[0]) for s in self._series_of(q) for v in s.get("values", [])]
        return (min(ends), max(ends)) if ends else None

    def _window(self, measurement: str, where: list[str], start: int, stop: int) -> list[Frame]:
        within = [*where, f"time >= {start}u", f"time < {stop}u"]
        q = f'SELECT * FROM "{measurement}" WHERE {" AND ".join(within)}'
        out = []
        for series in self._series_of(q):
            if series.get("partial"):
                if stop - start <= 1:  # more rows in one microsecond than the server gives: never cut
                    raise StoreError(
                        f"influxdb {self.target.url}: more {measurement} rows at {start} µs than the server "
                        "answers at once (its [http] max-row-limit); raise that limit to read them"
                    )
                mid = (start + stop) // 2
                return self._window(measurement, where, start, mid) + self._window(
                    measurement, where, mid, stop
                )
            out += series_frames(series["columns"], series.get("values", []), self._points)
        return out
