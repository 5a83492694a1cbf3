"""Pending ``for`` timers survive a kill -9 (issue 10, item 11): an entrapment that had waited 12 s of
its 30 s before the daemon died fires 30 s after it began, not 30 s after the restart. Real parts:
`monitord run` as a process, the simulated site over real Mosquitto and Modbus TCP, SQLite.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from monitord.alerting.tracker import AlertTracker, PendingFile
from monitord.config.site import load_config
from monitord.simulators.site import SimulatedSite
from monitord.store.sqlite import SqliteStore
from tests.support import eventually, run, site_yaml

RULE = "elevator.entrapment_between_floors"


def daemon(path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitord", "run", str(path)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_pending_entrapment_keeps_its_timer_across_kill_9(tmp_path: Path, mosquitto: int) -> None:
    path = site_yaml(tmp_path, mosquitto, None)
    config = load_config(path)
    saved = tmp_path / "monitord-data" / "pending-alerts.json"

    def pending_since() -> float | None:
        try:
            entries = json.loads(saved.read_text())["pending"]
        except (OSError, ValueError):
            return None
        return next(
            (e["since"] for e in entries if e["rule"].startswith(RULE) and e["asset"] == "A-E1"), None
        )

    async def scenario() -> tuple[float, float]:
        site = SimulatedSite(config)
        sim = asyncio.create_task(site.run())
        await site.ready.wait()
        first = daemon(path, tmp_path)
        try:
            await eventually(lambda: (tmp_path / "monitord-data" / "demo.db").exists(), 30)
            await asyncio.sleep(3)  # the daemon is polling; now the lift traps someone
            began = time.time()
            site.inject("A-E1", "entrapment")
            await eventually(lambda: time.time() > began + 13, 30)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            since = pending_since()
            assert since is not None and began <= since < began + 2, "killed while the alert was pending"
            again = daemon(path, tmp_path)
            try:
                reader = SqliteStore(tmp_path / "monitord-data" / "demo.db", writer=False)

                def fired() -> float | None:
                    return next(
                        (a.ts for a in reader.alert_events() if a.rule == RULE and a.state == "firing"), None
                    )

                fired_at = await eventually(fired, 60)
            finally:
                again.send_signal(signal.SIGINT)
                again.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
            sim.cancel()
        return began, fired_at

    began, fired_at = run(scenario(), timeout=180)
    # 30 s after it began (the next elevator message, under 2 s after the fault), plus the evaluation
    # interval; before the fix the timer restarted with the daemon: 30 s after the restart (> 43 s).
    assert began + 30 <= fired_at <= began + 34, fired_at - began


def test_saved_timers_resume_only_when_the_condition_shows_and_only_if_recent(tmp_path: Path) -> None:
    assets = {"r#pump": ["P1", "P2"]}
    tracker = AlertTracker()
    yes, no = np.array([True, False]), np.array([False, False])
    tracker.update("r#pump", yes, no, hold_for=30, clear_for=0, now=100)
    timers = PendingFile(tmp_path / "p.json")
    timers.save(tracker, assets, now=110)

    fresh = AlertTracker()
    assert timers.restore(fresh, assets, now=115) == 1
    assert fresh.update("r#pump", no, no, hold_for=30, clear_for=0, now=116) == []  # no data yet: waits
    assert fresh.update("r#pump", yes, no, hold_for=30, clear_for=0, now=125) == []  # resumed at 100
    [fired] = fresh.update("r#pump", yes, no, hold_for=30, clear_for=0, now=130)
    assert (fired.index, fired.state, fired.since) == (0, "firing", 100)

    late = AlertTracker()
    assert PendingFile(tmp_path / "p.json").restore(late, assets, now=110 + 61) == 0  # away too long
    (tmp_path / "p.json").write_text("{not json")
    assert PendingFile(tmp_path / "p.json").restore(late, assets, now=111) == 0
