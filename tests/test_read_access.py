"""Reads of site data need a viewer: every GET of the API that returns site data refuses an anonymous
call (401, naming what is missing, in the request's language), shows a viewer a resident's phone
masked and a dispatcher whole; ``/healthz`` and ``/metrics`` stay open for Prometheus; a notification's
link reads its own ticket and no other. One daemon with simulators over real sockets, calls over HTTP.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from monitord.config.site import load_config
from monitord.people.identity import ticket_link
from tests.support import TOKEN, demo_site, post, run, running, token_of, with_people
from tests.support.configs import GOOD, problems
from tests.support.webhooks import WebhookReceiver

#: Every GET of the API that answers site data (the desk's lists, the report, tickets, alerts, ...).
READS = ("/tickets", "/alerts", "/assets", "/silences", "/follow-ups", "/complaints", "/report/desk")
REQUEST = {"building": "Tower B", "floor": "12F", "unit": "1203", "trade": "plumbing"}
REQUEST |= {"reporter": "Li Na", "phone": "13812345678", "description": "ceiling drips"}


def read(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """Status and decoded body of one GET (JSON, or the text of /metrics)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), None, headers or {})
        r = conn.getresponse()
        text = r.read().decode()
        return r.status, json.loads(text) if r.getheader("content-type") == "application/json" else text
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reads_need_a_viewer_and_only_a_technician_or_higher_sees_the_phone(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)

    async def scenario() -> None:
        async with running(config) as (_site, app):
            assert app.web is not None
            api = app.api_url
            off = asyncio.to_thread  # the API answers on this loop: calls go from a thread
            status, opened = await off(post, f"{api}/tickets", REQUEST, token_of("plumbing-tech"))
            assert status == 201, opened
            tid = opened["ticket"]
            one = f"/tickets/{tid}"

            missing = "reading needs a token: send Authorization: Bearer <token>"
            for path in (*READS, one):
                status, body = await off(read, f"{api}{path}")
                assert status == 401 and body["error"].startswith(missing), (path, body)
                status, body = await off(read, f"{api}{path}", bearer("not-a-token"))
                assert status == 401 and body["error"].startswith("wrong token"), (path, body)
                for who in ("viewer", "dispatcher"):
                    status, _ = await off(read, f"{api}{path}", bearer(token_of(who)))
                    assert status == 200, (path, who)
            # The refusal in the request's language: Accept-Language, or ?lang= over it.
            for headers, query, said in (
                ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "", "读取需要令牌"),
                ({"Accept-Language": "fr-FR, zh;q=0.5"}, "", "读取需要令牌"),  # the first we have
                ({"Accept-Language": "zh-CN"}, "?lang=en", "reading needs a token"),
                ({}, "?lang=zh-CN", "读取需要令牌"),
                ({}, "", "reading needs a token"),  # the site's language (en)
            ):
                status, body = await off(read, f"{api}/tickets{query}", headers)
                assert status == 401 and body["error"].startswith(said), (headers, query, body)
            status, body = await off(read, f"{api}/tickets?lang=zh-CN", bearer("not-a-token"))
            assert status == 401 and body["error"].startswith("令牌不对"), body
            # A 403 names the role and the action in the reader's words too.
            status, body = await off(post, f"{api}{one}/comment?lang=zh-CN", {}, token_of("viewer"))
            assert (status, body["error"]) == (403, "viewer 的角色是只读，无权添加备注"), body

            # A viewer sees the resident's phone masked everywhere; a dispatcher (and the CLI's api
            # token, an admin) sees it whole.
            for token, phone in (
                (token_of("viewer"), "138****5678"),
                (token_of("dispatcher"), "13812345678"),
                (token_of("plumbing-tech"), "13812345678"),
                (TOKEN, "13812345678"),
            ):
                _, shown = await off(read, f"{api}{one}", bearer(token))
                assert shown["phone"] == phone and shown["reporter"] == "Li Na", (token, shown)
                assert {e["phone"] for e in shown["events"]} <= {"", phone}
                _, listed = await off(read, f"{api}/tickets?source=request", bearer(token))
                assert [t["phone"] for t in listed] == [phone]

            # A notification's link reads its own ticket (as its person: the phone, to call back),
            # not another's, and is no key to the lists.
            link = ticket_link(app.web.signer, api, "plumbing-tech", tid, app.clock.now(), 3600)
            capability = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["link"][0]
            status, shown = await off(read, f"{api}{one}?link={capability}")
            assert status == 200 and shown["phone"] == "13812345678"
            status, body = await off(read, f"{api}/tickets/WO-other?link={capability}")
            assert status == 403 and "not valid" in body["error"]
            status, _ = await off(read, f"{api}/tickets?link={capability}")
            assert status == 401
            # ... and its page on the phone still opens with no login, its one-tap ack still works.
            status, page = await off(read, f"{api}/console{one}?link={capability}")
            assert status == 200 and "ack" in page
            status, ev = await off(post, f"{api}{one}/ack?link={capability}", {}, None)
            assert status == 200 and ev["actor"] == "plumbing-tech"

            # The CLI reads with its token, and shows a refusal in its language.
            def cli(*args: str) -> subprocess.CompletedProcess[str]:
                command = [sys.executable, "-m", "monitord", *args]
                return subprocess.run(command, capture_output=True, text=True, timeout=60)

            listed = await off(cli, "silence", "--api", api, "--token", token_of("viewer"), "list")
            assert (listed.returncode, listed.stdout) == (0, "no silences\n"), listed.stderr
            refused = await off(
                cli, "silence", "--api", api, "--token", "not-a-token", "--lang", "zh-CN", "list"
            )
            assert refused.returncode == 1 and refused.stderr.startswith("monitord: /silences: 令牌不对")
            token = ["--api", api, "--token", token_of("plumbing-tech"), "--lang", "zh-CN"]
            noted = await off(cli, "tickets", "comment", tid, "--note", "到场", *token)
            assert noted.stdout == f"{tid}：plumbing-tech 备注 — 现在已确认\n", noted.stderr

            # Prometheus scrapes with no token; the schema holds no site data.
            for path in ("/healthz", "/metrics", "/openapi.json"):
                status, _ = await off(read, f"{api}{path}")
                assert status == 200, path

    run(scenario(), timeout=60)


