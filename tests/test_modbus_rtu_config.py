"""Config of Modbus RTU lines: each contradiction gets one exact file:line key message."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config.site import load_config
from monitord.drivers.modbus_line import TURNAROUND, Line
from tests.support.configs import GOOD, PROFILES, check, problems, write

TCP = "connection: {modbus: {host: 127.0.0.1, port: 1502, unit: 1}}"


def serial_site(*connections: str) -> str:
    """GOOD with its pump on the first connection and one more pump per further connection."""
    text = GOOD.replace(TCP, f"connection: {{modbus: {connections[0]}}}")
    more = "".join(
        f"  - id: P{i}\n    type: pump\n    profile: pump-set\n    connection: {{modbus: {c}}}\n"
        for i, c in enumerate(connections[1:], start=2)
    )
    return text.replace("rules:\n", more + "rules:\n")


CASES = [
    (
        "serial settings on a TCP connection",
        serial_site("{host: 10.0.0.5, port: 502, baudrate: 9600}"),
        [
            "site.yaml:10 assets[0].connection.modbus: serial settings (baudrate) on a Modbus TCP "
            "connection: for a serial port give port: /dev/ttyUSB0, for a serial server on TCP give "
            "framer: rtu"
        ],
    ),
    (
        "a baud rate no port offers",
        serial_site("{port: /dev/ttyUSB0, baudrate: 9601}"),
        [
            "site.yaml:10 assets[0].connection.modbus.baudrate: must be a standard rate (1200, 2400, "
            "4800, 9600, 14400, 19200, 38400, 57600, 115200), got 9601"
        ],
    ),
    (
        "a serial port with a host",
        serial_site("{host: 10.0.0.5, port: /dev/ttyUSB0}"),
        ["site.yaml:10 assets[0].connection.modbus: a serial line (port: /dev/ttyUSB0) has no host"],
    ),
    (
        "no host and no serial port",
        serial_site("{port: 502}"),
        [
            "site.yaml:10 assets[0].connection.modbus: give host: (Modbus TCP, or framer: rtu for a "
            "serial server) or port: /dev/..."
        ],
    ),
    (
        "two settings on one serial line",
        serial_site(
            "{port: /dev/ttyUSB0, baudrate: 9600, unit: 1}",
            "{port: /dev/ttyUSB0, baudrate: 19200, parity: E, unit: 2}",
        ),
        [
            "site.yaml:18 assets[2].connection.modbus: line /dev/ttyUSB0 is set up as RTU 9600 8N1 by "
            "asset 'P1', here as RTU 19200 8E1; one line has one setting"
        ],
    ),
    (
        "one unit twice on a line",
        serial_site("{port: /dev/ttyUSB0, unit: 3}", "{port: /dev/ttyUSB0, unit: 3}"),
        ["site.yaml:18 assets[2].connection.modbus.unit: unit 3 on line /dev/ttyUSB0 is already asset 'P1'"],
    ),
    (
        "unit 0 on a serial line",
        serial_site("{port: /dev/ttyUSB0, unit: 0}"),
        [
            "site.yaml:10 assets[0].connection.modbus.unit: unit 0 is broadcast on an RTU line: no device "
            "answers it (1..247)"
        ],
    ),
    (
        "RTU and TCP framing on one endpoint",
        serial_site(
            "{host: 10.0.0.7, port: 4001, framer: rtu, unit: 1}", "{host: 10.0.0.7, port: 4001, unit: 2}"
        ),
        [
            "site.yaml:18 assets[2].connection.modbus: line 10.0.0.7:4001 is set up as RTU 9600 8N1 by "
            "asset 'P1', here as Modbus TCP; one line has one setting"
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_line_contradiction_is_named_at_its_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


def test_serial_and_rtu_over_tcp_lines_load(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            serial_site(
                "{port: /dev/ttyUSB0, baudrate: 19200, parity: E, unit: 1}",
                "{port: /dev/ttyUSB0, baudrate: 19200, parity: E, unit: 2}",
                "{host: 10.0.0.7, port: 4001, framer: rtu, baudrate: 9600, unit: 1}",
            ),
        )
    )
    lines = [a.connection.modbus.line for a in config.assets if a.connection.modbus]
    assert [(x.kind, x.name, x.settings) for x in lines] == [
        ("serial", "/dev/ttyUSB0", (19200, "E", 1, 8)),
        ("serial", "/dev/ttyUSB0", (19200, "E", 1, 8)),
        ("rtu-tcp", "10.0.0.7:4001/rtu", (9600, "N", 1, 8)),
    ]


def test_check_warns_when_the_poll_intervals_ask_more_than_the_line_carries(tmp_path: Path) -> None:
    sdm = GOOD.replace("pump-set.yaml\n", f"pump-set.yaml\n  - include: {PROFILES}/eastron-sdm630.yaml\n")
    meters = "".join(
        f"  - {{id: M{u}, type: power_meter, profile: eastron-sdm630, poll: 1s,\n"
        f"     connection: {{modbus: {{port: /dev/ttyUSB0, baudrate: 9600, parity: E, unit: {u}}}}}}}\n"
        for u in (1, 2, 3)
    )
    site = sdm.replace("rules:\n", meters + "rules:\n")
    path = write(tmp_path, site)
    # Chinese from the catalogs: by --lang, or as a zh-CN site's own language.
    chinese = write(tmp_path, site.replace("name: Test}", "name: Test, locale: zh-CN}"), "zh.yaml")
    english = (
        "line /dev/ttyUSB0",
        ("RTU 9600 8E1", "the poll intervals ask 3.0 (116%)"),
        "warning: line /dev/ttyUSB0: the poll intervals ask 116% of what the line carries; polls will "
        "come late (lengthen poll:, raise the baud rate, or split the line)",
        ": ok — 5 assets, 3 profiles, 1 rules",
    )
    zh = (
        "总线 /dev/ttyUSB0",
        ("（RTU 9600 8E1）", "按配置的轮询周期需要 3.0 次（116%）"),
        "警告：总线 /dev/ttyUSB0：配置的轮询周期需要线路能力的 116%，"
        "轮询会延迟（请加长 poll:、提高波特率或拆分总线）",
        "：没有问题 — 5 个设备，3 个设备型号，1 条规则",
    )
    for done, (start, parts, warning, ok) in (
        (check(path), english),
        (check(path, "--lang", "zh-CN"), zh),
        (check(chinese), zh),
    ):
        assert done.returncode == 0, done.stderr
        # SDM630: 5 reads of ≤ 80 registers; at 9600 8E1 one meter's poll holds the line ~0.39 s.
        budget = next(line for line in done.stdout.splitlines() if line.startswith(start))
        assert all(part in budget for part in parts), budget
        assert warning in done.stdout.splitlines() and ok in done.stdout, done.stdout


def test_wire_time_follows_the_serial_line_spec() -> None:
    slow = Line("serial", "/dev/ttyUSB0", baudrate=9600, parity="E")  # 11-bit characters
    char = 11 / 9600
    assert slow.gap == pytest.approx(3.5 * char)
    # An 80-register read: request 8 bytes, reply 5 + 160; a gap after each; the device's turnaround.
    assert slow.read_time("holding", 80) == pytest.approx(173 * char + 7 * char + TURNAROUND)
    assert slow.read_time("coil", 20) == pytest.approx((13 + 3) * char + 7 * char + TURNAROUND)
    fast = Line("rtu-tcp", 4001, "10.0.0.7", baudrate=115200)  # 8N1: 10-bit characters
    assert fast.gap == pytest.approx(0.00175)  # fixed above 19200 baud
    assert fast.read_time("input", 2) == pytest.approx(17 * 10 / 115200 + 0.0035 + TURNAROUND)
    assert Line.tcp("10.0.0.7", 502).gap == 0.0
