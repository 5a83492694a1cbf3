"""Languages: the catalogs hold every msgid the sources use, translations keep every {field}, config
names a wrong locale at file:line, and a zh-CN site pages in Chinese while an en person reads English."""

from __future__ import annotations

import dataclasses
import io
import re
import string
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from monitord.alerting.tracker import AlertEvent
from monitord.core.assets import Asset
from monitord.core.i18n import LOCALES, UnknownLocale, catalog_path, normalise, translator
from monitord.people.console import ConsoleReporter
from monitord.people.messages import page_text
from monitord.people.notify import ConsoleChannel, Notification
from monitord.people.roster import Contact, TeamConfig
from monitord.tickets.desk import Ticket, TicketDesk, TicketPolicyView
from monitord.tickets.labels import CATEGORIES, STATES, label
from tests.support import (
    T0,
    Timeline,
    WebhookReceiver,
    demo_site,
    eventually,
    good,
    run,
    running,
    with_people,
)
from tests.support.configs import GOOD, problems

ROOT = Path(__file__).resolve().parents[1]


def catalog(locale: str) -> Catalog:
    with catalog_path(locale).open("rb") as f:
        return read_po(f, locale=locale)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """What `make catalogs` extracts from the sources now (same babel.cfg, same command)."""
    pot = tmp_path_factory.mktemp("pot") / "monitord.pot"
    CommandLineInterface().run(
        ["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-o", str(pot), str(ROOT)]
    )
    with pot.open("rb") as f:
        return read_po(f)


def test_every_msgid_in_the_sources_is_in_both_catalogs_and_translated_in_chinese(extracted: Catalog) -> None:
    wanted = {(m.context, m.id) for m in extracted if m.id}
    assert len(wanted) > 80, "extraction found the code's and the rule packs' messages"
    assert (None, "passenger trapped between floors near floor {floor:.0f}") in wanted, "pack summaries"
    assert ("door", "open") in wanted and ("safety_circuit", "open") in wanted, "profile states, by point"
    for locale in LOCALES:
        held = {(m.context, m.id) for m in catalog(locale) if m.id}
        missing = sorted(wanted - held, key=str)  # contexts may be None
        assert not missing, f"{locale}: msgids missing (run `make catalogs`): {missing}"
        assert not held - wanted, (
            f"{locale}: msgids no source uses (run `make catalogs`): {sorted(held - wanted)}"
        )
    untranslated = [m.id for m in catalog("zh_CN") if m.id and (not all(strings(m)) or m.fuzzy)]
    assert not untranslated, f"zh_CN: no (or only a fuzzy) translation for {untranslated}"


PERCENT = re.compile(r"%\((\w+)\)([#0 +-]?\d*(?:\.\d+)?[sdifgexXr])")


def fields(template: str) -> Counter[str]:
    """Each {field!conv:spec} of a format string, and each %(name)s (Jinja2's gettext), as written."""
    braces = (
        f"{{{name}!{conv}:{spec}}}"
        for _text, name, spec, conv in string.Formatter().parse(template)
        if name is not None
    )
    return Counter([*braces, *(f"%({n}){f}" for n, f in PERCENT.findall(template))])


def strings(m: Message) -> tuple[str, ...]:
    """A message's translations: one, or one per plural form."""
    return m.string if isinstance(m.string, tuple) else (m.string,)


def test_a_translation_keeps_every_field_of_its_msgid_and_adds_none() -> None:
    checked = 0
    for locale in LOCALES:
        for m in catalog(locale):
            # A plural's forms are checked against the plural msgid (a singular may spell out "one").
            msgid = m.id[-1] if isinstance(m.id, tuple) else m.id
            for text in strings(m):
                if msgid and text:
                    assert fields(text) == fields(msgid), f"{locale}: {msgid!r} → {text!r}"
                    checked += 1
    assert checked > 80


def test_the_field_check_catches_a_dropped_or_renamed_field() -> None:
    msgid = "overspeed {speed:.2f} m/s"
    assert fields("超速 {speed:.1f} m/s") != fields(msgid), "a changed format spec counts"
    assert fields("超速 {sped:.2f} m/s") != fields(msgid)
    assert fields("超速") != fields(msgid)
    assert fields("%(n)s 张工单") == fields("%(n)s open tickets") != fields("%(m)s 张工单")


def test_locales_are_normalised_and_an_unknown_one_reads_english_at_run_time() -> None:
    assert [normalise(x) for x in ("zh-CN", "zh_CN", "zh-cn", "zh", "en", "en-US")] == [
        "zh_CN",
        "zh_CN",
        "zh_CN",
        "zh_CN",
        "en",
        "en",
    ]
    with pytest.raises(UnknownLocale, match="unknown locale 'fr'; known: zh-CN, en"):
        normalise("fr")
    assert translator("fr")("overspeed {speed:.2f} m/s") == "overspeed {speed:.2f} m/s"
    assert translator("zh-CN")("overspeed {speed:.2f} m/s") == "超速：{speed:.2f} m/s"
    assert (
        label(STATES, "in_progress", "zh_CN") == "处理中"
        and label(STATES, "in_progress", "en") == "in progress"
    )
    assert label(CATEGORIES, "plumbing", "zh_CN") == "给排水"
    assert label(CATEGORIES, "fire-doors", "zh_CN") == "fire-doors", "a site's own skill shows as written"


