"""Alerts pushed to Debian's real Prometheus Alertmanager (``POST /api/v2/alerts``).

The demo site's simulators over real sockets and the daemon in this process;
Alertmanager in its own process, notifying a real HTTP receiver (with resolved
alerts). A fault shows up in Alertmanager with its labels and ticket; it
resolves there when the fault clears; a dead (and a hanging) Alertmanager holds
nothing up and is counted, and the alert arrives once one answers.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import load_config
from monitord.core.assets import Asset
from monitord.core.metrics import Metrics
from monitord.daemon.app import Monitord
from monitord.people.alertmanager import AlertmanagerConfig, AlertmanagerPush
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketEvent
from tests.support import BlackHole, WebhookReceiver, demo_site, good, metric, running, simulated, with_people
from tests.support.alertmanager import Alertmanager
from tests.support.configs import GOOD, problems, write
from tests.support.net import eventually, free_port, run


def held(manager: Alertmanager, rule: str, asset: str) -> dict[str, Any] | None:
    return next(
        (
            a
            for a in manager.alerts()
            if a["labels"].get("rule") == rule and a["labels"].get("asset") == asset
        ),
        None,
    )


def notified(hooks: WebhookReceiver, status: str, asset: str) -> list[dict[str, Any]]:
    """Alerts of ``asset`` in Alertmanager's own notifications with ``status`` (firing, resolved)."""
    return [
        a
        for body in hooks.to("am")
        for a in body["alerts"]
        if a["status"] == status and a["labels"]["asset"] == asset
    ]


def test_a_fault_reaches_alertmanager_with_its_ticket_and_resolves_there(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, alertmanager: Alertmanager
) -> None:
    """A site in Chinese: the summary Alertmanager gets is the pack's, from the zh-CN catalog."""
    alertmanager.start()
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    chinese = config.site.model_copy(update={"locale": "zh-CN"})
    am = AlertmanagerConfig(url=[alertmanager.url], resend=2.0)
    config = config.model_copy(update={"alertmanager": am, "site": chinese})

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "suction_pressure"), 15)
            site.inject("A-P1", "dry_run")
            await eventually(lambda: webhooks.to("plumbing-tech"), 30)
            ticket = app.core.desk.open_ticket_for_rule("pump.dry_run", "A-P1")
            assert ticket is not None
            alert = await eventually(lambda: held(alertmanager, "pump.dry_run", "A-P1"), 15)
            assert alert["labels"] == {
                "alertname": "pump.dry_run",
                "site": "tower-a",
                "building": "A",
                "asset": "A-P1",
                "rule": "pump.dry_run",
                "severity": "critical",
            }
            notes = alert["annotations"]
            assert notes["ticket"] == ticket.id
            assert notes["console"] == f"{app.api_url}/console/tickets/{ticket.id}"
            assert notes["summary"].startswith("水泵干转（进口压力 "), notes["summary"]
            assert alert["status"]["state"] == "active"
            # Alertmanager told its own receiver: the same alert, firing, with the ticket.
            fired = await eventually(lambda: notified(webhooks, "firing", "A-P1"), 15)
            assert fired[0]["annotations"]["ticket"] == ticket.id

            site.clear("A-P1", "dry_run")
            resolved = await eventually(lambda: notified(webhooks, "resolved", "A-P1"), 45)
            ends = resolved[0]["endsAt"]
            assert ends.startswith(time.strftime("%Y-%m-%d", time.gmtime())) and resolved[0]["labels"][
                "rule"
            ] == ("pump.dry_run")
            await eventually(lambda: held(alertmanager, "pump.dry_run", "A-P1") is None, 15)
            assert app.core.desk.tickets[ticket.id].state == "resolved"

    run(scenario(), timeout=150)


def test_a_dead_or_hanging_alertmanager_holds_up_nothing_and_is_counted(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, alertmanager: Alertmanager
) -> None:
    """Two Alertmanagers, one hanging (accepts, never answers), one not running yet: the fault is
    still ticketed and paged, the failed posts are counted, and once one answers the alert is there."""
    hole = BlackHole()
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    am = AlertmanagerConfig(url=[hole.url(""), alertmanager.url], resend=2.0, timeout=1.0)
    config = config.model_copy(update={"alertmanager": am})
    metrics_port = free_port()

    async def scenario() -> None:
        async with running(config, metrics_port=metrics_port) as (site, app):
            await eventually(lambda: good(app, "A-P1", "suction_pressure"), 15)
            site.inject("A-P1", "dry_run")
            page = await eventually(lambda: webhooks.to("plumbing-tech"), 30)
            assert page[0]["asset"] == "A-P1" and page[0]["event"] == "opened"
            await eventually(
                lambda: (metric(metrics_port, "monitord_alertmanager_undelivered_total") or 0) >= 1, 15
            )
            assert app.core.desk.open_ticket_for_rule("pump.dry_run", "A-P1") is not None
            await asyncio.to_thread(alertmanager.start)
            alert = await eventually(lambda: held(alertmanager, "pump.dry_run", "A-P1"), 20)
            ticket = app.core.desk.open_ticket_for_rule("pump.dry_run", "A-P1")
            assert ticket is not None and alert["annotations"]["ticket"] == ticket.id

    try:
        run(scenario(), timeout=150)
    finally:
        hole.close()


