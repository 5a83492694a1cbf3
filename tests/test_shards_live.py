"""A sharded campus end to end: three ``monitord run --shard K`` processes over 3,000 simulated Modbus
devices (``monitord sim`` processes, real sockets) and a real Mosquitto carrying the shards' facts
(docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from monitord.config.shards import ShardPlan
from monitord.config.site import load_config
from monitord.daemon.app import with_gateways
from tests.support import eventually, get, run, text_of
from tests.support.campus import DEPENDANTS, SHARDS, campus

Tables = list[list[dict[str, Any]]]


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitord", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def api_of(log: Path) -> str | None:
    m = re.search(r"console: (http://\S+)/console", log.read_text(errors="replace"))
    return m.group(1) if m else None


def lines_polled(log: Path) -> set[str]:
    """The Modbus lines an instance has a poller for, from its /metrics."""
    m = re.search(r"metrics: (http://\S+)", log.read_text(errors="replace"))
    assert m is not None
    return set(re.findall(r'monitord_modbus_line_utilisation\{line="([^"]+)"\}', text_of(m.group(1))))


def broker_connections(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``port`` on this machine (from /proc)."""
    to_port: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                f = row.split()
                if int(f[2].rsplit(":", 1)[1], 16) == port and f[3] == "01":  # rem_address, ESTABLISHED
                    to_port.add(f"socket:[{f[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held += os.readlink(fd) in to_port
    return held


def test_three_shards_poll_3000_assets_once_and_a_feeder_on_shard_1_explains_shard_2(
    tmp_path: Path, mosquitto: int
) -> None:
    site = campus(mosquitto)
    path = tmp_path / "site.yaml"
    path.write_text(site.site)
    env = {**os.environ, "SHARD_DATA": str(tmp_path)}
    os.environ.setdefault("SHARD_DATA", str(tmp_path))  # for load_config here
    whole = with_gateways(load_config(path))
    plan = ShardPlan.of(whole)
    assert plan.owner["F"] == 1 and {plan.owner[d] for d in DEPENDANTS} == {2}
    assert all(plan.counts()), plan.counts()
    began = time.monotonic()

    with ExitStack() as stack:
        sims = []
        for part, text in (("feeder", site.feeder), ("rest", site.rest)):
            (tmp_path / f"{part}.yaml").write_text(text)
            args = ["sim", str(tmp_path / f"{part}.yaml")]
            sims.append(stack.enter_context(process(args, tmp_path / f"sim-{part}.log", env)))
        # The devices answer before any shard polls: a shard polling a simulator still starting would
        # see its lines down (a gateway_down ticket of its own, nothing to do with the outage).
        run(
            eventually(
                lambda: all(
                    "simulating" in (tmp_path / f"sim-{p}.log").read_text() for p in ("feeder", "rest")
                ),
                40,
            ),
            timeout=45,
        )
        logs = [tmp_path / f"shard{k}.log" for k in range(SHARDS)]
        shards: list[subprocess.Popen[bytes]] = []
        for k in range(SHARDS):
            (tmp_path / f"s{k}").mkdir()
            args = ["run", str(path), "--shard", str(k), "--instance", f"campus-{k}", "--metrics-port", "0"]
            shards.append(
                stack.enter_context(process(args, logs[k], {**env, "SHARD_DATA": str(tmp_path / f"s{k}")}))
            )

        async def campus_run() -> tuple[Tables, Tables, list[set[str]]]:
            apis = await eventually(lambda: all(api_of(x) for x in logs) and [api_of(x) for x in logs], 90)
            ready = time.time()
            print(f"three shards up {time.monotonic() - began:.1f} s after the start")

            def polled() -> list[list[dict[str, Any]]] | None:
                tables = [get(f"{api}/assets") for api in apis]
                return tables if all(a["last_good"] > ready for t in tables for a in t) else None

            tables = await eventually(polled, 40, interval=1.0)
            print(f"every asset polled {time.monotonic() - began:.1f} s after the start")
            pollers = [lines_polled(x) for x in logs]
            # One broker connection per shard (no MQTT devices here): its presence, its will and its facts.
            assert [broker_connections(p.pid, mosquitto) for p in shards] == [1] * SHARDS
            assert [get(f"{api}/tickets") for api in apis] == [[], [], []], "a quiet campus before the outage"
            sims[0].kill()  # the feeder's switch room loses power: F and all it feeds go dark at once
            dark = time.time()

            def explained(ticket: dict[str, Any]) -> set[str]:
                return {n.split(":")[0] for n in ticket["explained"]}

            # The feeder's shard opens its ticket; the dependants' shard explains its nine alerts (eight
            # meters, and their line's gateway) by it and says so: notes that come back onto that ticket.
            gateway = whole.asset("D-1").depends_on[-1]
            everything = {"F", gateway, *DEPENDANTS}
            ticket = await eventually(
                lambda: next((t for t in get(f"{apis[1]}/tickets") if explained(t) >= everything), None), 40
            )
            opened, complete = ticket["opened_at"] - dark, ticket["updated_at"] - dark
            print(f"after the outage: ticket {opened:.1f} s, every note on it {complete:.1f} s")
            assert (ticket["rule"], ticket["asset"]) == ("topology.supply_dark", "F")
            assert ticket["summary"].endswith("9 of 9 silent or faulted with it"), ticket["summary"]
            return tables, [get(f"{api}/tickets") for api in apis], pollers

        tables, desks, pollers = run(campus_run(), timeout=200)

    # every asset in exactly one instance's state table: the union is the site, no two overlap
    held = [{a["id"] for a in t} for t in tables]
    assert set().union(*held) == set(plan.owner)
    assert all(not (held[i] & held[j]) for i in range(SHARDS) for j in range(i + 1, SHARDS))
    assert [len(h) for h in held] == plan.counts(), "each shard holds what the plan gives it"
    # and every Modbus line has exactly one poller in the fleet, in the shard that owns its devices
    lines = {
        f"127.0.0.1:{a.connection.modbus.port}": plan.owner[a.id] for a in whole.assets if a.connection.modbus
    }
    assert set().union(*pollers) == set(lines) and sum(map(len, pollers)) == len(lines)
    assert all(lines[line] == k for k, mine in enumerate(pollers) for line in mine)
    # one ticket, for the feeder, on its shard; none for its dependants on shard 2 (nor anywhere else)
    assert [[(t["rule"], t["asset"]) for t in d] for d in desks] == [[], [("topology.supply_dark", "F")], []]
    print(f"wall time {time.monotonic() - began:.1f} s")
