"""What the console's status board says of each asset (issue 12), on the pipeline's manual clock."""

from __future__ import annotations

from collections.abc import Callable

from monitord.daemon.web.board import status_board
from tests.support import Timeline
from tests.support.timeline import pump_site

PUMPS = "".join(
    f"  - {{id: {a}, type: pump, profile: two-points, connection: {{mqtt: {{}}}},"
    f" location: {{building: {b}}}}}\n"
    for a, b in (("A-P1", "A"), ("A-P2", "A"), ("A-P3", "A"), ("B-P1", "B"))
)
DRY = (
    "  - id: pump.dry_run\n    applies_to: {type: pump}\n"
    '    when: "running == 1 and suction_pressure < 0.05"\n    for: 2s\n'
    "    severity: critical\n    ticket: {priority: P1, skill: plumbing}\n"
)
# 2026-11-18, the timeline's day: A-P3 is taken apart all day
WINDOW = (
    "maintenance:\n  - {id: pm-A-P3, match: {assets: [A-P3]}, reason: impeller swap,"
    " start: 2026-11-18T00:00:00Z, end: 2026-11-19T00:00:00Z}\n"
)


def test_alert_offline_maintenance_and_ok_by_building(timeline: Callable[..., Timeline]) -> None:
    tl = timeline(pump_site(PUMPS, DRY) + WINDOW)
    for t in range(12):
        tl.at(t).push("A-P1", running=1, suction_pressure=0.01 if t >= 2 else 0.2)
        tl.at(t).push("A-P2", running=1, suction_pressure=0.2)  # A-P3 and B-P1 send nothing
    tl.expect_alerts(between=(0, 6), firing=[("pump.dry_run", "A-P1")])
    tl.run_until(11)
    board = {b.name: {a.id: (a.state, a.why) for a in b.assets} for b in status_board(tl.core)}
    assert board == {
        "A": {
            "A-P1": ("alert", ""),
            "A-P3": ("maintenance", "impeller swap"),  # no data either: maintenance says why
            "A-P2": ("ok", ""),
        },
        "B": {"B-P1": ("offline", "")},
    }
    building_a, _b = status_board(tl.core)
    assert [a.id for a in building_a.assets] == ["A-P1", "A-P3", "A-P2"], "worst first"
    assert building_a.counts == {"alert": 1, "maintenance": 1, "ok": 1}
    [firing] = building_a.assets[0].alerts
    assert (firing.rule, firing.priority) == ("pump.dry_run", "P1")
    assert firing.ticket is not None and tl.core.desk.tickets[firing.ticket].asset == "A-P1"
    assert firing.since == tl.start + 2
