"""Alerts pushed to Debian's real Prometheus Alertmanager (``POST /api/v2/alerts``).

The demo site's simulators over real sockets and the daemon in this process;
Alertmanager in its own process, notifying a real HTTP receiver (with resolved
alerts). A fault shows up in Alertmanager with its labels and ticket; it
resolves there when the fault clears; a dead (and a hanging) Alertmanager holds
nothing up and is counted, and the alert arrives once one answers.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

from monitord.alerting.mute import MaintenanceWindow, Matcher, MuteStages
from monitord.alerting.tracker import AlertEvent
from monitord.config.site import load_config
from monitord.core.assets import Asset
from monitord.core.metrics import Metrics
from monitord.daemon.app import Monitord
from monitord.people.alertmanager import AlertmanagerConfig, AlertmanagerPush
from monitord.people.am_silences import SilenceMirror, glob_regex, matchers_of, window_end
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketEvent
from tests.support import (
    BlackHole,
    WebhookReceiver,
    demo_site,
    good,
    metric,
    post,
    running,
    simulated,
    token_of,
    with_people,
)
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


# -- monitord's silences and maintenance windows, mirrored as Alertmanager silences ------------------

ENTRAPMENT = "elevator.entrapment_between_floors"  # life safety
LIFT = Asset("A-E2", "elevator", "Passenger lift 2", {"building": "A", "shaft": 2})
PUMP = Asset("A-P1", "pump", "Domestic water pump 1", {"building": "A"})


def state(manager: Alertmanager, rule: str, asset: str) -> str:
    alert = held(manager, rule, asset)
    return str(alert["status"]["state"]) if alert else "absent"


def mirrors(manager: Alertmanager) -> list[dict[str, Any]]:
    """monitord's silences that Alertmanager holds now (not expired)."""
    return [
        s for s in manager.silences() if s["createdBy"] == "monitord" and s["status"]["state"] != "expired"
    ]


def test_a_silence_in_monitord_suppresses_in_alertmanager_until_lifted_never_a_life_safety_alert(
    tmp_path: Path, alertmanager: Alertmanager
) -> None:
    """Silence the lift in monitord: its door alert is suppressed in Alertmanager, the trapped passenger
    on the same lift stays active (also under a silence naming the entrapment rule, which monitord
    obeys, audited); a restart posts no second silence; lifting it makes the door alert active again."""
    alertmanager.start()
    am = AlertmanagerConfig(url=[alertmanager.url], resend=60.0, timeout=2.0)
    assets = {"A-E2": LIFT, "A-P1": PUMP}
    mute = MuteStages([], tmp_path / "notifications.db")
    metrics = Metrics()
    push = AlertmanagerPush(am, "tower-a", assets, "http://desk/console", metrics, {ENTRAPMENT})
    mirror = SilenceMirror(am, "tower-a", "en", assets, mute, time.time, metrics)
    now = time.time()
    push.on_alert(AlertEvent(now, "elevator.door_stuck", "A-E2", "firing", "warning", now - 5, "door"))
    push.on_alert(AlertEvent(now, ENTRAPMENT, "A-E2", "firing", "critical", now - 5, "trapped"))
    mirror.start()
    try:
        eventually_sync(lambda: state(alertmanager, "elevator.door_stuck", "A-E2") == "active")
        assert held(alertmanager, ENTRAPMENT, "A-E2")["labels"]["life_safety"] == "true"  # type: ignore[index]
        assert "life_safety" not in held(alertmanager, "elevator.door_stuck", "A-E2")["labels"]  # type: ignore[index]

        lift = mute.add_silence(Matcher(assets=["A-E2"]), "王工", "door contractor on site", 600)
        eventually_sync(lambda: state(alertmanager, "elevator.door_stuck", "A-E2") == "suppressed")
        assert state(alertmanager, ENTRAPMENT, "A-E2") == "active"
        (silence,) = mirrors(alertmanager)
        assert {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]} == {
            ("site", "tower-a", False, True),
            ("asset", "A-E2", True, True),
            ("life_safety", "true", False, False),
        }
        assert silence["comment"].startswith(
            "silenced in monitord by 王工: door contractor on site [monitord "
        )
        assert abs(iso(silence["endsAt"]) - lift.expires) < 0.01
        assert held(alertmanager, "elevator.door_stuck", "A-E2")["status"]["silencedBy"] == [silence["id"]]  # type: ignore[index]

        named = mute.add_silence(Matcher(assets=["A-E2"], rules=[ENTRAPMENT]), "李工", "rescue drill", 600)
        eventually_sync(lambda: len(mirrors(alertmanager)) == 2)
        assert state(alertmanager, ENTRAPMENT, "A-E2") == "active", "no mirror covers a life-safety alert"

        mirror.close()  # a restart: the new mirror reads Alertmanager's back and posts nothing twice
        again = Metrics()
        mirror = SilenceMirror(am, "tower-a", "en", assets, mute, time.time, again)
        mirror.sync()
        assert len(mirrors(alertmanager)) == 2
        calls = "monitord_alertmanager_silence_calls_total"
        assert again.registry.get_sample_value(calls, {"what": "list", "outcome": "sent"}) == 1
        assert again.registry.get_sample_value(calls, {"what": "post", "outcome": "sent"}) is None

        mute.expire(named.id)
        mute.expire(lift.id)
        mirror.start()
        eventually_sync(lambda: state(alertmanager, "elevator.door_stuck", "A-E2") == "active")
        # The two mirrors are expired one call after the other: wait for the second as well.
        eventually_sync(lambda: mirrors(alertmanager) == [])
        assert state(alertmanager, ENTRAPMENT, "A-E2") == "active"
    finally:
        mirror.close()
        push.close()


