"""The shards' wire over a real Mosquitto: two shards of a small campus exchange facts, a payload that
is not a fact is refused and counted, a fact from the wrong owner is ignored, and a shard that dies
(its last will) takes its facts with it until it is back (docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.publish as publish

from monitord.alerting.facts import Fact
from monitord.config.site import load_config
from monitord.daemon.shardlink import shard_link
from tests.support import Timeline, eventually, run
from tests.support.campus import lifts, meters, site
from tests.support.configs import write

LIFTS = ["L0", "L1", "L2", "L3"]


def test_two_shards_exchange_facts_and_a_dead_shards_facts_are_dropped(
    tmp_path: Path, mosquitto: int, timeline: Callable[..., Timeline]
) -> None:
    text = site(meters(["F"], port=1700) + lifts(LIFTS, "F", 1701), pin="F: 1, L0: 2")
    whole = load_config(
        write(tmp_path, text.replace("mqtt://127.0.0.1:1'", f"mqtt://127.0.0.1:{mosquitto}'"))
    )
    one, two = timeline(whole, shard=1), timeline(whole, shard=2)
    topic = "monitord/campus/facts/F"

    def send(payload: bytes) -> None:
        publish.single(topic, payload, qos=1, hostname="127.0.0.1", port=mosquitto)

    async def scenario() -> None:
        link1, link2 = shard_link(whole, one.core, 1), shard_link(whole, two.core, 2)
        tasks = [asyncio.create_task(link.run()) for link in (link1, link2)]
        try:
            await eventually(lambda: link1.client.is_connected() and link2.client.is_connected(), 10)
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
            # Shard 1 crashes (no goodbye): within 1.5 keep-alives the broker sends its will, and shard
            # 2 forgets F; shard 1's lifts facts stay where they were, it is the one that is gone.
            link1.client.loop_stop()
            sock = link1.client.socket()
            assert sock is not None
            sock.close()
            await eventually(lambda: "F" not in two.core.pipeline.remote, 10)
            assert link2.facts.gone == {1}
            # Shard 1 starts again (same client id): it says it is back, and F's fact counts again.
            again = timeline(whole, shard=1)
            link3 = shard_link(whole, again.core, 1)
            tasks.append(asyncio.create_task(link3.run()))
            await eventually(link3.client.is_connected, 10)
            again.run_until(1)
            await eventually(lambda: "F" in two.core.pipeline.remote, 10)
            assert link2.facts.gone == set()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    run(scenario(), timeout=60)
