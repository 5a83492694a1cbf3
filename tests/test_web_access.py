"""Who may do what through the web app (issue 12): identities, roles, signed links, sessions, audit.

Unit tests of the pure parts (signing, roles, token hashing) and one scenario against the running
daemon with simulators over real sockets: a pump runs dry, the on-call technician acts from the
signed link in the webhook payload, a viewer is refused, a forged or expired link is refused, and
the audit trail in the store names who did each thing from where.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

from monitord.daemon.web.board import sla_clock
from monitord.people.identity import Identities, Signer, hash_token, may, site_secret, ticket_link
from monitord.people.roster import Contact
from monitord.tickets.desk import Ticket
from monitord.tickets.sla import Sla
from tests.support import (
    TOKEN,
    demo_site,
    eventually,
    get,
    good,
    post,
    run,
    running,
    token_of,
    with_people,
)
from tests.support.webhooks import WebhookReceiver

NOW = 1_795_000_000.0


def test_signed_tokens_refuse_tampering_expiry_and_other_purposes() -> None:
    signer = Signer(b"site secret")
    token = signer.sign("link", {"who": "wang", "t": "WO-1"}, NOW + 60)
    assert signer.verify("link", token, NOW) == {"who": "wang", "t": "WO-1"}
    assert signer.verify("link", token, NOW + 60) == "expired"
    assert signer.verify("session", token, NOW) is None, "a link is not a session"
    body, mac = token.split(".")
    forged = signer.sign("link", {"who": "li", "t": "WO-1"}, NOW + 60).split(".")[0]
    assert signer.verify("link", f"{forged}.{mac}", NOW) is None, "another claim under this signature"
    assert signer.verify("link", f"{body}.{mac[:-1]}A", NOW) is None
    assert Signer(b"other site").verify("link", token, NOW) is None
    assert signer.verify("link", "garbage", NOW) is None and signer.verify("link", ".", NOW) is None


def test_roles_tokens_and_the_kept_secret(tmp_path: Path) -> None:
    assert may("technician", "ack") and not may("technician", "assign") and not may("viewer", "comment")
    assert may("dispatcher", "cancel") and may("dispatcher", "silence") and may("admin", "anything")
    people = [
        Contact(name="wang", token="plain-token"),
        Contact(name="li", role="dispatcher", token=hash_token("li-token")),  # given already hashed
        Contact(name="zhao", role="viewer"),  # no token: no login
    ]
    ids = Identities(people, admin_token="cli-token")
    assert ids.by_token("plain-token") == ids.named("wang", "token")
    assert ids.by_token("li-token") is not None and ids.by_token("li-token").role == "dispatcher"  # type: ignore[union-attr]
    assert ids.by_token("cli-token") is not None and ids.by_token("cli-token").name == "api"  # type: ignore[union-attr]
    assert ids.by_token("wrong") is None and ids.by_token(hash_token("li-token")) is None
    log = tmp_path / "notifications.db"
    first = site_secret(None, log)
    assert len(first) == 64 and site_secret(None, log) == first, "generated once, then kept"
    assert site_secret("from-config", log) == b"from-config"
    link = ticket_link(Signer(first), "http://desk/", "wang", "WO-1", NOW, 86400)
    assert link.startswith("http://desk/console/tickets/WO-1?link=")


def call(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], str]:
    """Status, headers and text of one request (no redirect followed)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def test_roles_links_sessions_and_the_audit_trail(
    tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver
) -> None:
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path, ack=600.0)

    async def scenario() -> None:
        async with running(config) as (site, app):
            assert app.web is not None
            api = app.api_url
            off = asyncio.to_thread  # the API is served on this loop: calls go from a thread

            async def act(ticket: str, action: str, who: str, body: dict[str, Any]) -> tuple[int, Any]:
                return await off(post, f"{api}/tickets/{ticket}/{action}", body, token_of(who))

            await eventually(lambda: good(app, "A-P1", "flow"), 15)
            site.inject("A-P1", "dry_run")
            [ticket] = await eventually(lambda: list(app.core.desk.tickets.values()), 60)
            [page] = await eventually(lambda: webhooks.to("plumbing-tech"), 10)
            link = page["link"]
            assert link.startswith(f"{api}/console/tickets/{ticket.id}?link=") and link in page["text"]

            # a viewer reads but may not act; a technician may not assign; the dispatcher may
            assert (await act(ticket.id, "comment", "viewer", {"note": "x"}))[0] == 403
            status, answer = await act(ticket.id, "assign", "plumbing-tech", {"assignee": "plumbing-tech"})
            assert status == 403 and "plumbing-tech is a technician and may not assign" in answer["error"]
            shown = await off(get, f"{api}/tickets/{ticket.id}")
            assert shown["id"] == ticket.id
            # the signed link: its person acts without a token, as themselves
            status, ev = await off(post, f"{link.replace('/console', '')}".replace("?", "/ack?", 1), {}, None)
            assert status == 200 and ev["actor"] == "plumbing-tech" and ev["event"] == "acknowledged"
            token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["link"][0]
            status, answer = await off(post, f"{api}/tickets/{ticket.id}/cancel?link={token}", {}, None)
            assert status == 403 and "allows only" in answer["error"]
            tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
            for bad, why in (
                (tampered, "not valid"),
                (
                    app.web.signer.sign(
                        "link", {"who": "plumbing-tech", "t": ticket.id}, app.clock.now() - 1
                    ),
                    "expired",
                ),
                (
                    app.web.signer.sign(
                        "link", {"who": "plumbing-tech", "t": "WO-other"}, app.clock.now() + 60
                    ),
                    "not valid",
                ),
            ):
                status, _h, text = await off(
                    call, f"{api}/console/tickets/{ticket.id}?link={bad}", None, {}, "GET"
                )
                assert status == 403 and why in text, (status, text[:300])
                status, answer = await off(post, f"{api}/tickets/{ticket.id}/start?link={bad}", {}, None)
                assert status == 403 and why in answer["error"]
            assert ticket.state == "acknowledged", "nothing a refused link asked for happened"

            # the console's login sets a signed, HttpOnly, SameSite session cookie
            form = urllib.parse.urlencode({"token": token_of("dispatcher")}).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            status, h, _ = await off(call, f"{api}/console/login", form, headers)
            cookie = h["set-cookie"]
            assert status == 303 and "HttpOnly" in cookie and "SameSite=strict" in cookie, cookie
            session = {"Cookie": cookie.split(";")[0]}
            status, _h, me = await off(call, f"{api}/me", None, session, "GET")
            assert status == 200 and json.loads(me) == {
                "name": "dispatcher",
                "role": "dispatcher",
                "via": "session",
            }
            # the queue's filters: state, priority, trade, building, assignee
            row = f'id="row-{ticket.id}"'
            for query, shown in (
                ("state=acknowledged&priority=P1&category=plumbing&building=A&assignee=plumbing-tech", True),
                ("", True),  # active tickets by default
                ("state=closed", False),
                ("priority=P4", False),
                ("category=elevator", False),
                ("building=B", False),
                ("assignee=elevator-tech", False),
            ):
                status, _h, html = await off(call, f"{api}/console/queue?{query}", None, session, "GET")
                assert status == 200 and (row in html) == shown, query
            # the page's language: ?lang= over the person's over the site's (en)
            for query, lang, board in (("", "en", "Board"), ("?lang=zh_CN", "zh-CN", "看板")):
                status, _h, html = await off(call, f"{api}/console{query}", None, session, "GET")
                assert status == 200 and f'<html lang="{lang}">' in html and f">{board}</a>" in html
            status, _h, _ = await off(call, f"{api}/console/login", b"token=wrong", headers)
            assert status == 401
            # no proxy is trusted here: a client cannot name another address for the trail
            forged = {"X-Forwarded-For": "203.0.113.9", "Authorization": f"Bearer {token_of('dispatcher')}"}
            status, _h, _ = await off(call, f"{api}/tickets/{ticket.id}/comment", b'{"note": "xff"}', forged)
            assert status == 200
            # the duty desk's calls: a technician takes a 报修 (as themselves), a viewer may not,
            # and follow-ups are the dispatchers'
            leak = {"building": "Tower B", "floor": "12F", "unit": "1203", "trade": "plumbing"}
            leak |= {"reporter": "Li Na", "phone": "13812345678", "description": "ceiling drips"}
            status, opened = await off(
                post, f"{api}/tickets", leak | {"actor": "Wu"}, token_of("plumbing-tech")
            )
            assert status == 201 and opened["actor"] == "plumbing-tech", opened
            assert (await off(post, f"{api}/tickets", leak, token_of("viewer")))[0] == 403
            status, answer = await off(post, f"{api}/tickets", {**leak, "phone": "110"}, TOKEN)
            assert status == 400 and answer["error"].startswith("phone: not a phone number"), answer
            follow = f"{api}/tickets/{opened['ticket']}/follow-up"
            status, answer = await off(post, follow, {"satisfaction": 4}, token_of("plumbing-tech"))
            assert status == 403 and "may not follow_up" in answer["error"]
            # the old single api.token still works, as the admin "api" (the CLI)
            assert (await off(post, f"{api}/tickets/{ticket.id}/comment", {"note": "cli"}, TOKEN))[0] == 200

            store = app.store
            trail = [(a.actor, a.via, a.action, a.outcome, a.address) for a in store.audit_events()]  # type: ignore[union-attr]
            assert ("viewer", "token", "comment", 403, "127.0.0.1") in trail
            assert ("plumbing-tech", "link", "ticket.ack", 200, "127.0.0.1") in trail
            assert ("plumbing-tech", "link", "cancel", 403, "127.0.0.1") in trail
            assert ("dispatcher", "session", "login", 303, "127.0.0.1") in trail
            assert ("api", "token", "ticket.comment", 200, "127.0.0.1") in trail
            assert ("dispatcher", "token", "ticket.comment", 200, "127.0.0.1") in trail
            assert ("plumbing-tech", "token", "desk.request", 201, "127.0.0.1") in trail
            assert ("plumbing-tech", "token", "follow_up", 403, "127.0.0.1") in trail
            acked = [e for e in ticket.events if e.event == "acknowledged"]
            assert [e.actor for e in acked] == ["plumbing-tech"]

    run(scenario(), timeout=150)


