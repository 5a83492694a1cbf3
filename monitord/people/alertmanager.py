"""Alerts pushed to a Prometheus Alertmanager the company already runs (``POST /api/v2/alerts``).

People stage, beside the dispatcher: a listener on the event road. Every alert
event (firing, flapping, resolved) becomes an Alertmanager alert with labels
``alertname, site, building, asset, rule, severity`` (and ``life_safety="true"``
on a life-safety rule's alert) and annotations
``summary`` (as stored: in the site's language), ``ticket``, ``console``
(docs/alertmanager.md). Nothing is filtered: life-safety alerts go like the
rest. Firing alerts are sent again every ``resend`` with ``endsAt`` four
resends ahead, as Prometheus does, so an Alertmanager keeps them while monitord
lives and lets them expire if it dies; a resolved alert is sent with ``endsAt``
at its resolve time. Sending is the job of one thread of its own: the road only
updates a dict under a lock, so a dead or slow Alertmanager never holds up an
evaluation. What none of the Alertmanagers took is retried (firing alerts at
each resend, resolved ones until ``KEEP_RESOLVED`` newer ones push them out:
those are counted as dropped), every failed post is counted, and the first
failure is logged once until a post succeeds again. monitord's silences and
maintenance windows are mirrored as Alertmanager silences by ``am_silences``.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from prometheus_client import Counter
from pydantic import Field, field_validator

from monitord.alerting.tracker import AlertEvent, fingerprint
from monitord.core.assets import Asset
from monitord.core.metrics import Metrics
from monitord.core.schema import Strict
from monitord.core.units import Duration
from monitord.tickets.desk import Ticket, TicketEvent

#: the label a life-safety alert carries, and every mirrored silence excludes (``am_silences``)
LIFE_SAFETY = "life_safety"

log = logging.getLogger(__name__)
#: resolved alerts waiting for an Alertmanager to take them; past this the oldest are dropped (counted)
KEEP_RESOLVED = 10_000
#: a firing alert's endsAt is this many resends ahead: missing three resends in a row does not end it
AHEAD = 4


class AlertmanagerConfig(Strict):
    url: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+")]] = Field(
        min_length=1,
        description="base URL of the Alertmanager (or a list: every member of a cluster gets each alert)",
    )
    resend: Duration = Field(60.0, gt=0, description="firing alerts are sent again this often")
    timeout: Duration = Field(5.0, gt=0, description="of one POST")

    @field_validator("url", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


@dataclass(frozen=True)
class Pushed:
    """One alert as Alertmanager gets it."""

    labels: tuple[tuple[str, str], ...]
    summary: str
    starts: float
    ends: float | None  # None: firing (endsAt is set at each send)
    ticket: str = ""

    def body(self, now: float, ahead: float, console: str) -> dict[str, Any]:
        link = f"{console}/tickets/{self.ticket}" if self.ticket else console
        annotations = {"summary": self.summary, "console": link}
        if self.ticket:
            annotations["ticket"] = self.ticket
        return {
            "labels": dict(self.labels),
            "annotations": annotations,
            "startsAt": _rfc3339(self.starts),
            "endsAt": _rfc3339(self.ends if self.ends is not None else now + ahead),
            "generatorURL": link,
        }


def _rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds")


class AlertmanagerPush:
    def __init__(
        self,
        config: AlertmanagerConfig,
        site: str,
        assets: Mapping[str, Asset],
        console_url: str,
        metrics: Metrics,
        life_safety: Collection[str] = (),
    ) -> None:
        """``console_url``: the console's base (``<api>/console``), for each alert's link;
        ``life_safety``: the rules whose alerts are labelled so (no mirrored silence covers them)."""
        self.config, self.site, self.assets = config, site, assets
        self.life_safety = frozenset(life_safety)
        self.console = console_url.rstrip("/")
        self.posts = Counter(
            "monitord_alertmanager_posts_total",
            "POSTs of alerts to Alertmanager, by outcome (sent, failed)",
            ["outcome"],
            registry=metrics.registry,
        )
        self.undelivered = Counter(
            "monitord_alertmanager_undelivered_total",
            "Alert updates no Alertmanager took in a round (retried while they last)",
            registry=metrics.registry,
        )
        self.dropped = Counter(
            "monitord_alertmanager_dropped_total",
            "Resolved alerts given up unsent (more than the bound waited)",
            registry=metrics.registry,
        )
        self._lock = threading.Condition()
        self._firing: dict[str, Pushed] = {}  # fingerprint → alert, while it fires
        self._resolved: dict[str, Pushed] = {}  # fingerprint → its resolve, until an Alertmanager took it
        self._changed: set[str] = set()  # fingerprints to send at once
        self._tickets: dict[str, str] = {}  # fingerprint → the ticket that carries it
        self._closed = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="alertmanager", daemon=True)
        self._thread.start()

    # -- the road's side: no I/O, a lock held for a dict update ---------------------------------
    def on_alert(self, ev: AlertEvent) -> None:
        fp = ev.fingerprint
        with self._lock:
            if ev.state == "resolved":
                old = self._firing.pop(fp, None)
                starts = old.starts if old else ev.since
                self._resolved[fp] = Pushed(
                    self._labels(ev), ev.summary, starts, ev.ts, self._tickets.get(fp, "")
                )
                self._tickets.pop(fp, None)
                while len(self._resolved) > KEEP_RESOLVED:
                    del self._resolved[next(iter(self._resolved))]
                    self.dropped.inc()
            else:  # firing, or flapping (still active)
                self._resolved.pop(fp, None)
                self._firing[fp] = Pushed(
                    self._labels(ev), ev.summary, ev.since, None, self._tickets.get(fp, "")
                )
            self._changed.add(fp)
            self._lock.notify()

    def resume(self, firing: Iterable[Mapping[str, Any]], tickets: Mapping[str, Ticket], now: float) -> None:
        """After a restart: the alerts restored as firing (``Core.firing_alerts``) are pushed again,
        so Alertmanager does not let them expire while they still fire."""
        for a in firing:
            t = tickets.get(str(a["ticket"])) if a["ticket"] else None
            rule, asset, severity = str(a["rule"]), str(a["asset"]), str(a["severity"])
            since, summary = (t.since, t.summary) if t else (now, "")
            self.on_alert(AlertEvent(now, rule, asset, "firing", severity, since, summary))
            if t is not None:
                self._annotate(fingerprint(rule, asset), t.id)

    def on_ticket(self, ev: TicketEvent) -> None:
        """The ticket an alert is on: its own, or the root cause's that explains it."""
        if ev.event in ("opened", "appended", "reopened", "recurred") and ev.rule:
            self._annotate(fingerprint(ev.rule, ev.asset), ev.ticket)
        elif ev.event == "explained" and ev.alert_rule:
            self._annotate(fingerprint(ev.alert_rule, ev.alert_asset), ev.ticket)

    def _annotate(self, fp: str, ticket: str) -> None:
        with self._lock:
            self._tickets[fp] = ticket
            alert = self._firing.get(fp)
            if alert is not None and alert.ticket != ticket:
                self._firing[fp] = replace(alert, ticket=ticket)
                self._changed.add(fp)
                self._lock.notify()

    def _labels(self, ev: AlertEvent) -> tuple[tuple[str, str], ...]:
        asset = self.assets.get(ev.asset)
        building = str(asset.location.get("building", "")) if asset else ""
        labels = {
            "alertname": ev.rule,
            "site": self.site,
            "building": building,
            "asset": ev.asset,
            "rule": ev.rule,
            "severity": ev.severity,
            LIFE_SAFETY: "true" if ev.rule in self.life_safety else "",
        }
        return tuple((k, v) for k, v in labels.items() if v)  # Alertmanager drops empty labels anyway

    # -- the sending thread ------------------------------------------------------------------
    def _run(self) -> None:
        resend = self.config.resend
        next_all = time.monotonic() + resend
        retry_at = float("inf")  # changes that failed wait for this (backoff) or the next resend
        backoff = 1.0
        while True:
            with self._lock:
                while not self._closed:
                    now = time.monotonic()
                    due = min(next_all, retry_at)
                    if (self._changed and retry_at == float("inf")) or now >= due:
                        break
                    self._lock.wait(due - now)
                if self._closed:
                    return
                everything = time.monotonic() >= next_all
                keys = set(self._firing) | set(self._resolved) if everything else set(self._changed)
                self._changed.clear()
                batch = {fp: self._firing.get(fp) or self._resolved[fp] for fp in keys if self._known(fp)}
            if everything:
                next_all = time.monotonic() + resend
            if not batch or self._send(list(batch.values())):
                retry_at, backoff = float("inf"), 1.0
                with self._lock:
                    for fp, sent in batch.items():
                        if self._resolved.get(fp) is sent:
                            del self._resolved[fp]  # its end is known to Alertmanager: nothing more to say
                continue
            self.undelivered.inc(len(batch))
            with self._lock:
                self._changed |= set(batch)
            retry_at = time.monotonic() + min(backoff, resend)
            backoff *= 2

    def _known(self, fp: str) -> bool:
        return fp in self._firing or fp in self._resolved

    def _send(self, alerts: list[Pushed]) -> bool:
        """POST to every Alertmanager (a cluster shares what one member takes); True if any took it."""
        now = time.time()
        body = json.dumps([a.body(now, AHEAD * self.config.resend, self.console) for a in alerts]).encode()
        took = False
        problems = []
        for url in self.config.url:
            request = urllib.request.Request(
                url.rstrip("/") + "/api/v2/alerts",
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                    response.read()
                took = True
                self.posts.labels("sent").inc()
            except (OSError, ValueError) as exc:  # HTTPError, URLError, timeouts are OSErrors
                self.posts.labels("failed").inc()
                problems.append(f"{url}: {exc}")
        if problems and not self._failing:
            log.warning("alertmanager not taking alerts (%s); retrying, counted", "; ".join(problems))
        elif not problems and self._failing:
            log.info("alertmanager takes alerts again")
        self._failing = bool(problems)
        return took

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=self.config.timeout * len(self.config.url) + 1)