def test_a_wrong_locale_is_a_config_error_at_file_line_key(tmp_path: Path) -> None:
    text = GOOD.replace("site: {id: t1, name: Test}", "site: {id: t1, name: Test, locale: fr-FR}")
    assert problems(tmp_path, text) == ["site.yaml:1 site.locale: unknown locale 'fr-FR'; known: zh-CN, en"]
    text = GOOD + "roster:\n  teams:\n    t: {skills: [general], members: [{name: Wang, locale: jp}]}\n"
    assert problems(tmp_path, text) == [
        "site.yaml:23 roster.teams.t.members[0].locale: unknown locale 'jp'; known: zh-CN, en"
    ]


def test_a_zh_cn_site_pages_in_chinese_and_an_en_person_in_english(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    """The pump runs dry: the on-call plumber's WeCom robot gets the Chinese page (the site's language);
    nobody acknowledges, so it escalates to the lead, whose ``locale: en`` gets English, summary too."""
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=2.0)
    assert config.roster is not None
    plumbers = TeamConfig(
        skills=["plumbing"],
        members=[Contact(name="张师傅", wecom=webhooks.url("wecom-zhang"))],
        lead=Contact(name="Lee", webhook=webhooks.url("lee"), locale="en"),
    )
    roster = config.roster.model_copy(update={"teams": {**config.roster.teams, "plumbing": plumbers}})
    config = config.model_copy(
        update={"roster": roster, "site": config.site.model_copy(update={"locale": "zh_CN"})}
    )

    async def scenario() -> None:
        async with running(config) as (site, app):
            await eventually(lambda: good(app, "A-P1", "suction_pressure"), 15)
            site.inject("A-P1", "dry_run")
            await eventually(lambda: webhooks.to("wecom-zhang") and webhooks.to("lee"), 40)
            [ticket] = app.core.desk.tickets.values()
            notes.extend((ev.event, ev.note) for ev in ticket.events if ev.event in ("assigned", "escalated"))

    notes: list[tuple[str, str]] = []

    run(scenario())
    [robot] = webhooks.to("wecom-zhang")
    assert robot["msgtype"] == "text"
    lines = robot["text"]["content"].split("\n")
    assert lines[0] == "【P1 给排水】Domestic water booster pump 1（A-P1）"
    assert lines[1].startswith("水泵干转（进口压力 0.0") and lines[1].endswith(" m³/h）"), lines[1]
    assert lines[2].startswith("位置：") and lines[3].startswith("发生时间：20")
    ticket = lines[4].removeprefix("工单：")
    assert ticket.startswith("WO-")
    assert lines[5] == f"请尽快到场处理，并先确认接单：monitord tickets ack {ticket}"
    [page] = webhooks.to("lee")
    assert (page["locale"], page["event"], page["level"], page["ticket"]) == ("en", "escalated", 1, ticket)
    assert page["summary"].startswith("pump running dry (suction 0.0"), "the summary in the person's language"
    assert page["text"].startswith(f"[P1] {ticket} plumbing: Domestic water booster pump 1 (A-P1) @ ")
    assert "(escalated, level 1: nobody acknowledged yet). Acknowledge: POST " in page["text"]
    assert "水泵" not in page["text"] and "给排水" not in page["text"]
    assert notes == [("assigned", "值班"), ("escalated", "2 秒内无人确认，已升级给 Lee")], "notes: the site's"


def test_the_terminal_speaks_the_site_language() -> None:
    desk = TicketDesk()
    fired = AlertEvent(T0, "pump.dry_run", "P1", "firing", "critical", T0 - 5, "水泵干转")
    [opened] = desk.on_alert(fired, TicketPolicyView("P1", "plumbing", auto_resolve=True), "B2")
    assets = {"P1": Asset("P1", "pump", name="1号生活水泵")}
    out = io.StringIO()
    console = ConsoleReporter(assets, out, tz=UTC, locale="zh_CN")
    console.alert(fired)
    console.alert(AlertEvent(T0 + 65, "pump.dry_run", "P1", "resolved", "critical", T0 - 5, "已恢复"))
    console.ticket(opened)
    alert, resolved, ticket = out.getvalue().splitlines()
    assert alert.endswith(" P1 1号生活水泵 — 水泵干转 (自 11:06:35 起)"), alert
    assert "  告警     告警中 " in alert, alert
    assert "  告警     已修复 " in resolved and resolved.endswith("— 已恢复 (持续 1m10s)"), resolved
    assert f"  工单     新建       {opened.ticket} P1 给排水 " in ticket, ticket