def test_openapi_and_a_trusted_proxy(tmp_path: Path, mosquitto: int, webhooks: WebhookReceiver) -> None:
    """The OpenAPI document names models and the bearer scheme; behind a trusted proxy the audit
    trail keeps the client's address and the session cookie is Secure."""
    config = with_people(demo_site(tmp_path, mosquitto), webhooks, tmp_path)
    config = config.model_copy(
        update={"api": config.api.model_copy(update={"trusted_proxies": ["127.0.0.1"]})}
    )

    async def scenario() -> None:
        async with running(config) as (_site, app):
            spec = await asyncio.to_thread(get, f"{app.api_url}/openapi.json")
            paths = spec["paths"]
            assert {"/tickets", "/tickets/{ticket_id}/{action}", "/silences", "/healthz", "/metrics"} <= set(
                paths
            )
            schemas = spec["components"]["schemas"]
            assert {"ActionBody", "SilenceBody", "TicketOut", "Error"} <= set(schemas)
            assert set(paths["/tickets/{ticket_id}/{action}"]["post"]["responses"]) >= {
                "200",
                "403",
                "409",
                "422",
            }
            assert paths["/silences"]["post"]["security"] == [{"HTTPBearer": []}]
            proxied = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Proto": "https",
            }
            form = urllib.parse.urlencode({"token": token_of("viewer")}).encode()
            status, h, _ = await asyncio.to_thread(call, f"{app.api_url}/console/login", form, proxied)
            assert status == 303 and "Secure" in h["set-cookie"]
            [login] = app.store.audit_events()  # type: ignore[union-attr]
            assert (login.actor, login.address) == ("viewer", "203.0.113.9")
            assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

    run(scenario(), timeout=60)


def test_sla_countdown_turns_red_before_the_breach() -> None:
    sla = Sla(ack=600, start=1800, resolve=7200)
    t = Ticket("WO-1", "k", "A-P1", "pump.dry_run", "P1", "plumbing", "dry", "B2", NOW, NOW)
    clock = sla_clock(t, sla, NOW + 300)
    assert clock is not None and (clock.name, clock.left, clock.red) == ("ack", 300, False)
    late = sla_clock(t, sla, NOW + 451)  # under a quarter of the ack time left: red, not yet breached
    assert late is not None and late.red and late.left > 0
    t.acknowledged_at = NOW + 60
    nxt = sla_clock(t, sla, NOW + 451)
    assert nxt is not None and (nxt.name, nxt.red) == ("start", False), "the next clock runs"
    t.state = "cancelled"
    assert sla_clock(t, sla, NOW + 451) is None
