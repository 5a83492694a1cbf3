"""monitord's silences and maintenance windows, mirrored into Alertmanager as its own silences.

People stage, beside ``alertmanager.AlertmanagerPush``: what monitord mutes
(``alerting.mute``: a silence, or a maintenance window while it is on) is
silenced in Alertmanager too (``POST /api/v2/silences``), with matchers on
``site`` and, as monitord's matcher scopes it, ``asset`` (its assets, types
and tags resolved to asset ids) and ``rule`` (its globs as a regex), until the
same end; it is expired there (``DELETE /api/v2/silence/{id}``) when it is
lifted here. Every mirror also carries ``life_safety!="true"``: a life-safety
alert is never silenced in Alertmanager by a mirror, whatever monitord does.

Alertmanager keeps the ids: each mirror's comment ends in ``[monitord <site>
<key>]``, and every ``resend`` (and at start) the mirror reads Alertmanager's
silences back and adopts its own, so a restart or a takeover posts no
duplicate and lifts what the previous instance set. One thread of its own
does the HTTP; a dead Alertmanager holds up nothing and is retried.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from monitord.alerting.mute import MaintenanceWindow, Matcher, MuteStages, in_window
from monitord.core.assets import Asset
from monitord.core.i18n import translator
from monitord.core.metrics import Metrics
from monitord.people.alertmanager import LIFE_SAFETY, AlertmanagerConfig

log = logging.getLogger(__name__)
CREATED_BY = "monitord"
_TAG = re.compile(r"\[monitord (\S+) (\S+)\]$")
_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


@dataclass(frozen=True)
class Mirror:
    """One silence as Alertmanager gets it. ``key`` names what it mirrors and until when."""

    key: str
    matchers: tuple[tuple[str, str, bool, bool], ...]  # name, value, isRegex, isEqual
    starts: float
    ends: float
    comment: str

    def body(self, site: str) -> dict[str, Any]:
        return {
            "matchers": [
                {"name": n, "value": v, "isRegex": regex, "isEqual": equal}
                for n, v, regex, equal in self.matchers
            ],
            "startsAt": _rfc3339(self.starts),
            "endsAt": _rfc3339(self.ends),
            "createdBy": CREATED_BY,
            "comment": f"{self.comment} [monitord {site} {self.key}]",
        }


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def literal(text: str) -> str:
    """``text`` as an RE2 regex matching just it (only the metacharacters escaped: ids stay legible)."""
    return _META.sub(r"\\\1", text)


def glob_regex(pattern: str) -> str:
    """A rule glob (``fnmatch``: ``*``, ``?``, ``[...]``) as the anchored RE2 Alertmanager matches."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        close = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif close > 0:
            inner = pattern[i + 1 : close]
            out.append("[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]")
            i = close
        else:
            out.append(literal(c))
        i += 1
    return "".join(out)


def matchers_of(
    m: Matcher, site: str, assets: Mapping[str, Asset]
) -> tuple[tuple[str, str, bool, bool], ...] | None:
    """Alertmanager matchers for what ``m`` covers on ``site``; None when it covers no asset here."""
    out: list[tuple[str, str, bool, bool]] = [("site", site, False, True)]
    if m.assets or m.types or m.tags:  # resolved to the site's assets, which Alertmanager labels by id
        ids = sorted(
            a.id
            for a in assets.values()
            if (not m.assets or a.id in m.assets)
            and (not m.types or a.type in m.types)
            and all(t in a.tags for t in m.tags)
        )
        if not ids:
            return None
        out.append(("asset", "|".join(literal(i) for i in ids), True, True))
    if m.rules:
        out.append(("rule", "|".join(glob_regex(r) for r in m.rules), True, True))
    out.append((LIFE_SAFETY, "true", False, False))  # never a life-safety alert
    return tuple(out)