def test_a_restart_pushes_what_still_fires_before_alertmanager_lets_it_expire(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, alertmanager: Alertmanager
) -> None:
    """The pump is still dry when the daemon restarts: the restored alert fires on without a new
    alert event, and the new daemon pushes it again at once (same ticket), so Alertmanager keeps it."""
    alertmanager.start()
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    config = config.model_copy(
        update={"alertmanager": AlertmanagerConfig(url=[alertmanager.url], resend=30.0)}
    )

    async def daemon() -> tuple[Monitord, asyncio.Task[None]]:
        app = Monitord(config)
        task = asyncio.create_task(app.run())
        await app.started.wait()
        return app, task

    async def scenario() -> None:
        async with simulated(config) as site:
            first, task = await daemon()
            await eventually(lambda: good(first, "A-P1", "suction_pressure"), 15)
            site.inject("A-P1", "dry_run")
            before = await eventually(lambda: ticketed(held(alertmanager, "pump.dry_run", "A-P1")), 30)
            first.stop()
            await task
            second, task = await daemon()
            try:
                after = await eventually(
                    lambda: newer(held(alertmanager, "pump.dry_run", "A-P1"), before["updatedAt"]), 15
                )
                assert after["annotations"]["ticket"] == before["annotations"]["ticket"]
                assert after["endsAt"] > before["endsAt"] and after["startsAt"] == before["startsAt"]
            finally:
                second.stop()
                await task

    run(scenario(), timeout=120)
    store = SqliteStore(tmp_path / "store.db")
    fired = [e for e in store.alert_events() if e.asset == "A-P1" and e.state == "firing"]
    store.close()
    assert len(fired) == 1, "the push after the restart was the restored alert's, not a new firing"


def newer(alert: dict[str, Any] | None, than: str) -> dict[str, Any] | None:
    return alert if alert and alert["updatedAt"] > than else None


def test_life_safety_alerts_are_pushed_like_any_other(
    webhooks: WebhookReceiver, alertmanager: Alertmanager
) -> None:
    """A trapped passenger goes to Alertmanager (nothing is filtered), with the root ticket that
    explains a dependant's alert, and ends there at its resolve time."""
    alertmanager.start()
    lift = Asset("A-E2", "elevator", "Passenger lift 2", {"building": "A", "shaft": 2})
    push = AlertmanagerPush(
        AlertmanagerConfig(url=[alertmanager.url], resend=60.0),
        "tower-a",
        {"A-E2": lift},
        "http://desk/console",
        Metrics(),
    )
    now = time.time()
    trapped = AlertEvent(
        now, "elevator.entrapment_between_floors", "A-E2", "firing", "critical", now - 30, "trapped"
    )
    try:
        push.on_alert(trapped)
        push.on_ticket(
            TicketEvent(
                now,
                "WO-TA-20261201-0001",
                "k",
                "opened",
                "open",
                "A-E2",
                trapped.rule,
                "P1",
                "elevator",
                "trapped",
            )
        )
        alert = eventually_sync(lambda: ticketed(held(alertmanager, trapped.rule, "A-E2")))
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["building"] == "A"
        assert alert["annotations"]["console"] == "http://desk/console/tickets/WO-TA-20261201-0001"
        push.on_alert(
            AlertEvent(time.time(), trapped.rule, "A-E2", "resolved", "critical", now - 30, "freed")
        )
        resolved = eventually_sync(lambda: notified(webhooks, "resolved", "A-E2"))
        assert resolved[0]["annotations"]["ticket"] == "WO-TA-20261201-0001"
    finally:
        push.close()


def ticketed(alert: dict[str, Any] | None) -> dict[str, Any] | None:
    return alert if alert and alert["annotations"].get("ticket") else None


def eventually_sync(probe: Any, timeout: float = 15.0) -> Any:
    async def wait() -> Any:
        return await eventually(probe, timeout)

    return run(wait(), timeout=timeout + 5)


def test_the_alertmanager_section_is_checked_with_file_and_line(tmp_path: Path) -> None:
    bad = problems(tmp_path, GOOD + "alertmanager: {url: [ftp://am:9093, 'http://am2:9093'], resend: 0s}\n")
    assert any(p.startswith("site.yaml:") and "alertmanager.url" in p for p in bad), bad
    assert any(p.startswith("site.yaml:") and "alertmanager.resend" in p for p in bad), bad
    assert len(bad) == 2, bad
    assert problems(tmp_path, GOOD + "alertmanager: {}\n") != []
    one = load_config(write(tmp_path, GOOD + "alertmanager: {url: 'http://am:9093', resend: 30s}\n"))
    assert one.alertmanager is not None and one.alertmanager.url == ["http://am:9093"]
    assert one.alertmanager.resend == 30.0