def test_a_maintenance_window_is_silenced_there_until_its_end_and_a_dead_alertmanager_holds_nothing_up(
    tmp_path: Path, alertmanager: Alertmanager
) -> None:
    """定期保养 of the pumps (by type and rule glob): the mirror waits out a dead Alertmanager, then
    silences the pump's alert until the window's end; the window taken out of the config (a restart)
    lifts it there."""
    am = AlertmanagerConfig(url=[alertmanager.url], resend=60.0, timeout=1.0)
    assets = {"A-E2": LIFT, "A-P1": PUMP}
    now = time.time()
    start, end = (
        datetime.datetime.fromtimestamp(now - 60, datetime.UTC),
        datetime.datetime.fromtimestamp(now + 900, datetime.UTC),
    )
    window = MaintenanceWindow(
        id="pump-pm", match=Matcher(types=["pump"], rules=["pump.*"]), reason="定期保养", start=start, end=end
    )
    metrics = Metrics()
    mirror = SilenceMirror(am, "tower-a", "zh-CN", assets, MuteStages([window], None), time.time, metrics)
    mirror.sync()  # Alertmanager not started: nothing waits on it
    failed = metrics.registry.get_sample_value(
        "monitord_alertmanager_silence_calls_total", {"what": "list", "outcome": "failed"}
    )
    assert failed == 1
    alertmanager.start()
    push = AlertmanagerPush(am, "tower-a", assets, "http://desk/console", metrics, {ENTRAPMENT})
    push.on_alert(AlertEvent(now, "pump.dry_run", "A-P1", "firing", "critical", now - 5, "dry"))
    try:
        eventually_sync(lambda: state(alertmanager, "pump.dry_run", "A-P1") == "active")
        mirror.sync()
        eventually_sync(lambda: state(alertmanager, "pump.dry_run", "A-P1") == "suppressed")
        (silence,) = mirrors(alertmanager)
        assert abs(iso(silence["endsAt"]) - end.timestamp()) < 0.01
        assert silence["comment"].startswith("monitord 维护窗口 pump-pm：定期保养")
        assert {(m["name"], m["value"]) for m in silence["matchers"]} == {
            ("site", "tower-a"),
            ("asset", "A-P1"),
            ("rule", "pump\\..*"),
            ("life_safety", "true"),
        }
        lifted = SilenceMirror(am, "tower-a", "zh-CN", assets, MuteStages([], None), time.time, Metrics())
        lifted.sync()
        assert mirrors(alertmanager) == []
        eventually_sync(lambda: state(alertmanager, "pump.dry_run", "A-P1") == "active")
    finally:
        push.close()


