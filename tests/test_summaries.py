"""Summaries see only the asset's point values, its fields and the rule's params (issue 10, item 6):
a summary that reaches for module globals or the environment prints its template, never a secret.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from monitord.core.assets import Asset
from monitord.daemon.pipeline import render
from tests.support import Timeline
from tests.support.configs import ONE_PUMP

TOKEN = "tok-1f9c2b7e-secret"
REACHES = [
    "{suction_pressure.__format__.__globals__[logging].os.environ[MONITORD_TOKEN]}",
    "{suction_pressure.__class__.__mro__[1].__subclasses__}",
    "{asset.__class__.__init__.__globals__}",
    "{param.__class__}",
    "{0}",
    "{MONITORD_TOKEN}",
]

SITE = ONE_PUMP.replace(
    "{id: A-P1, type: pump", "{id: A-P1, name: Booster 1, location: {room: B2}, type: pump"
).replace(
    'when: "running == 1 and suction_pressure < 0.05"',
    'when: "running == 1 and suction_pressure < param.suction_min"\n'
    '    params: {suction_min: 0.05}\n    summary: "SUMMARY"',
)


@pytest.mark.parametrize("reach", REACHES)
def test_a_summary_that_reaches_for_secrets_prints_its_template(
    timeline: Callable[..., Timeline], monkeypatch: pytest.MonkeyPatch, reach: str
) -> None:
    monkeypatch.setenv("MONITORD_TOKEN", TOKEN)
    tl = timeline(SITE.replace('"SUMMARY"', repr(f"dry {reach}")))
    tl.at(0).push("A-P1", running=1, suction_pressure=0.02)
    [opened] = tl.expect_tickets(between=(0, 0), opened=[("pump.dry_run", "A-P1")])
    ticket = tl.core.desk.tickets[opened.ticket]
    tl.store.flush()
    [alert] = tl.store.alert_events()
    for text in (ticket.summary, alert.summary):
        assert TOKEN not in text
        assert "<" not in text, "no Python object's repr"
    assert ticket.summary in (f"dry {reach}", "dry ?")


def test_a_summary_shows_points_asset_fields_and_params(timeline: Callable[..., Timeline]) -> None:
    summary = "{asset.name} in {asset.room}: suction {suction_pressure:.2f} below {param.suction_min}"
    tl = timeline(SITE.replace('"SUMMARY"', repr(summary)))
    tl.at(0).push("A-P1", running=1, suction_pressure=0.02)
    [opened] = tl.expect_tickets(between=(0, 0), opened=[("pump.dry_run", "A-P1")])
    assert tl.core.desk.tickets[opened.ticket].summary == "Booster 1 in B2: suction 0.02 below 0.05"


def test_render_names_nothing_but_points_asset_and_params() -> None:
    asset = Asset(id="P1", type="pump", name="Pump", location={"room": "B2"}, params={"k": 2.0})
    assert (
        render("{speed:.1f} {asset.id} {param.k}", asset, {"speed": 1.25}, params={"k": 2.0}) == "1.2 P1 2.0"
    )
    assert render("{speed.real}", asset, {"speed": 1.0}) == "{speed.real}"
    assert render("{asset.params}", asset, {}) == "{asset.params}"
