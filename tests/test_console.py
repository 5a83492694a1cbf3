"""The terminal reporter: times in the site's zone, resolve lines that say what recovered, and
"explained" lines that name what they absorbed."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from monitord.alerting.tracker import AlertEvent
from monitord.core.assets import Asset
from monitord.people.console import ConsoleReporter
from monitord.tickets.desk import TicketDesk, TicketPolicyView
from tests.support import T0, Timeline, pump_site

SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE = pump_site(
    "  - {id: P1, name: Booster 1, type: pump, profile: two-points, connection: {mqtt: {}}}\n",
    "  - id: pump.dry\n"
    "    applies_to: {type: pump}\n"
    '    when: "running == 1 and suction_pressure < 0.05"\n'
    '    summary: "pump running dry (suction {suction_pressure:.3f} MPa)"\n',
    site="console",
)


def shanghai(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).strftime("%H:%M:%S")


def test_a_resolve_line_says_it_recovered_with_the_readings_now(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(SITE)
    out = io.StringIO()
    console = ConsoleReporter(tl.core.assets, out, tz=SHANGHAI)
    tl.core.road.alert_listeners.append(console.alert)
    for t in range(12):
        tl.at(t).push("P1", running=1, suction_pressure=0.02 if 2 <= t < 6 else 0.15)
    tl.expect_alerts(between=(0, 2), firing=[("pump.dry", "P1")])
    tl.expect_alerts(between=(2.5, 6), resolved=[("pump.dry", "P1")])
    firing, resolved = out.getvalue().splitlines()
    assert firing.startswith(f"{shanghai(T0 + 2)}  ALERT  FIRING ")
    assert firing.endswith(f"P1 Booster 1 — pump running dry (suction 0.020 MPa) (since {shanghai(T0 + 2)})")
    assert resolved.startswith(f"{shanghai(T0 + 6)}  ALERT  RESOLVED ")
    assert resolved.endswith("P1 Booster 1 — recovered; now running 1, suction_pressure 0.15 (lasted 4s)")
    stored = [a.summary for a in tl.stored()[0]]
    assert stored == [
        "pump running dry (suction 0.020 MPa)",
        "recovered; now running 1, suction_pressure 0.15",
    ], "the store keeps what the console said"


def test_explained_lines_name_the_asset_and_rule_they_absorbed() -> None:
    desk = TicketDesk()
    root = desk.on_alert(
        AlertEvent(T0, "power.outage", "PM", "firing", "critical", T0 - 5, "no voltage"),
        TicketPolicyView("P1", "electrical", auto_resolve=True),
        "B1",
    )[0]
    assets = {a: Asset(a, "pump", name=f"Pump {a[-1]}") for a in ("P1", "P2")}
    out = io.StringIO()
    console = ConsoleReporter(assets, out, tz=SHANGHAI)
    for asset in ("P1", "P2"):
        dependant = AlertEvent(T0 + 3, "comms.device_offline", asset, "firing", "major", T0 - 1, "no reply")
        console.ticket(desk.explain(desk.tickets[root.ticket], dependant))
    lines = out.getvalue().splitlines()
    assert lines == [
        f"{shanghai(T0 + 3)}  TICKET EXPLAINED {root.ticket} P1 electrical PM explains {a} Pump {a[-1]}"
        f" comms.device_offline — no reply (since {shanghai(T0 - 1)})"
        for a in ("P1", "P2")
    ]


def test_a_held_alert_is_explained_in_time_order_never_before_its_ticket_opened(
    timeline: Callable[..., Timeline],
) -> None:
    """The dependant fires first and waits for the pending root cause: its "explained" event was
    stamped with its own firing time, 4 s before the ticket it joined had opened; now it is stamped
    when it is decided."""
    tl = timeline(
        pump_site(
            "  - {id: F, type: pump, profile: two-points, connection: {mqtt: {}}}\n"
            "  - {id: P1, type: pump, profile: two-points, connection: {mqtt: {}}, depends_on: [F]}\n",
            "  - {id: feed.down, applies_to: {ids: [F]}, when: 'running == 0', for: 5s, root_cause: true}\n"
            "  - {id: pump.dry, applies_to: {ids: [P1]}, when: 'suction_pressure < 0.05'}\n",
        )
    )
    for t in range(10):
        tl.at(t).push("F", running=0, suction_pressure=0.15)
        tl.at(t).push("P1", running=1, suction_pressure=0.02 if t >= 1 else 0.15)
    tl.expect_alerts(between=(0, 1), firing=[("pump.dry", "P1")])
    # decided in the same evaluation that opens the root's ticket (a second pass over held alerts)
    opened, explained = tl.expect_tickets(
        between=(1.01, 5), opened=[("feed.down", "F")], explained=[("feed.down", "F")]
    )
    assert (opened.t, explained.t) == (5, 5)
    assert [s.what for s in tl.tickets()] == ["opened", "explained"], "in order: never before it opened"
    [x] = tl.core.desk.tickets[opened.ticket].explains
    assert (x.asset, x.rule, x.since) == ("P1", "pump.dry", T0 + 1)
