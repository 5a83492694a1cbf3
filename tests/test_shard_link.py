"""The shards' wire over a real Mosquitto, built as the daemon builds it (``FleetRole``: one connection per
shard carrying its presence and its facts): two shards of a small campus exchange facts, a payload that is
not a fact is refused and counted, a fact from the wrong owner is ignored, a shard that dies (its last
will) takes its facts with it until it is back, an old connection's late will is answered, and a shard
that loses the broker drops what it can no longer hear (docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.publish as publish

from monitord.alerting.facts import Fact
from monitord.alerting.tracker import PendingFile
from monitord.config.fleet import Member
from monitord.config.site import SiteConfig, load_config
from monitord.daemon.fleet import FleetLink
from monitord.daemon.fleet_messages import Presence
from monitord.daemon.fleet_role import FleetRole
from monitord.daemon.shardlink import ShardLink
from monitord.tools.fleet import read_fleet
from tests.support import Timeline, eventually, run
from tests.support.campus import lifts, meters, site
from tests.support.configs import write
from tests.support.mosquitto import Mosquitto

LIFTS = ["L0", "L1", "L2", "L3"]


def campus(tmp_path: Path, port: int, topic: str) -> SiteConfig:
    text = site(meters(["F"], port=1700) + lifts(LIFTS, "F", 1701), pin="F: 1, L0: 2")
    text = text.replace("mqtt://127.0.0.1:1'", f"mqtt://127.0.0.1:{port}'")
    return load_config(write(tmp_path, text.replace("shards: 3", f"shards: 3, topic: {topic}")))


class Shards:
    """Shard links as ``Monitord`` wires them (its role, on a timeline's core), serving until cancelled."""

    def __init__(self, whole: SiteConfig, timeline: Callable[..., Timeline], folder: Path) -> None:
        self.whole, self.timeline, self.folder = whole, timeline, folder
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, k: int) -> tuple[Timeline, FleetLink, ShardLink]:
        tl = self.timeline(self.whole, shard=k)
        role = FleetRole.of(self.whole, Member(f"campus-{k}", k))
        role.wire(tl.core, PendingFile(self.folder / f"pending-{len(self.tasks)}.json"), {})
        assert role.link is not None and role.shard_link is not None
        self.tasks.append(asyncio.create_task(role.link.serve(asyncio.Event().wait)))
        return tl, role.link, role.shard_link

    async def feeder_told(self) -> tuple[Timeline, FleetLink, ShardLink]:
        """Shards 1 (the feeder's) and 2 (lifts it feeds), once shard 2 holds F's fact; shard 2's parts."""
        one, fleet1, _link1 = self.start(1)
        two, fleet2, link2 = self.start(2)
        await eventually(lambda: fleet1.connected and fleet2.connected, 10)
        one.run_until(1)  # an evaluation: every exported fact goes out
        await eventually(lambda: "F" in two.core.pipeline.remote, 10)
        return two, fleet2, link2

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


@contextlib.asynccontextmanager
async def shards(whole: SiteConfig, timeline: Callable[..., Timeline], folder: Path) -> AsyncIterator[Shards]:
    made = Shards(whole, timeline, folder)
    try:
        yield made
    finally:
        await made.stop()


def test_two_shards_exchange_facts_and_a_dead_shards_facts_are_dropped(
    tmp_path: Path, mosquitto: int, timeline: Callable[..., Timeline]
) -> None:
    whole = campus(tmp_path, mosquitto, "t-dead")
    topic = "t-dead/campus/facts/F"

    def send(payload: bytes) -> None:
        publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=mosquitto)

    async def scenario() -> None:
        async with shards(whole, timeline, tmp_path) as made:
            one, fleet1, _link1 = made.start(1)
            two, fleet2, link2 = made.start(2)
            await eventually(lambda: fleet1.connected and fleet2.connected, 10)
            one.run_until(1)  # an evaluation on each: every exported fact goes out
            two.run_until(1)
            await eventually(lambda: set(one.core.pipeline.remote) == set(LIFTS), 10)
            await eventually(lambda: "F" in two.core.pipeline.remote, 10)
            said = two.core.pipeline.remote["F"]
            assert (said.shard, said.offline, said.ticket) == (1, False, None)
            # Garbage is refused and counted; a fact of F from a shard that does not own it is ignored
            # (the garbage after it proves it was handled: QoS 1 from one publisher, in order).
            await asyncio.to_thread(send, b"{not json")
            await eventually(lambda: link2.refused == 1, 10)
            forged = Fact(
                "F", 0, offline=True, quiet=True, last_good=1.0, stale_after=3.0, poll=1.0, ticket="X"
            )
            await asyncio.to_thread(send, forged.encode())
            await asyncio.to_thread(send, b'{"asset": "F"}')
            await eventually(lambda: link2.refused == 2, 10)
            assert two.core.pipeline.remote["F"] == said
            # Shard 1 crashes (no goodbye): the broker sends the will of its one connection, its presence
            # goes offline, and shard 2 forgets F; shard 1's lift facts stay, it is the one that is gone.
            fleet1.client.loop_stop()
            sock = fleet1.client.socket()
            assert sock is not None
            sock.close()
            await eventually(lambda: "F" not in two.core.pipeline.remote, 10)
            assert link2.facts.gone == {0, 1}  # shard 0 never came: nothing of it counts either
            [gone] = [p for p in fleet2.presences.values() if p.instance == "campus-1"]
            assert not gone.online  # one will said both: the instance and its facts are gone
            # Shard 1 starts again: it says it is back, and F's fact counts again.
            again, fleet3, _link3 = made.start(1)
            await eventually(lambda: fleet3.connected, 10)
            again.run_until(1)
            await eventually(lambda: "F" in two.core.pipeline.remote, 10)
            assert link2.facts.gone == {0}

    run(scenario(), timeout=60)


