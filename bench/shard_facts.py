"""Benchmark: what cross-shard topology costs a shard per evaluation (docs/scale-out.md#sharded-campus).

The live test's campus (3,000 one-register meters, three shards), shard 2's share built as the daemon
builds it, on a manual clock with no data arriving: the median time of one pipeline tick without the
fact step, of the fact step alone (only facts whose inputs moved are worked out), and of a step in
which every exported fact changed. Twice: as the campus is (nine assets with an edge to another
shard), and with every bulk meter fed by the feeder on shard 1 (every asset of the shard exported).
Never part of the tests.

    PYTHONPATH=. python bench/shard_facts.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from monitord.config.shards import ShardPlan, own_share
from monitord.config.site import load_config
from monitord.core.clock import ManualClock
from monitord.daemon.app import with_gateways
from monitord.daemon.core import build_core
from monitord.daemon.shardfacts import ShardFacts
from monitord.store.sqlite import SqliteStore
from tests.support.campus import campus

ROUNDS, TICKS = 5, 100


def measure(bulk_fed: bool, folder: Path) -> None:
    os.environ["SHARD_DATA"] = str(folder)
    text = campus(1883, bulk_fed=bulk_fed).site
    path = folder / f"campus-{bulk_fed}.yaml"
    path.write_text(text)
    whole = with_gateways(load_config(path))
    share = own_share(whole, 2)
    clock = ManualClock(1_800_000_000.0)
    core = build_core(share, clock, SqliteStore(folder / f"s-{bulk_fed}.db"), whole=whole)
    plan = ShardPlan.of(whole)
    polls = {a.id: whole.poll_of(a) for a in whole.assets}
    facts = ShardFacts(core.pipeline, 2, plan.owner, polls)
    core.pipeline.clock_steps.remove(facts.step)  # timed on its own below
    tick, step, every = [], [], []
    for r in range(ROUNDS):
        began = time.perf_counter()
        for i in range(TICKS):
            clock.set(1_800_000_000.0 + (r * TICKS + i) * 0.5)
            core.pipeline.tick()
        tick.append((time.perf_counter() - began) / TICKS)
        began = time.perf_counter()
        for _ in range(TICKS):
            facts.step(clock.now())
        step.append((time.perf_counter() - began) / TICKS)
        facts.said.clear()  # as if every exported fact had changed (an outage of the whole shard)
        facts.look_again()
        began = time.perf_counter()
        facts.step(clock.now())
        every.append(time.perf_counter() - began)
    print(
        f"shard 2: {len(share.assets)} assets, {len(facts.exported)} exported,"
        f" {len(facts.imported)} imported: "
        f"tick {statistics.median(tick) * 1000:.2f} ms, fact step {statistics.median(step) * 1000:.3f} ms,"
        f" a step where every fact changed {statistics.median(every) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        measure(False, Path(tmp))
        measure(True, Path(tmp))
