"""The pieces of an HA pair that need no second monitord: the config refused without a broker or a shared
store, instance names, an outbox that holds and adopts what the other instance sent, shared silences,
and the sent keys and silences in a real InfluxDB."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from paho.mqtt.enums import MQTTErrorCode

from monitord.alerting.mute import Matcher, MuteStages, Silence
from monitord.alerting.tracker import AlertTracker, PendingFile
from monitord.config.fleet import FleetConfig, Member
from monitord.config.site import load_config
from monitord.core.errors import ConfigError, StoreError
from monitord.daemon.fleet import FleetLink
from monitord.daemon.fleet_messages import ACTIVE, STANDBY, Claim, Presence
from monitord.people.notify import Notification, Outbox
from monitord.store.influx import InfluxStore, InfluxTarget
from monitord.store.shared import SharedLog
from monitord.tools.fleet import fleet_lines
from tests.support.configs import GOOD, check, problems, write
from tests.support.influx import InfluxServer, V2WriteProxy
from tests.support.net import eventually


def test_ha_needs_a_broker_and_a_shared_store_named_at_the_fleet_key(tmp_path: Path) -> None:
    text = GOOD + "fleet:\n  mode: ha\n"
    line = text.splitlines().index("  mode: ha") + 1
    assert problems(tmp_path, text) == [
        f"site.yaml:{line} fleet.mode: mode ha needs a shared store (store: kind: influxdb), not SQLite"
    ]
    no_broker = text.replace('mqtt: {url: "mqtt://127.0.0.1:1883"}\n', "")
    found = problems(tmp_path, no_broker)
    assert f"site.yaml:{line - 1} fleet.mode: mode ha needs the site's mqtt: broker (leadership)" in found
    shared = text.replace("fleet:", "store: {kind: influxdb, url: 'http://127.0.0.1:1', bucket: b}\nfleet:")
    done = check(write(tmp_path, shared))
    assert done.returncode == 0, done.stderr


def test_an_instance_name_is_a_topic_level_and_a_folder_name() -> None:
    assert Member.from_args("tower-a.1_b", None).instance == "tower-a.1_b"
    for bad in ("a/b", "a+", "#", "a b", "-a"):
        with pytest.raises(ConfigError, match="--instance"):
            Member.from_args(bad, None)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.got = threading.Event()

    def send(self, n: Notification) -> None:
        self.sent.append(n.key)
        self.got.set()


def page(key: str) -> Notification:
    return Notification(
        key, "test", "addr", "tech", "WO-1", "opened", "P1", "P1", "pump", "", "dry", 0, 0, "", ""
    )


def test_a_held_outbox_sends_nothing_and_never_what_the_other_instance_sent(tmp_path: Path) -> None:
    channel = Recorder()
    recorded: list[tuple[str, str]] = []
    outbox = Outbox(tmp_path / "log.db", {"test": channel}, held=True)
    outbox.record = lambda key, _ts, channel, _r, ticket: recorded.append((key, ticket))
    try:
        assert outbox.submit(page("WO-1:0:tech:test")) and outbox.submit(page("WO-1:1:lead:test"))
        assert outbox.status("WO-1:0:tech:test") == "pending"
        # Adopted from the shared store: the dead active delivered level 0 before it died.
        assert outbox.adopt([("WO-1:0:tech:test", time.time(), "test", "tech", "WO-1")]) == 1
        assert not channel.got.wait(0.3)  # held: the lane never saw it (no attempt, nothing sent)
        assert outbox.release() == 1
        assert channel.got.wait(10)
        deadline = time.monotonic() + 10
        while not recorded and time.monotonic() < deadline:
            time.sleep(0.01)
        assert channel.sent == ["WO-1:1:lead:test"]
        assert recorded == [("WO-1:1:lead:test", "WO-1")]  # handed to the shared store once delivered
        assert not outbox.submit(page("WO-1:0:tech:test"))  # a resend after the takeover: dropped
    finally:
        outbox.close()


def test_silences_set_on_the_other_instance_are_adopted_and_an_early_end_wins(tmp_path: Path) -> None:
    told: list[Silence] = []
    mine = MuteStages([], tmp_path / "log.db")
    mine.on_change = told.append
    s = mine.add_silence(Matcher(rules=["pump.dry_run"]), "wang", "pump replaced", 3600, now=1000.0)
    assert told == [s]
    theirs = Silence("abcd1234", Matcher(assets=["P1"]), "li", "tank cleaning", 1000.0, 9000.0)
    ended = Silence(s.id, s.matcher, s.author, s.reason, s.created, 2000.0)  # expired early over there
    assert mine.adopt([theirs, ended]) == 2
    again = MuteStages([], tmp_path / "log.db")  # kept in the local log like one set here
    assert {(x.id, x.expires) for x in again.silences} == {(s.id, 2000.0), ("abcd1234", 9000.0)}
    assert mine.adopt([s]) == 0  # the longer original does not undo the expiry


def test_the_fleet_listing_reads_in_the_sites_language(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.replace("name: Test}", "name: Test, locale: zh-CN}")))
    a = Presence("a", "online", "ha", "active", since=0.0, pid=7, host="h1", api="http://h1:9109")
    b = Presence("b", "offline", "ha", "standby", since=0.0, pid=8, host="h2")
    lines = fleet_lines(config, [a, b], Claim("a", 3))
    assert lines[0] == "t1（single）：2 个实例中 1 个在线，主用 a（第 3 次接管）"
    assert lines[1].startswith("  a：主用，自 ") and lines[1].endswith(
        "起在线，主机 h1 进程 7, http://h1:9109"
    )
    assert lines[2].startswith("  b：备用，") and "离线" in lines[2]
    assert fleet_lines(config, [], None) == ["t1：代理服务器上没有任何实例上线"]


def test_sent_keys_and_silences_round_trip_through_a_real_influxdb_per_site(
    tmp_path: Path, influxdb: tuple[InfluxServer, V2WriteProxy]
) -> None:
    server, proxy = influxdb
    target = InfluxTarget(proxy.url, "monitord")
    ours = SharedLog(InfluxStore(target, "tower-a", {}, tmp_path / "a", writer=False))
    theirs = SharedLog(InfluxStore(target, "tower-b", {}, tmp_path / "b", writer=False))
    ours.record_sent("WO-1:0:王师傅:wecom", 1_795_000_000.5, "wecom", "王师傅", "WO-1")
    ours.record_sent("WO-1:0:王师傅:wecom", 1_795_000_000.5, "wecom", "王师傅", "WO-1")  # a retry: one
    theirs.record_sent("WO-7:0:li:webhook", 1_795_000_001.0, "webhook", "li", "WO-7")
    assert ours.sent() == [("WO-1:0:王师傅:wecom", 1_795_000_000.5, "wecom", "王师傅", "WO-1")]
    s = Silence(
        "abcd1234", Matcher(rules=["pump.*"], assets=["A-P1"]), "wang", 'dry run "test", ok', 1e9, 1e9 + 3600
    )
    ours.record_silence(s)
    ours.record_silence(Silence(s.id, s.matcher, s.author, s.reason, s.created, 1e9 + 60))  # expired early
    assert ours.silences() == [Silence(s.id, s.matcher, s.author, s.reason, s.created, 1e9 + 60)]
    assert theirs.silences() == []
    assert len(server.query("SELECT * FROM notification")) == 2
    down = SharedLog(
        InfluxStore(
            InfluxTarget("http://127.0.0.1:1", "monitord"), "tower-a", {}, tmp_path / "c", writer=False
        )
    )
    with pytest.raises(StoreError, match="shared write failed"):
        down.record_sent("k", 1.0, "webhook", "x", "WO-1")


def test_the_actives_pending_timers_reach_the_next_active_as_a_restart_resumes_them(tmp_path: Path) -> None:
    assets = {"r#pump": ["P1", "P2"]}
    tracker = AlertTracker()
    yes, no = np.array([False, True]), np.array([False, False])
    tracker.update("r#pump", yes, no, hold_for=30, clear_for=0, now=100)
    told: list[str] = []
    active = PendingFile(tmp_path / "a" / "pending-alerts.json")
    active.on_saved = told.append  # the fleet link publishes it, retained
    active.save(tracker, assets, now=110)
    [text] = told
    standby = PendingFile(tmp_path / "b" / "pending-alerts.json")
    fresh = AlertTracker()
    assert standby.restore_from(text, fresh, assets, now=112, source="the last active") == 1
    assert fresh.update("r#pump", yes, no, hold_for=30, clear_for=0, now=125) == []  # resumed at 100
    [fired] = fresh.update("r#pump", yes, no, hold_for=30, clear_for=0, now=130)
    assert (fired.index, fired.state, fired.since) == (1, "firing", 100)
    assert standby.restore_from(text, AlertTracker(), assets, now=110 + 61, source="x") == 0  # too old
    assert standby.restore_from("{broken", AlertTracker(), assets, now=111, source="x") == 0


def test_an_instance_that_leads_again_while_its_last_act_is_ending_acts_again() -> None:
    """Demoted (its own beat came back late after a stalled loop), then active again at once (the beat's
    echo), while the old act is still ending: the link must start acting again, not stay 'active' with
    nothing polling or deciding."""

    async def scenario() -> None:
        link = FleetLink("tower-a", Member("a"), FleetConfig(mode="ha"), ("127.0.0.1", 1), client_id="t")
        link.client.connect_async = lambda *_a, **_k: None  # type: ignore[method-assign]
        link.client.loop_start = lambda: MQTTErrorCode.MQTT_ERR_SUCCESS  # type: ignore[method-assign]
        started: list[float] = []

        async def act() -> None:
            started.append(time.monotonic())
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.2)  # standing down takes turns of the loop (drivers closing)

        serving = asyncio.create_task(link.serve(act))
        try:
            link._set_role(ACTIVE)
            await eventually(lambda: len(started) == 1, 5, 0.01)
            link._set_role(STANDBY)
            await asyncio.sleep(0.05)  # the old act is ending
            link._set_role(ACTIVE)
            await eventually(lambda: len(started) == 2, 5, 0.01)
            assert link.role == ACTIVE
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving

    asyncio.run(scenario())