def test_an_old_connections_late_will_is_answered_with_presence_and_facts(
    tmp_path: Path, mosquitto: int, timeline: Callable[..., Timeline]
) -> None:
    """A shard restarted before the broker noticed its old connection die: the old will ("offline"
    under its name) arrives after the new presence. It says online again and every fact the others
    dropped meanwhile; before, its retained presence stayed offline while it ran."""
    whole = campus(tmp_path, mosquitto, "t-late")

    async def scenario() -> None:
        async with shards(whole, timeline, tmp_path) as made:
            two, _fleet2, link2 = await made.feeder_told()
            taken = link2.received
            late = Presence("campus-1", "offline", "shard", "shard", shard=1, shards=3, pid=1).payload()
            topic = "t-late/campus/instances/campus-1"
            await asyncio.to_thread(
                publish.single, topic, late, qos=1, retain=True, hostname="127.0.0.1", port=mosquitto
            )
            # Shard 2 drops F with the will, then takes it again as shard 1 says it once more.
            await eventually(lambda: link2.received > taken and "F" in two.core.pipeline.remote, 10)
            assert link2.facts.gone == {0}
            presences, _claim = await asyncio.to_thread(read_fleet, whole, 0.3)
            [me] = [p for p in presences if p.instance == "campus-1"]
            assert me.online and me.shard == 1 and me.pid != 1  # the retained presence is its own again

    run(scenario(), timeout=60)


def test_a_shard_that_loses_the_broker_drops_remote_facts_and_says_its_own_again_after(
    tmp_path: Path, own_broker: Mosquitto, timeline: Callable[..., Timeline]
) -> None:
    """While a shard cannot hear the broker, a remote ticket may close unseen: its facts explain nothing
    more. A broker that comes back without its retained messages gets every fact again."""
    own_broker.start()
    whole = campus(tmp_path, own_broker.port, "monitord")

    async def scenario() -> None:
        async with shards(whole, timeline, tmp_path) as made:
            two, fleet2, link2 = await made.feeder_told()
            # Shard 2's connection breaks (shard 1's stays): F is dropped as the loss is seen, and back
            # with the retained messages once the link has reconnected.
            # What shard 2 believes right after each loss is seen (it reconnects a second later).
            after_loss: list[tuple[set[str], set[int]]] = []
            told = link2.disconnected

            def seen() -> None:
                told()
                after_loss.append((set(two.core.pipeline.remote), set(link2.facts.gone)))

            link2.disconnected = seen  # type: ignore[method-assign]  # an observer on the real link
            sock = fleet2.client.socket()
            assert sock is not None
            sock.shutdown(socket.SHUT_RDWR)
            await eventually(lambda: after_loss, 10)
            assert after_loss == [(set(), {0, 1})]
            await eventually(lambda: fleet2.connected and "F" in two.core.pipeline.remote, 10)
            await asyncio.to_thread(own_broker.stop)
            await eventually(lambda: len(after_loss) == 2, 10)
            assert after_loss[1] == (set(), {0, 1})
            await asyncio.to_thread(own_broker.start)  # persistence off: nothing retained survived
            await eventually(lambda: "F" in two.core.pipeline.remote, 15)
            assert link2.facts.gone == {0}
            assert two.core.pipeline.remote["F"].shard == 1

    run(scenario(), timeout=60)