def window_end(w: MaintenanceWindow, at: float, tz: dt.tzinfo) -> float:
    """When the window that is on at ``at`` ends (its weekly slot's end that day, or its ``end``)."""
    if w.end is not None and not w.weekly:
        return w.end.replace(tzinfo=w.end.tzinfo or tz).timestamp()
    local = dt.datetime.fromtimestamp(at, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = local.hour * 60 + local.minute
    ends = []
    for slot in w.weekly:
        h1, m1 = (int(x) for x in slot.start.split(":"))
        h2, m2 = (int(x) for x in slot.end.split(":"))
        if h1 * 60 + m1 <= minutes < h2 * 60 + m2:  # as in_window; 24:00 is the next midnight
            ends.append((midnight + dt.timedelta(minutes=h2 * 60 + m2)).timestamp())
    return max(ends) if ends else at


def wanted(
    mute: MuteStages, site: str, assets: Mapping[str, Asset], locale: str, now: float
) -> dict[str, Mirror]:
    """The mirrors monitord's mutes call for at ``now``, by key."""
    _ = translator(locale)
    out = {}
    for s in mute.silences:
        if s.active(now) and (matchers := matchers_of(s.matcher, site, assets)) is not None:
            comment = _("silenced in monitord by {author}: {reason}").format(author=s.author, reason=s.reason)
            key = f"silence:{s.id}:{s.expires:.0f}"
            out[key] = Mirror(key, matchers, s.created, s.expires, comment)
    for w in mute.windows:
        if in_window(w, now, mute.tz) and (matchers := matchers_of(w.match, site, assets)) is not None:
            ends = window_end(w, now, mute.tz)
            comment = _("maintenance window {window} in monitord: {reason}").format(
                window=w.id, reason=w.reason
            )
            key = f"window:{urllib.parse.quote(w.id, safe='')}:{ends:.0f}"  # one word, as the tag reads it
            out[key] = Mirror(key, matchers, now, ends, comment)
    return out


class SilenceMirror:
    #: seconds between two looks at monitord's mutes (a lifted silence is lifted there this soon)
    every = 1.0

    def __init__(
        self,
        config: AlertmanagerConfig,
        site: str,
        locale: str,
        assets: Mapping[str, Asset],
        mute: MuteStages,
        clock: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        """``clock``: the daemon's (silences are set and end on it); ``start`` begins mirroring."""
        self.urls, self.site, self.locale, self.assets, self.mute = config.url, site, locale, assets, mute
        self.clock, self.resend, self.timeout = clock, config.resend, config.timeout
        # url → key → (Alertmanager's silence id, its end); None until read back from that Alertmanager
        self.known: dict[str, dict[str, tuple[str, float]] | None] = {u: None for u in self.urls}
        self._read_at = {u: float("-inf") for u in self.urls}
        self._failing: set[str] = set()
        self._stop = threading.Event()
        #: this instance acts for the site (an HA standby does not: its mutes are not the site's yet)
        self.acting = True
        self._thread = threading.Thread(target=self._run, name="alertmanager-silences", daemon=True)

        self.calls = Counter(
            "monitord_alertmanager_silence_calls_total",
            "Calls to Alertmanager's silences API (mirrors of monitord's silences and maintenance windows), "
            "by what (post, expire, list) and outcome (sent, failed)",
            ["what", "outcome"],
            registry=metrics.registry,
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout * 3 * len(self.urls) + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # a bug here must not end the mirror: logged, tried again
                log.exception("alertmanager silences: sync failed")
            self._stop.wait(self.every)

    def sync(self) -> None:
        """One look: post what monitord mutes and Alertmanager lacks, expire what monitord lifted."""
        if not self.acting:
            self.known = dict.fromkeys(self.urls)  # read back afresh once it acts: the other instance's
            return
        now = self.clock()
        want = wanted(self.mute, self.site, self.assets, self.locale, now)
        for url in self.urls:
            try:
                self._sync(url, want, now)
            except (OSError, ValueError, KeyError, TypeError) as exc:  # HTTP errors, timeouts; a bad reply
                if url not in self._failing:
                    log.warning("alertmanager %s: silences not mirrored (%s); retrying", url, exc)
                    self._failing.add(url)
                continue
            if url in self._failing:
                log.info("alertmanager %s: silences mirrored again", url)
                self._failing.discard(url)

    def _sync(self, url: str, want: Mapping[str, Mirror], now: float) -> None:
        known = self.known[url]
        if known is None or now - self._read_at[url] >= self.resend:
            known = self.known[url] = self._read_back(url)
            self._read_at[url] = now
        for key in [k for k in known if k not in want]:
            silence, ends = known[key]
            if ends > now:  # lifted early in monitord (one that ran out ended by itself there)
                self._call(url, "expire", f"/api/v2/silence/{silence}", "DELETE")
            del known[key]
        for key, mirror in want.items():
            if key not in known:
                answer = self._call(url, "post", "/api/v2/silences", "POST", mirror.body(self.site))
                known[key] = (str(answer["silenceID"]), mirror.ends)

    def _read_back(self, url: str) -> dict[str, tuple[str, float]]:
        """This site's mirrors that Alertmanager holds (active or pending), by key; a duplicate of one
        key (two instances that posted at once) is expired."""
        mine: dict[str, tuple[str, float]] = {}
        for s in self._call(url, "list", "/api/v2/silences", "GET"):
            tag = _TAG.search(str(s.get("comment", "")))
            if s.get("createdBy") != CREATED_BY or tag is None or tag.group(1) != self.site:
                continue
            if s.get("status", {}).get("state") == "expired":
                continue
            ends = dt.datetime.fromisoformat(str(s["endsAt"]).replace("Z", "+00:00")).timestamp()
            if tag.group(2) in mine:
                self._call(url, "expire", f"/api/v2/silence/{s['id']}", "DELETE")
                continue
            mine[tag.group(2)] = (str(s["id"]), ends)
        return mine

    def _call(self, url: str, what: str, path: str, method: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url.rstrip("/") + path, data=data, headers={"Content-Type": "application/json"}, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            if what == "expire" and (exc.code == 404 or b"expired" in exc.read()):
                self.calls.labels(what, "sent").inc()  # ended already (by itself, or by another instance)
                return None
            self.calls.labels(what, "failed").inc()
            raise
        except (OSError, ValueError):
            self.calls.labels(what, "failed").inc()
            raise
        self.calls.labels(what, "sent").inc()
        return json.loads(text) if text.strip() else None
