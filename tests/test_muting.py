"""Muting with reasons: maintenance windows, silences (API and CLI), ticket-driven suppression."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitord.alerting.mute import MaintenanceWindow, Matcher, MuteStages, in_window
from monitord.core.assets import Asset
from tests.support import (
    WebhookReceiver,
    demo_site,
    evaluated_past,
    eventually,
    good,
    post,
    run,
    running,
    token_of,
    with_people,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
PUMP = Asset("A-P1", "pump", tags=("booster",))


def test_weekly_and_one_off_windows() -> None:
    weekly = MaintenanceWindow.model_validate(
        {
            "id": "pm",
            "match": {"types": ["pump"]},
            "weekly": [{"days": ["tue"], "start": "09:00", "end": "12:00"}],
        }
    )
    tuesday_10 = dt.datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI).timestamp()
    tuesday_13 = dt.datetime(2026, 11, 24, 13, 0, tzinfo=SHANGHAI).timestamp()
    assert in_window(weekly, tuesday_10, SHANGHAI) and not in_window(weekly, tuesday_13, SHANGHAI)
    once = MaintenanceWindow.model_validate(
        {"id": "x", "match": {}, "start": "2026-11-24T09:00:00+08:00", "end": "2026-11-24T11:00:00+08:00"}
    )
    assert in_window(once, tuesday_10, SHANGHAI) and not in_window(once, tuesday_13, SHANGHAI)
    with pytest.raises(ValueError):
        MaintenanceWindow.model_validate({"id": "bad", "match": {}})


def test_silences_need_author_reason_and_expiry(tmp_path: Path) -> None:
    stages = MuteStages([], tmp_path / "n.db")
    with pytest.raises(ValueError):
        stages.add_silence(Matcher(assets=["A-P1"]), "", "pump swap", 3600, now=1000)
    with pytest.raises(ValueError):
        stages.add_silence(Matcher(assets=["A-P1"]), "wang", "pump swap", 0, now=1000)
    s = stages.add_silence(Matcher(assets=["A-P1"], rules=["pump.*"]), "wang", "pump swap", 3600, now=1000)
    assert stages.mutes("pump.dry_run", PUMP, 2000) == f"silence {s.id} by wang: pump swap"
    assert stages.mutes("comms.device_offline", PUMP, 2000) is None  # the rule glob does not match
    assert stages.mutes("pump.dry_run", PUMP, 5000) is None  # expired
    reopened = MuteStages([], tmp_path / "n.db")  # silences survive a restart
    reopened.expire(s.id, now=1500)
    assert reopened.mutes("pump.dry_run", PUMP, 2000) is None


def test_silence_and_maintenance_window_keep_alerts_from_people(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=300.0)
    window = MaintenanceWindow(
        id="pump-2-service",
        match=Matcher(assets=["A-P2"]),
        reason="quarterly service",
        start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        end=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    config = config.model_copy(update={"maintenance": [window]})

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow") and good(app, "A-P2", "flow"), 15)
            token = token_of("plumbing-lead")  # a dispatcher: may manage silences
            env = {**os.environ, "MONITORD_API": app.api_url, "MONITORD_TOKEN": token}
            listing = [sys.executable, "-m", "monitord", "silence", "list"]
            empty = await asyncio.to_thread(subprocess.run, listing, capture_output=True, text=True, env=env)
            assert empty.stdout == "no silences\n", (empty.stdout, empty.stderr)
            command = [
                sys.executable,
                "-m",
                "monitord",
                "silence",
                "add",
                "--asset",
                "A-P1",
                "--rule",
                "pump.*",
                "--for",
                "1h",
                "--reason",
                "pump swap",
            ]
            added = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, env=env, timeout=30
            )
            assert added.returncode == 0, added.stderr
            site.inject("A-P1", "dry_run")
            site.inject("A-P2", "vfd_fault")
            store = app.store
            assert store is not None
            await eventually(
                lambda: (
                    {(a.rule, a.asset) for a in store.alert_events()}
                    >= {("pump.dry_run", "A-P1"), ("pump.vfd_fault", "A-P2")}
                ),
                30,
            )
            # the daemon has decided on those alerts (none held back) in an evaluation after them
            await evaluated_past(app, max(a.ts for a in store.alert_events()))
            assert app.core.desk.tickets == {}, "recorded, but no ticket"
            listed = await asyncio.to_thread(subprocess.run, listing, capture_output=True, text=True, env=env)
            [line] = listed.stdout.splitlines()
            # the author is whom the token proves (the plumbing lead, a dispatcher), not a name sent
            shown = r"\S+  active  until \S+ \S+ \S+  assets A-P1; rules pump\.\*  plumbing-lead: pump swap"
            assert re.fullmatch(shown, line), line

    run(scenario(), timeout=120)
    assert webhooks.received == []


def test_new_alerts_join_the_ticket_a_technician_is_working_on(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=300.0)

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "flow"), 15)
            site.inject("A-P1", "dry_run")
            [ticket] = await eventually(lambda: list(app.core.desk.tickets.values()), 30)
            status, _ = await asyncio.to_thread(
                post,
                f"{app.api_url}/tickets/{ticket.id}/start",
                {"actor": "zhang", "note": "isolating the pump"},
            )
            assert status == 200
            site.inject("A-P1", "sump_high")  # same asset, same category (plumbing)
            await eventually(lambda: any("pump.sump_high_level" in n for n in ticket.explained), 20)
            assert list(app.core.desk.tickets) == [ticket.id]

    run(scenario(), timeout=120)
    assert len(webhooks.to("plumbing-tech")) == 1