def test_an_ha_standby_mirrors_nothing_and_on_takeover_adopts_the_actives_mirror(
    tmp_path: Path, alertmanager: Alertmanager
) -> None:
    """The standby's mutes are not the site's until it takes over: it neither posts nor expires; once
    it acts (with the silences adopted from the shared store) it finds the active's mirror and keeps it."""
    alertmanager.start()
    am = AlertmanagerConfig(url=[alertmanager.url], resend=60.0, timeout=2.0)
    assets = {"A-E2": LIFT, "A-P1": PUMP}
    active = MuteStages([], tmp_path / "a" / "notifications.db")
    standby = MuteStages([], tmp_path / "b" / "notifications.db")
    silence = active.add_silence(Matcher(rules=["pump.*"]), "王工", "valve swap", 600)
    SilenceMirror(am, "tower-a", "en", assets, active, time.time, Metrics()).sync()
    (first,) = mirrors(alertmanager)
    metrics = Metrics()
    second = SilenceMirror(am, "tower-a", "en", assets, standby, time.time, metrics)
    second.acting = False
    second.sync()
    assert len(mirrors(alertmanager)) == 1, "a standby expires nothing"
    assert (
        metrics.registry.get_sample_value(
            "monitord_alertmanager_silence_calls_total", {"what": "list", "outcome": "sent"}
        )
        is None
    )
    standby.adopt([silence])  # the takeover reads the site's silences from the shared store
    second.acting = True
    second.sync()
    assert [s["id"] for s in mirrors(alertmanager)] == [first["id"]]
    assert (
        metrics.registry.get_sample_value(
            "monitord_alertmanager_silence_calls_total", {"what": "post", "outcome": "sent"}
        )
        is None
    )


def test_a_silence_set_through_the_daemons_api_is_mirrored_and_lifted_the_trapped_passenger_never(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver, alertmanager: Alertmanager
) -> None:
    """The daemon, its simulated site and its API: a dry pump and a trapped passenger; a dispatcher
    silences both assets through ``POST /silences``: the pump is suppressed in Alertmanager, the
    entrapment stays active (monitord itself pages it too); expiring the silence makes the pump active."""
    alertmanager.start()
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    am = AlertmanagerConfig(url=[alertmanager.url], resend=5.0)
    config = config.model_copy(update={"alertmanager": am})

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "suction_pressure"), 15)
            site.inject("A-P1", "dry_run")
            site.inject("A-E2", "entrapment")
            await eventually(lambda: state(alertmanager, "pump.dry_run", "A-P1") == "active", 30)
            await eventually(lambda: state(alertmanager, ENTRAPMENT, "A-E2") == "active", 45)
            body = {"matcher": {"assets": ["A-P1", "A-E2"]}, "reason": "pump room works", "expires_in": "1h"}
            lead = token_of("plumbing-lead")
            status, silence = await asyncio.to_thread(post, app.api_url + "/silences", body, lead)
            assert status == 201, silence
            await eventually(lambda: state(alertmanager, "pump.dry_run", "A-P1") == "suppressed", 15)
            assert state(alertmanager, ENTRAPMENT, "A-E2") == "active"
            (mirror,) = mirrors(alertmanager)
            assert "plumbing-lead" in mirror["comment"] and "pump room works" in mirror["comment"]
            expire = f"{app.api_url}/silences/{silence['id']}/expire"
            status, _ = await asyncio.to_thread(post, expire, {}, lead)
            assert status == 200
            await eventually(lambda: state(alertmanager, "pump.dry_run", "A-P1") == "active", 15)
            assert state(alertmanager, ENTRAPMENT, "A-E2") == "active" and mirrors(alertmanager) == []

    run(scenario(), timeout=150)


def iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_matchers_globs_and_window_ends_as_alertmanager_needs_them() -> None:
    """Pure logic: RE2 regexes Alertmanager anchors, assets resolved by type and tag, nothing for a
    matcher that covers no asset here, and a weekly slot's end (24:00 is the next midnight)."""
    assert glob_regex("pump.*") == "pump\\..*" and glob_regex("a[!bc]?") == "a[^bc]."
    assets = {"A-P1": PUMP, "A-E2": LIFT, "B-P1": Asset("B-P1", "pump", "", {}, tags=("roof",))}
    by_tag = matchers_of(Matcher(types=["pump"], tags=["roof"]), "s", assets)
    assert by_tag is not None and ("asset", "B-P1", True, True) in by_tag
    assert matchers_of(Matcher(assets=["Z-9"]), "s", assets) is None
    slot = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "22:00", "end": "24:00"}
    window = MaintenanceWindow(id="night", match=Matcher(), weekly=[slot])
    at = datetime.datetime(2026, 12, 1, 23, 30, tzinfo=datetime.UTC).timestamp()
    assert (
        window_end(window, at, datetime.UTC)
        == datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC).timestamp()
    )
