"""A sharded campus for the shard tests and bench/shard_facts.py: a site file of many one-register
meters behind a few Modbus gateway ports, a feeder pinned to shard 1 and its dependants to shard 2,
and a scenario that takes the feeder dark with them (docs/scale-out.md#sharded-campus)."""

from __future__ import annotations

from tests.support.net import free_port

SHARDS = 3
DEPENDANTS = [f"D-{i}" for i in range(1, 9)]


def campus(
    mqtt_port: int, total: int = 3000, bulk_ports: int = 15, dark_at: float = 55.0, bulk_fed: bool = False
) -> tuple[str, str]:
    """The site file (one meter profile with one register: cheap devices) and the scenario: feeder F on
    a line of its own pinned to shard 1, its eight dependants on a line pinned to shard 2, and the rest
    by hash, 10 s polls, on ``bulk_ports`` lines (``bulk_fed``: every one of them fed by F too)."""
    feeder, dependants = free_port(), free_port()
    ports = [free_port() for _ in range(bulk_ports)]

    def meter(asset: str, port: int, unit: int, extra: str = "") -> str:
        conn = f"{{modbus: {{host: 127.0.0.1, port: {port}, unit: {unit}}}}}"
        return f"  - {{id: {asset}, type: power_meter, profile: meter, connection: {conn}{extra}}}"

    lines = [
        "site: {id: campus}",
        f"mqtt: {{url: 'mqtt://127.0.0.1:{mqtt_port}', client_id: campus}}",
        "store: {kind: sqlite, path: '${SHARD_DATA}/monitord.db'}",
        "api: {port: 0}",
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
        meter("F", feeder, 1, ", poll: 1s"),
        *(meter(d, dependants, i, ", poll: 1s, depends_on: [F]") for i, d in enumerate(DEPENDANTS, 1)),
    ]
    bulk = total - 1 - len(DEPENDANTS)
    per = -(-bulk // bulk_ports)
    fed = ", depends_on: [F]" if bulk_fed else ""
    lines += [meter(f"M-{n:04d}", ports[n // per], n % per + 1, fed) for n in range(bulk)]
    scenario = ["scenario: dark-feeder", "timeline:"] + [
        f"  - {{at: {dark_at:.0f}s, asset: {a}, fault: offline}}" for a in ["F", *DEPENDANTS]
    ]
    return "\n".join(lines) + "\n", "\n".join(scenario) + "\n"
