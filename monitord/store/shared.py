"""What an HA pair shares besides tickets: the keys of delivered notifications, and the silences.

Store layer, beside ``influx``. The active instance writes each delivered
notification's idempotency key (``notification`` measurement, tags ``site``
and ``key``) the moment it is delivered, synchronously rather than through
the writer's queue, so an instance taking over after a kill -9 knows every
page the dead one sent; silences are ``silence`` points (tags ``site`` and
``id``, time = when it was created, so expiring one overwrites its point).
A new active reads both for its own site before it dispatches anything
(``daemon.takeover``). docs/scale-out.md#ha-pair says why InfluxDB.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request

from monitord.alerting.mute import Matcher, Silence
from monitord.core.errors import StoreError
from monitord.store.influx import InfluxStore, _stamp, _tag, _text

log = logging.getLogger(__name__)


class SharedLog:
    """Sent keys and silences of one site in the site's InfluxDB (the store's target and site)."""

    def __init__(self, store: InfluxStore) -> None:
        self.store = store
        self.site = store.site

    def record_sent(self, key: str, ts: float, channel: str, recipient: str, ticket: str) -> None:
        """A delivered notification; raises ``StoreError`` when the store does not take it."""
        fields = f"channel={_text(channel)},recipient={_text(recipient)},ticket={_text(ticket)}"
        self._write(f"notification,site={_tag(self.site)},key={_tag(key)} {fields} {_stamp(ts)}")

    def sent(self) -> list[tuple[str, float, str, str, str]]:
        """(key, time, channel, recipient, ticket) of every notification this site delivered."""
        rows = self.store.query(f'SELECT * FROM "notification" WHERE {self.store._where_site()}')
        return [(r["key"], r["time"] / 1e6, r["channel"], r["recipient"], r["ticket"]) for r in rows]

    def record_silence(self, s: Silence) -> None:
        fields = (
            f"matcher={_text(s.matcher.model_dump_json())},author={_text(s.author)},"
            f"reason={_text(s.reason)},created={s.created!r},expires={s.expires!r}"
        )
        self._write(f"silence,site={_tag(self.site)},id={_tag(s.id)} {fields} {_stamp(s.created)}")

    def silences(self) -> list[Silence]:
        rows = self.store.query(f'SELECT * FROM "silence" WHERE {self.store._where_site()}')
        return [
            Silence(
                r["id"],
                Matcher.model_validate_json(r["matcher"]),
                r["author"],
                r["reason"],
                r["created"],
                r["expires"],
            )
            for r in rows
        ]

    def _write(self, line: str) -> None:
        t = self.store.target
        query = urllib.parse.urlencode({"bucket": t.bucket, "org": t.org or "-", "precision": "us"})
        request = urllib.request.Request(
            t.url.rstrip("/") + "/api/v2/write?" + query, data=line.encode(), method="POST"
        )
        token = t.token or (f"{t.username}:{t.password}" if t.username else "")
        if token:
            request.add_header("Authorization", f"Token {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (OSError, urllib.error.HTTPError) as exc:
            raise StoreError(f"influxdb {t.url}: shared write failed: {exc}") from exc
