"""What the person at the terminal sees: alerts and tickets, one line each.

A listener on the event road, used by ``monitord run`` and ``monitord demo``;
it says which asset, where, what is wrong and since when, in the site's zone
and language.
A resolved alert's line says it recovered, with the readings now; an
"explained" ticket line names the dependant's asset and rule it absorbed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import tzinfo
from typing import TextIO

from monitord.alerting.tracker import AlertEvent
from monitord.core.assets import Asset
from monitord.core.i18n import DEFAULT, translator
from monitord.core.units import format_clock, format_duration
from monitord.tickets.desk import TicketEvent, explained_of
from monitord.tickets.forms import mask_phone, mask_phones
from monitord.tickets.labels import ALERT_STATES, CATEGORIES, EVENTS, label

_COLORS = {
    "firing": "\033[31m",
    "resolved": "\033[32m",
    "opened": "\033[1;33m",
    "appended": "\033[33m",
    "reset": "\033[0m",
}


class ConsoleReporter:
    def __init__(
        self,
        assets: Mapping[str, Asset],
        out: TextIO = sys.stdout,
        tz: tzinfo | None = None,
        locale: str = DEFAULT,
    ) -> None:
        self.assets = assets
        self.out = out
        self.tz = tz  # the site's zone (its roster's); None: this machine's
        self.color = out.isatty()
        self.locale = locale
        self._ = translator(locale)

    def _paint(self, key: str, text: str) -> str:
        return f"{_COLORS[key]}{text}{_COLORS['reset']}" if self.color and key in _COLORS else text

    def _asset(self, asset_id: str) -> str:
        a = self.assets.get(asset_id)
        if a is None:
            return asset_id
        where = f" @ {a.where}" if a.where else ""
        return f"{a.id} {a.label}{where}" if a.name else f"{a.id}{where}"

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def alert(self, ev: AlertEvent) -> None:
        _ = self._
        word = _("ALERT")  # outside the f-string: extraction does not look inside one
        if ev.state == "firing":
            detail = _("since {clock}").format(clock=format_clock(ev.since, self.tz))
        else:
            detail = _("lasted {duration}").format(duration=format_duration(ev.ts - ev.since))
        state = self._paint(ev.state, f"{label(ALERT_STATES, ev.state, self.locale).upper():8}")
        self._print(
            f"{format_clock(ev.ts, self.tz)}  {word:6} {state} {ev.severity:8} {ev.rule:24}"
            f" {self._asset(ev.asset)} — {ev.summary} ({detail})"
        )

    def ticket(self, ev: TicketEvent) -> None:
        _ = self._
        word = _("TICKET")
        state = self._paint(ev.event, f"{label(EVENTS, ev.event, self.locale).upper():8}")
        category = label(CATEGORIES, ev.category, self.locale)
        head = f"{format_clock(ev.ts, self.tz)}  {word:6} {state} {ev.ticket} {ev.priority}"
        head += f" {category:10}"
        if ev.event == "explained":  # which dependant's alert the incident absorbed, not its own text again
            x = explained_of(ev)
            line = _("{asset} explains {other} {rule} — {summary} (since {clock})").format(
                asset=ev.asset,
                other=self._asset(x.asset),
                rule=x.rule,
                summary=x.summary,
                clock=format_clock(x.since, self.tz),
            )
            self._print(f"{head} {line}")
            return
        if ev.source == "request":  # a resident's request: where, and who reported it (phone masked)
            who = _(" (reported by {reporter}, {phone})") if ev.reporter else ""
            who = who.format(reporter=ev.reporter, phone=mask_phone(ev.phone))
            self._print(f"{head} {ev.location} — {mask_phones(ev.summary)}{who}")
            return
        self._print(f"{head} {self._asset(ev.asset)} — {ev.summary}")