def test_a_site_with_no_tokens_refuses_reads_and_says_what_to_configure(
    tmp_path: Path, mosquitto: int
) -> None:
    config = demo_site(tmp_path, mosquitto)
    config = config.model_copy(
        update={
            "roster": None,
            "api": config.api.model_copy(update={"token": None, "port": 0}),
            "notify": config.notify.model_copy(update={"log": str(tmp_path / "notifications.db")}),
        }
    )

    async def scenario() -> None:
        async with running(config) as (_site, app):
            status, body = await asyncio.to_thread(read, f"{app.api_url}/assets")
            assert (
                status == 401 and "this site has none" in body["error"] and "roster.people" in body["error"]
            )
            status, _ = await asyncio.to_thread(read, f"{app.api_url}/healthz")
            assert status == 200

    run(scenario(), timeout=60)


def test_a_bad_login_in_the_site_file_is_an_error_at_file_line_key(tmp_path: Path) -> None:
    def roster(*people: str) -> str:
        return (
            GOOD
            + "roster:\n  teams:\n    t: {skills: [general], members: [{name: Wang}]}\n  people:\n"
            + "".join(f"    - {p}\n" for p in people)
        )

    assert problems(tmp_path, roster("{name: Screen, role: guest, token: screen-token}")) == [
        "site.yaml:25 roster.people[0].role: must be one of 'viewer', 'technician', 'dispatcher' or"
        " 'admin', got 'guest'"
    ]
    assert problems(tmp_path, roster("{name: Screen, role: viewer, token: 'sha256:beef'}")) == [
        'site.yaml:25 roster.people[0].token: a hashed token is sha256: and 64 hex digits (printf %s "$TOKEN"'
        " | sha256sum), got '***'"
    ]
    assert problems(tmp_path, roster("{name: Screen, role: viewer, token: ''}")) == [
        "site.yaml:25 roster.people[0].token: a token needs at least 8 characters (an unset ${NAME}?):"
        " openssl rand -hex 16, got '***'"
    ]
    shared = roster("{name: Screen, role: viewer, token: lobby-token}", "{name: Desk, token: lobby-token}")
    assert problems(tmp_path, shared) == [
        "site.yaml:26 roster.people[1].token: Desk has the same token as Screen: give each their own"
    ]
    # One person written twice (a member who also leads) holds one token: fine.
    same_person = roster(
        "{name: Wang, role: dispatcher, token: wang-token}", "{name: Wang, token: wang-token}"
    )
    (tmp_path / "ok.yaml").write_text(same_person)
    assert load_config(tmp_path / "ok.yaml").roster is not None