DRIVE_SITE = """\
site: {{id: drives, locale: {locale}}}
mqtt: {{url: 'mqtt://127.0.0.1:1'}}
poll: 1s
profiles:
  - profile: drive
    asset_type: pump
    mqtt: {{topic: '{{site}}/{{asset}}'}}
    points: {{running: {{}}, vfd_fault_code: {{states: {{0: no fault, 0x2310: overcurrent}}}}}}
assets:
  - {{id: P1, name: Booster 1, type: pump, profile: drive, connection: {{mqtt: {{}}}}}}
rules:
  - id: pump.vfd_fault
    applies_to: {{type: pump}}
    when: "vfd_fault_code != 0"
    summary: "drive fault: {{vfd_fault_code:name}}"
"""


@pytest.mark.parametrize(
    ("locale", "fired", "recovered"),
    [
        ("zh-CN", "变频器故障：过流", "已恢复；当前 vfd_fault_code 0"),
        ("en", "drive fault: overcurrent", "recovered; now vfd_fault_code 0"),
    ],
)
def test_a_pack_summary_and_its_coded_value_are_stored_in_the_site_language(
    timeline: Callable[..., Timeline], locale: str, fired: str, recovered: str
) -> None:
    tl = timeline(DRIVE_SITE.format(locale=locale))
    for t in range(4):
        tl.at(t).push("P1", running=1, vfd_fault_code=0x2310 if t == 1 else 0)
    tl.expect_alerts(between=(0, 1.5), firing=[("pump.vfd_fault", "P1")])
    tl.expect_alerts(between=(1.5, 3), resolved=[("pump.vfd_fault", "P1")])
    assert [a.summary for a in tl.stored()[0]] == [fired, recovered]


def test_the_console_channel_prints_a_page_in_its_language(capsys: pytest.CaptureFixture[str]) -> None:
    page = Notification(
        **{f: "" for f in ("key", "channel", "address", "ticket", "event", "priority", "asset")},
        **{f: "" for f in ("asset_name", "location", "summary", "ack_url")},
        recipient="张师傅",
        since=0.0,
        level=0,
        text="【P1 给排水】1号生活水泵（A-P1）",
        locale="zh_CN",
    )
    ConsoleChannel().send(page)
    ConsoleChannel().send(dataclasses.replace(page, recipient="Lee", text="[P1] WO-1", locale="en"))
    assert capsys.readouterr().out.splitlines() == [
        "          通知 → 张师傅: 【P1 给排水】1号生活水泵（A-P1）",
        "          NOTIFY → Lee: [P1] WO-1",
    ]


def test_the_demo_in_chinese(tmp_path: Path) -> None:
    """`monitord demo --locale zh-CN`: the scripted dry-running pump on the terminal and its page, in
    Chinese; an unknown locale is refused by name."""
    done = subprocess.run(
        [sys.executable, "-m", "monitord", "demo", "--duration", "25s", "--locale", "zh-CN"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"  告警     告警中      critical pump\.dry_run .* — 水泵干转（进口压力 ", out), out
    assert re.search(r"  工单     新建       WO-TA-\d{8}-0001 P1 给排水 ", out), out
    assert "          通知 → Zhang (plumber): 【P1 给排水】Domestic water booster pump 1（A-P1）\n" in out
    assert "\n            请尽快到场处理，并先确认接单：monitord tickets ack WO-" in out
    refused = subprocess.run(
        [sys.executable, "-m", "monitord", "demo", "--locale", "fr"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "argument --locale: unknown locale 'fr'; known: zh-CN, en" in refused.stderr


def test_a_residents_repair_request_pages_with_who_reported_it_in_either_language() -> None:
    request = Ticket(
        id="WO-20261201-0007",
        key="request:WO-20261201-0007",
        asset="",
        rule="",
        priority="P2",
        category="plumbing",
        summary="厨房水管漏水",
        location="Tower B / 12F / 1203",
        since=T0,
        opened_at=T0,
        source="request",
        reporter="李娜",
        phone="13812345678",
    )
    page = {"name": "", "summary": request.summary, "since": "2026-12-01 09:00:00 CST", "level": 0}
    url = "http://monitord:9109/tickets/WO-20261201-0007/ack"
    zh = page_text(request, **page, event="opened", ack_url=url, locale="zh_CN").split("\n")
    assert zh[:3] == [
        "【P2 给排水】住户报修",
        "厨房水管漏水（报修人：李娜，电话 13812345678）",
        "位置：Tower B / 12F / 1203",
    ]
    en = page_text(request, **page, event="opened", ack_url=url, locale="en")
    assert en.startswith(
        "[P2] WO-20261201-0007 plumbing: repair request @ Tower B / 12F / 1203:"
        " 厨房水管漏水 (reported by 李娜, 13812345678) — since 2026-12-01 09:00:00 CST."
    )
