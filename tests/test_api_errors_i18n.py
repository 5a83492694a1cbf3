"""The API's 400, 404 and 422 in the request's language: the running daemon over real sockets answers
in zh-CN or en (``?lang=``, else ``Accept-Language``, else the site's), with the field and the limit;
every error type we have a message for is in both catalogs; anything else is pydantic's English."""

from __future__ import annotations

import asyncio
import enum
import gettext
import http.client
import json
from pathlib import Path
from typing import Any, Literal

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, ValidationError, field_validator

from monitord.core.fieldwords import FIELD_TYPES, MESSAGES, said
from monitord.core.i18n import LOCALES, catalog_path
from monitord.core.units import Duration
from monitord.daemon.web.errors import NOT_AN_OBJECT, NOT_FOUND
from monitord.daemon.web.tickets import ACTION_PATTERN
from tests.support import TOKEN, demo_site, run, running, with_people
from tests.support.webhooks import WebhookReceiver


class Priority(enum.Enum):
    P1 = "P1"
    P2 = "P2"


class Probe(BaseModel):
    """Constraints no API body has yet (ranges, choices, counts): served by the running daemon's app for
    the test, so its answers come through the real exception handler over a real socket."""

    model_config = ConfigDict(extra="forbid")
    floor: int = Field(0, ge=-5, le=120)
    ratio: float = Field(0.5, gt=0, lt=1)
    shift: Literal["day", "night", "weekend"] = "day"
    priority: Priority = Priority.P1
    on_call: bool = False
    names: list[str] = Field(["wang"], min_length=1, max_length=2)
    phone: str = ""

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        if value and not value.isdigit():
            raise ValueError("digits only")
        return value


class _SetOfOne(BaseModel):
    s: set[int] = Field(max_length=1)


