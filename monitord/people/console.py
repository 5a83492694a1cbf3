"""What the person at the terminal sees: alerts and tickets, one line each.

A listener on the pipeline, used by ``monitord run`` and ``monitord demo``;
it says which asset, where, what is wrong and since when.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO

from monitord.alerting.tracker import AlertEvent
from monitord.core.assets import Asset
from monitord.core.units import format_duration
from monitord.tickets.desk import TicketEvent

_COLORS = {
    "firing": "\033[31m",
    "resolved": "\033[32m",
    "opened": "\033[1;33m",
    "appended": "\033[33m",
    "reset": "\033[0m",
}


class ConsoleReporter:
    def __init__(self, assets: Mapping[str, Asset], out: TextIO = sys.stdout) -> None:
        self.assets = assets
        self.out = out
        self.color = out.isatty()

    def _paint(self, key: str, text: str) -> str:
        return f"{_COLORS[key]}{text}{_COLORS['reset']}" if self.color and key in _COLORS else text

    def _asset(self, asset_id: str) -> str:
        a = self.assets.get(asset_id)
        if a is None:
            return asset_id
        where = f" @ {a.where}" if a.where else ""
        return f"{a.id} {a.label}{where}" if a.name else f"{a.id}{where}"

    def alert(self, ev: AlertEvent) -> None:
        clock = time.strftime("%H:%M:%S", time.localtime(ev.ts))
        if ev.state == "firing":
            detail = f"since {time.strftime('%H:%M:%S', time.localtime(ev.since))}"
        else:
            detail = f"lasted {format_duration(ev.ts - ev.since)}"
        state = self._paint(ev.state, f"{ev.state.upper():8}")
        print(
            f"{clock}  ALERT  {state} {ev.severity:8} {ev.rule:24} {self._asset(ev.asset)}"
            f" — {ev.summary} ({detail})",
            file=self.out,
            flush=True,
        )

    def ticket(self, ev: TicketEvent) -> None:
        clock = time.strftime("%H:%M:%S", time.localtime(ev.ts))
        state = self._paint(ev.event, f"{ev.event.upper():8}")
        print(
            f"{clock}  TICKET {state} {ev.ticket} {ev.priority} {ev.category:10} "
            f"{self._asset(ev.asset)} — {ev.summary}",
            file=self.out,
            flush=True,
        )
