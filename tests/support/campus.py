"""A sharded campus for the shard tests and bench/shard_facts.py: a site file of many one-register
meters behind a few Modbus gateway ports, a feeder pinned to shard 1 and its dependants to shard 2,
and the simulators' halves of it: stopping the feeder's takes it dark with what it feeds
(docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.daemon import TOKEN
from tests.support.net import free_port

SHARDS = 3
DEPENDANTS = [f"D-{i}" for i in range(1, 9)]


@dataclass(frozen=True)
class Campus:
    site: str  # the site file every shard reads
    feeder: str  # the same site with only the feeder and its dependants: a simulator to stop
    rest: str  # the same site with every other asset: the simulator that keeps running


def campus(mqtt_port: int, total: int = 3000, bulk_ports: int = 15, bulk_fed: bool = False) -> Campus:
    """One meter profile with one register (cheap devices): feeder F on a line of its own pinned to
    shard 1, its eight dependants on a line pinned to shard 2, and the rest by hash, 10 s polls, on
    ``bulk_ports`` lines (``bulk_fed``: every one of them fed by F too)."""
    feeder, dependants = free_port(), free_port()
    ports = [free_port() for _ in range(bulk_ports)]

    def meter(asset: str, port: int, unit: int, extra: str = "") -> str:
        conn = f"{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
        return f"  - {{id: {asset}, type: power_meter, profile: meter, connection: {conn}{extra}}}"

    head = [
        "site: {id: campus}",
        f"mqtt: {{url: 'mqtt://127.0.0.1:{mqtt_port}', client_id: campus}}",
        "store: {kind: sqlite, path: '${SHARD_DATA}/monitord.db'}",
        f"api: {{port: 0, token: {TOKEN}}}",  # reads of the API need a token
        "poll: 10s",
        f"fleet: {{mode: shard, shards: {SHARDS}, pin: {{F: 1, D-1: 2}}}}",
        "profiles:",
        "  - {profile: meter, asset_type: power_meter, modbus: {}, points: {voltage: {address: 0}}}",
        "rules:",
        "  - {id: comms.offline, applies_to: {}, when: offline, clear_for: 2s,",
        "     ticket: {priority: P2, skill: it}}",
        "  - {id: comms.gateway_down, applies_to: {type: gateway}, root_cause: true,",
        "     when: 'devices_online == 0 and devices_total >= 2', ticket: {priority: P2, skill: it}}",
        "assets:",
    ]
    fed = [
        meter("F", feeder, 1, ", poll: 1s"),
        *(meter(d, dependants, i, ", poll: 1s, depends_on: [F]") for i, d in enumerate(DEPENDANTS, 1)),
    ]
    bulk = total - 1 - len(DEPENDANTS)
    per = -(-bulk // bulk_ports)
    also = ", depends_on: [F]" if bulk_fed else ""
    rest = [meter(f"M-{n:04d}", ports[n // per], n % per + 1, also) for n in range(bulk)]
    # The simulators' files are the site's own, less the other part (and no pins to what is gone).
    sim = [line.replace(", pin: {F: 1, D-1: 2}", "") for line in head]
    return Campus(
        "\n".join(head + fed + rest) + "\n", "\n".join(sim + fed) + "\n", "\n".join(sim + rest) + "\n"
    )


# -- a small sharded site for the timeline and link tests ----------------------------------------

SITE = """\
site: {{id: campus}}
mqtt: {{url: 'mqtt://127.0.0.1:1'}}
poll: 1s
fleet: {{mode: shard, shards: {shards}{pin}}}
profiles:
  - {{profile: meter, asset_type: power_meter, modbus: {{}}, points: {{voltage: {{address: 0}}}}}}
  - {{profile: lift, asset_type: elevator, modbus: {{}}, points: {{trapped: {{address: 0}}}}}}
rules:
  - {{id: comms.offline, applies_to: {{}}, when: offline, clear_for: 2s, ticket: {{priority: P2, skill: it}}}}
  - {{id: lift.trapped, applies_to: {{type: elevator}}, when: "trapped == 1", for: 2s, life_safety: true,
     severity: critical, ticket: {{priority: P1, skill: elevator}}}}
assets:
{assets}"""


def meters(ids: list[str], port: int = 1502) -> str:
    conn = "{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
    return "".join(
        f"  - {{id: {a}, type: power_meter, profile: meter,"
        f" connection: {conn.format(port=port, unit=i + 1)}}}\n"
        for i, a in enumerate(ids)
    )


def lifts(ids: list[str], supply: str, port: int) -> str:
    conn = "{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
    return "".join(
        f"  - {{id: {a}, type: elevator, profile: lift, depends_on: [{supply}],"
        f" connection: {conn.format(port=port, unit=i + 1)}}}\n"
        for i, a in enumerate(ids)
    )


def site(assets: str, shards: int = 3, pin: str = "") -> str:
    return SITE.format(assets=assets, shards=shards, pin=f", pin: {{{pin}}}" if pin else "")
