"""Config of BACnet and SNMP assets: exact file:line key errors, and the profile cross-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config.site import CONFIG_DIR, load_config
from tests.support.configs import PROFILES, problems, write

PLANT = f"""\
site: {{id: t1}}
bacnet: {{local: "127.0.0.1:47808"}}
profiles:
  - include: {PROFILES}/chiller-bacnet.yaml
  - include: {PROFILES}/chiller.yaml
  - include: {PROFILES}/ups-rfc1628.yaml
assets:
  - id: CH1
    type: chiller
    profile: chiller-bacnet
    connection: {{bacnet: {{host: 10.0.0.5, port: 47808}}}}
  - id: UPS1
    type: ups
    profile: ups-rfc1628
    connection: {{snmp: {{host: 10.0.0.9, community: "${{UPS_COMMUNITY}}"}}}}
"""


def test_the_plant_room_example_and_a_community_from_the_environment_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {a.id for a in load_config(CONFIG_DIR / "sites" / "plant-room.yaml").assets} == {
        "B2-CH1",
        "B2-UPS1",
    }
    monkeypatch.setenv("UPS_COMMUNITY", "n0t-public")
    config = load_config(write(tmp_path, PLANT))
    ups = config.asset("UPS1").connection.snmp
    assert ups is not None and (ups.community, ups.port, ups.timeout) == ("n0t-public", 161, 1.0)
    chiller = config.asset("CH1").connection.bacnet
    assert chiller is not None and (chiller.host, chiller.port, chiller.timeout) == ("10.0.0.5", 47808, 2.0)
    assert config.bacnet.local == "127.0.0.1:47808" and config.bacnet.device_id == 4194000


CASES = [
    (
        "two protocols on one asset",
        ("{bacnet: {host: 10.0.0.5, port: 47808}}", "{bacnet: {host: 10.0.0.5}, snmp: {host: 10.0.0.5}}"),
        ["site.yaml:11 assets[0].connection: give exactly one of modbus, mqtt, bacnet or snmp"],
    ),
    (
        "a Modbus-only profile on a BACnet connection",
        ("profile: chiller-bacnet", "profile: chiller"),
        [
            "site.yaml:11 assets[0].connection.bacnet: profile 'chiller' has no BACnet object map "
            "(points with object: type:instance)"
        ],
    ),
    (
        "a profile without OIDs on an SNMP connection",
        ("type: ups\n    profile: ups-rfc1628", "type: chiller\n    profile: chiller-bacnet"),
        [
            "site.yaml:15 assets[1].connection.snmp: profile 'chiller-bacnet' has no SNMP OID map "
            "(points with oid:)"
        ],
    ),
    (
        "an SNMP port out of range",
        ("host: 10.0.0.9,", "host: 10.0.0.9, port: 70000,"),
        ["site.yaml:15 assets[1].connection.snmp.port: must be 1..65535, got 70000"],
    ),
    (
        "a misspelt BACnet key",
        ("port: 47808}}", "port: 47808, timout: 2s}}"),
        [
            "site.yaml:11 assets[0].connection.bacnet.timout: unknown key (did you mean 'timeout'?); "
            "expected one of: host, port, timeout"
        ],
    ),
    (
        "a bad local address",
        ('local: "127.0.0.1:47808"', 'local: "localhost"'),
        [
            "site.yaml:2 bacnet.local: 'localhost' has characters that are not allowed "
            r"(pattern ^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?:\d{1,5}$)"
        ],
    ),
    (
        "a local port out of range",
        ('local: "127.0.0.1:47808"', 'local: "127.0.0.1:99999"'),
        ["site.yaml:2 bacnet.local: port must be 1..65535, got 99999"],
    ),
    (
        "a local address that is not one",
        ('local: "127.0.0.1:47808"', 'local: "300.0.0.1/24:47808"'),
        ["site.yaml:2 bacnet.local: '300.0.0.1/24' is not an IPv4 address"],
    ),
]


@pytest.mark.parametrize(("name", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_protocol_config_gets_one_exact_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, edit: tuple[str, str], expected: list[str]
) -> None:
    monkeypatch.setenv("UPS_COMMUNITY", "n0t-public")
    assert edit[0] in PLANT
    assert problems(tmp_path, PLANT.replace(*edit)) == expected


def test_two_assets_cannot_be_one_bacnet_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPS_COMMUNITY", "n0t-public")
    twin = "  - id: CH2\n    type: chiller\n    profile: chiller-bacnet\n"
    twin += "    connection: {bacnet: {host: 10.0.0.5}}\n"  # the port defaults to 47808, as CH1's
    assert problems(tmp_path, PLANT + twin) == [
        "site.yaml:19 assets[2].connection.bacnet: BACnet device 10.0.0.5:47808 is already asset 'CH1'"
    ]


def test_an_unset_community_variable_is_named_not_guessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPS_COMMUNITY", raising=False)
    [message] = problems(tmp_path, PLANT)
    assert message.startswith("site.yaml:15 ") and "UPS_COMMUNITY" in message


def test_profile_object_and_oid_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPS_COMMUNITY", "n0t-public")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "profile: bad\nasset_type: chiller\npoints:\n"
        "  a: {object: 'analog-input:x'}\n"
        "  b: {object: 'analog-input:4194304'}\n"
        "  c: {oid: '1.3.6.x'}\n"
        "  d: {object: 'analog-input:1', property: priority-array}\n"
    )
    text = PLANT.replace(f"  - include: {PROFILES}/chiller.yaml\n", f"  - include: {bad}\n")
    out = [m.replace(str(bad), "bad.yaml") for m in problems(tmp_path, text)]
    assert [m.split(": ")[0] for m in out] == [  # each at its line in the included profile
        "bad.yaml:4 profiles[1].points.a.object",
        "bad.yaml:5 profiles[1].points.b.object",
        "bad.yaml:6 profiles[1].points.c.oid",
        "bad.yaml:7 profiles[1].points.d.property",
    ], out
    assert "instance must be 0..4194303, got 'analog-input:4194304'" in out[1]
    assert "must be one of 'present-value' or 'status-flags', got 'priority-array'" in out[3]


def test_an_snmp_community_is_never_echoed(tmp_path: Path) -> None:
    """The v2c community is the agent's password: a bad value is not shown back."""
    text = PLANT.replace('community: "${UPS_COMMUNITY}"', "community: [s3cret-community]")
    [message] = problems(tmp_path, text)
    assert message.startswith("site.yaml:15 assets[1].connection.snmp.community: ")
    assert "s3cret" not in message and "***" in message