def call(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.9"}

#: (method, path, body) → the 422's text in zh-CN and in en, and its fields.
INVALID: list[tuple[str, str, bytes, str, str, list[str]]] = [
    (  # a missing field, and one too short
        "POST",
        "/silences",
        b'{"matcher": {}, "expires_in": "1h"}',
        "reason: 缺少必填项",
        "reason: Field required",
        ["reason"],
    ),
    (
        "POST",
        "/silences",
        b'{"matcher": {"assets": "A-P1"}, "reason": "", "expires_in": "soon"}',
        "matcher.assets: 须为列表（JSON 数组）; reason: 不能少于 1 个字符; "
        "expires_in: 须为时长，如 500ms、5s、2m、1h，收到的是 'soon'",
        "matcher.assets: Input should be a valid list; reason: String should have at least 1 character; "
        "expires_in: must be a duration like 500ms, 5s, 2m, 1h, got 'soon'",
        ["matcher.assets", "reason", "expires_in"],
    ),
    (
        "POST",
        "/silences",
        b'{"matcher": "A-P1", "reason": "pump swap", "expires_in": "2h"}',
        "matcher: 须为 JSON 对象",
        "matcher: Input should be an object",
        ["matcher"],
    ),
    (  # an unknown key (a typo)
        "POST",
        "/tickets/WO-1/comment",
        b'{"nte": "x"}',
        "nte: 不支持此项（请检查拼写）",
        "nte: Extra inputs are not permitted",
        ["nte"],
    ),
    (
        "POST",
        "/tickets/WO-1/comment",
        b'{"note": "' + b"y" * 4001 + b'"}',
        "note: 不能超过 4000 个字符",
        "note: String should have at most 4000 characters",
        ["note"],
    ),
    (  # the wrong type
        "POST",
        "/tickets/WO-1/comment",
        b'{"note": [1]}',
        "note: 须为文本",
        "note: Input should be a valid string",
        ["note"],
    ),
    (  # an action no ticket has: the path's pattern
        "POST",
        "/tickets/WO-1/reopen",
        b"{}",
        f"path.action: 格式不对，须符合 '{ACTION_PATTERN}'",
        f"path.action: String should match pattern '{ACTION_PATTERN}'",
        ["path.action"],
    ),
    (  # out of range, and bad choices
        "POST",
        "/test/probe",
        b'{"floor": 121, "ratio": 0, "shift": "evening", "priority": "P9"}',
        "floor: 不能大于 120; ratio: 须大于 0; shift: 须为 'day', 'night' 或 'weekend'; "
        "priority: 须为 'P1' 或 'P2'",
        "floor: Input should be less than or equal to 120; ratio: Input should be greater than 0; "
        "shift: Input should be 'day', 'night' or 'weekend'; priority: Input should be 'P1' or 'P2'",
        ["floor", "ratio", "shift", "priority"],
    ),
    (
        "POST",
        "/test/probe",
        b'{"floor": "ten", "ratio": 1, "on_call": "maybe", "names": []}',
        "floor: 须为整数，这段文字不是整数; ratio: 须小于 1; on_call: 须为 true 或 false，无法识别; "
        "names: 列表至少要有 1 项，现有 0 项",
        "floor: Input should be a valid integer, unable to parse string as an integer; "
        "ratio: Input should be less than 1; "
        "on_call: Input should be a valid boolean, unable to interpret input; "
        "names: List should have at least 1 item after validation, not 0",
        ["floor", "ratio", "on_call", "names"],
    ),
    (  # our own validator's words stay as written, in the message around them
        "POST",
        "/test/probe",
        b'{"floor": -6, "names": ["a", "b", "c"], "phone": "x"}',
        "floor: 不能小于 -5; names: 列表最多 2 项，现有 3 项; phone: 取值无效：digits only",
        "floor: Input should be greater than or equal to -5; "
        "names: List should have at most 2 items after validation, not 3; phone: Value error, digits only",
        ["floor", "names", "phone"],
    ),
]


def test_the_api_says_what_is_wrong_with_a_request_in_its_language(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    config = config.model_copy(update={"site": config.site.model_copy(update={"locale": "zh_CN"})})

    async def probe(body: Probe) -> dict[str, Any]:
        return body.model_dump(mode="json")

    async def scenario() -> None:
        async with running(config) as (_site, app):
            assert app.api is not None
            app.api.app.add_api_route("/test/probe", probe, methods=["POST"])
            port = app.api.port

            async def answer(
                method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
            ) -> tuple[int, Any]:
                return await asyncio.to_thread(call, port, method, path, body, headers)

            for method, path, body, zh, en, fields in INVALID:
                for headers, text in ((ZH, zh), (EN, en)):
                    status, said_ = await answer(method, path, body, headers)
                    assert status == 422, (path, body[:40], said_)
                    assert said_ == {"error": text, "fields": fields}, (path, body[:40])

            # not a JSON object (not JSON at all, a list, bad UTF-8): 400
            for body in (b"{", b"[]", b"\xff\xfe"):
                assert await answer("POST", "/tickets/WO-1/comment", body, ZH) == (
                    400,
                    {"error": "请求内容须为 JSON 对象"},
                )
                assert await answer("POST", "/tickets/WO-1/comment", body, EN) == (
                    400,
                    {"error": "body must be a JSON object"},
                )
            # no such route: 404
            assert await answer("GET", "/no/such/thing", headers=ZH) == (404, {"error": "未找到"})
            assert await answer("GET", "/no/such/thing", headers=EN) == (404, {"error": "not found"})

            # the desk's and the tickets' own refusals: an unknown ticket, a trade the roster has not
            for path, body in (
                ("/tickets/WO-NOPE/ack", b"{}"),
                ("/tickets/WO-NOPE/follow-up", b'{"satisfaction": 5}'),
            ):
                assert await answer("POST", path, body, ZH) == (404, {"error": "没有工单 WO-NOPE"}), path
                assert await answer("POST", path, body, EN) == (404, {"error": "no ticket WO-NOPE"}), path
            carpentry = json.dumps(
                {
                    "building": "A",
                    "floor": "1F",
                    "trade": "carpentry",
                    "reporter": "Li Na",
                    "phone": "13812345678",
                    "description": "x",
                }
            ).encode()
            for headers, text in (
                (ZH, "'carpentry' 不在值班表的技能中，可选："),
                (EN, "'carpentry' is no skill of the roster: one of "),
            ):
                status, said_ = await answer("POST", "/tickets", carpentry, headers)
                assert status == 400 and said_.get("fields", {}).get("trade", "").startswith(text), said_
                assert said_["error"] == f"trade: {said_['fields']['trade']}" and "english" not in said_, (
                    said_
                )

            # the language: ?lang= wins over Accept-Language, whose first known tag wins over the site's
            missing = b'{"matcher": {}, "expires_in": "1h"}'
            for query, headers, text in (
                ("?lang=en", ZH, "reason: Field required"),
                ("?lang=zh-CN", EN, "reason: 缺少必填项"),
                ("", {"Accept-Language": "fr-FR, en;q=0.8"}, "reason: Field required"),
                ("", {}, "reason: 缺少必填项"),  # the site's
            ):
                assert await answer("POST", f"/silences{query}", missing, headers) == (
                    422,
                    {"error": text, "fields": ["reason"]},
                ), (query, headers)
            assert await answer("GET", "/no/such/thing?lang=en", headers=ZH) == (404, {"error": "not found"})
            assert await answer("POST", "/silences?lang=en", b"[]", ZH) == (
                400,
                {"error": "body must be a JSON object"},
            )

    run(scenario(), timeout=120)


class Recording(gettext.NullTranslations):
    """English, noting the catalog key (the singular msgid) of every message asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def gettext(self, message: str) -> str:
        self.asked.add(message)
        return message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        self.asked.add(msgid1)
        return msgid1 if n == 1 else msgid2


def test_every_error_type_we_name_has_its_message_in_both_catalogs() -> None:
    wanted = {NOT_AN_OBJECT, NOT_FOUND, "{choices} or {last}", *FIELD_TYPES}
    for kind, words in MESSAGES.items():
        t = Recording()
        words(t, {"min_length": 2, "max_length": 2})
        assert t.asked, f"{kind}: no message asked of the catalog"
        wanted |= t.asked
    catalogs = {locale: _catalog(locale) for locale in LOCALES}
    for locale, held in catalogs.items():
        missing = sorted(m for m in wanted if held.get(m) is None)
        assert not missing, f"{locale}: no entry for {missing}"
    for msgid in wanted:
        entry = catalogs["zh_CN"][msgid]
        strings = (entry.string,) if isinstance(entry.string, str) else entry.string
        assert all(strings) and not entry.fuzzy, f"zh_CN: {msgid!r} is not translated"


def _catalog(locale: str) -> Catalog:
    with catalog_path(locale).open("rb") as f:
        return read_po(f, locale=locale)


def _errors(model: Any, value: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(model).validate_python(value)
    return [dict(e) for e in caught.value.errors()]


def test_english_is_pydantics_own_wording_where_we_kept_it() -> None:
    """English answers read as before the catalogs: every real error of Probe's says pydantic's words."""
    bad = {
        "floor": "x",
        "ratio": 2,
        "shift": "x",
        "priority": "x",
        "on_call": [],
        "names": "x",
        "phone": "+1",
        "z": 1,
    }
    errors = _errors(Probe, bad) + _errors(Probe, {"floor": 1.5, "ratio": "x", "names": [1]})
    errors += _errors(Probe, {"floor": [], "ratio": [], "on_call": "x", "names": []}) + _errors(list[int], {})
    errors += _errors(Probe, {"floor": -6, "ratio": 0}) + _errors(Probe, {"floor": 121, "names": ["a"] * 3})
    errors += _errors(_SetOfOne, {})
    kinds = {e["type"] for e in errors}
    assert kinds >= {"int_parsing", "int_from_float", "int_type", "float_parsing", "float_type", "bool_type"}
    assert kinds >= {"literal_error", "enum", "list_type", "extra_forbidden", "value_error", "string_type"}
    assert kinds >= {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
    }
    assert "missing" in kinds
    for e in errors:
        assert e["type"] in MESSAGES, e
        assert said(e, "en") == e["msg"], e
        assert said(e, "zh_CN") != e["msg"], e


def test_a_type_with_no_message_of_ours_is_pydantics_english_not_a_crash() -> None:
    [url] = _errors(HttpUrl, "not a url")
    assert url["type"] not in MESSAGES
    assert said(url, "zh_CN") == said(url, "en") == url["msg"]
    # a set's length pydantic does not count ("not more"): our message would say "None", so pydantic's words
    [uncounted] = _errors(_SetOfOne, {"s": [1, 2]})
    assert uncounted["type"] == "too_long" and uncounted["ctx"]["actual_length"] is None
    assert said(uncounted, "zh_CN") == uncounted["msg"]
    # a ctx without the value our message names (another pydantic version): pydantic's words
    short = {"type": "string_too_short", "loc": ("body", "reason"), "msg": "too short", "ctx": {}}
    assert said(short, "zh_CN") == "too short"


def test_a_duration_is_said_with_what_was_sent() -> None:
    for value in ("soon", -1, True):
        [e] = _errors(Duration, value)
        assert said(e, "en") == f"must be a duration like 500ms, 5s, 2m, 1h, got {value!r}"
        assert said(e, "zh_CN") == f"须为时长，如 500ms、5s、2m、1h，收到的是 {value!r}"
