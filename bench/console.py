"""Benchmark: the console in a real browser — page weight, first render with 1,000 assets, SSE latency.

The web app (uvicorn) runs on its own event loop thread over a real core (no drivers) for a site of
1,000 pumps in 10 buildings; headless chromium (selenium, Debian's chromium-driver) logs in as a
dispatcher. Figures:

1. page weight: bytes of the status board and a ticket page (HTML), and of the CSS and JS they load;
2. time to first render of the status board, 1,000 assets: the browser's own first-contentful-paint
   and DOMContentLoaded (navigation timing), median of several loads;
3. SSE latency, from an alert and its ticket leaving the event road (``road.emit`` on the loop) to
   the browser: the ``message`` event in the page, and the board fragment re-rendered after it.

Never part of the test pass/fail. Needs chromium and chromium-driver (``make system-deps``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import CONFIG_DIR, load_config
from monitord.core.clock import SystemClock
from monitord.daemon.core import build_core
from monitord.daemon.web import WebServer
from monitord.daemon.web.context import Web
from monitord.people.identity import Identities, Signer, people
from monitord.people.roster import Roster
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketPolicyView
from tests.support.browser import DESKTOP, Browser

ASSETS, BUILDINGS, LOADS, EVENTS = 1000, 10, 5, 20
TOKEN = "bench-dispatcher"


def site_yaml(folder: Path) -> Path:
    assets = "".join(
        f"  - {{id: P{i:04d}, type: pump, profile: pump-set,"
        f" connection: {{modbus: {{host: 127.0.0.1, port: {1502 + i // 200}, unit: {i % 200 + 1}}}}},"
        f" location: {{building: B{i % BUILDINGS}, room: pump room {i // BUILDINGS}}}}}\n"
        for i in range(ASSETS)
    )
    text = (
        "site: {id: bench, name: Bench estate}\n"
        f"profiles:\n  - include: {CONFIG_DIR}/profiles/pump-set.yaml\n"
        f"assets:\n{assets}"
        "rules:\n  - id: pump.dry\n    applies_to: {type: pump}\n"
        '    when: "running == 1 and suction_pressure < 0.05"\n    for: 5s\n'
        "    ticket: {priority: P1, skill: plumbing}\n"
        "roster:\n  teams:\n    plumbing:\n      skills: [plumbing]\n"
        f"      members: [{{name: disp, role: dispatcher, token: {TOKEN}}}]\n"
        f"notify: {{log: {folder}/notifications.db}}\n"
    )
    path = folder / "site.yaml"
    path.write_text(text)
    return path


def fetch(url: str, cookie: str = "", gzip: bool = False) -> int:
    """Bytes on the wire for ``url`` (gzip: as a browser asks for it)."""
    headers = {"Cookie": cookie} if cookie else {}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return len(r.read())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = load_config(site_yaml(folder))
        store = SqliteStore(folder / "store.db", flush_interval=0.2)
        core = build_core(config, SystemClock(), store, silences=folder / "notifications.db")
        assert config.roster is not None
        web = Web(core, Identities(people(config.roster), None), Signer(b"bench"), Roster(config.roster))
        web.attach()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        server = WebServer(web, "127.0.0.1", 0)
        serving = asyncio.run_coroutine_threadsafe(server.serve(), loop)
        base = f"http://127.0.0.1:{server.port}"
        # a ticket to show: an alert opened it, as the pipeline would
        alert = AlertEvent(
            core.clock.now(), "pump.dry", "P0001", "firing", "critical", core.clock.now(), "dry"
        )
        opened = core.desk.on_alert(alert, TicketPolicyView("P1", "plumbing", True), "B1")
        ticket = opened[0].ticket
        browser = Browser(base, DESKTOP)
        try:
            browser.login(TOKEN)
            cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.driver.get_cookies())
            for gz in (False, True):
                board = fetch(f"{base}/console", cookie, gz)
                page = fetch(f"{base}/console/tickets/{ticket}", cookie, gz)
                css = fetch(f"{base}/console/static/console.css", gzip=gz)
                js = fetch(f"{base}/console/static/console.js", gzip=gz)
                print(
                    f"page weight ({'gzip' if gz else 'uncompressed'}): status board ({ASSETS} assets)"
                    f" {board / 1024:.1f} KiB, ticket page {page / 1024:.1f} KiB;"
                    f" + CSS {css / 1024:.1f} KiB, JS {js / 1024:.1f} KiB (nothing else is loaded)"
                )

            paints, loaded = [], []
            for _ in range(LOADS):
                browser.open("/console")
                browser.wait_for("#asset-P0999")
                fcp = first_paint(browser)
                nav = browser.js(
                    "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                )
                paints.append(fcp)
                loaded.append(float(nav))
            print(
                f"status board, {ASSETS} assets, first render: first-contentful-paint median"
                f" {statistics.median(paints):.0f} ms (max {max(paints):.0f}), DOMContentLoaded median"
                f" {statistics.median(loaded):.0f} ms, over {LOADS} loads"
            )

            browser.wait_live()
            to_message, to_board = [], []
            for i in range(EVENTS):
                sent = time.time()
                ev = AlertEvent(sent, "pump.dry", f"P{i + 2:04d}", "firing", "critical", sent, "dry")
                loop.call_soon_threadsafe(core.road.emit, [ev])
                # the page records when the message came and when the fragment was swapped
                message_at, board_at = wait_marks(browser, f"P{i + 2:04d}")
                to_message.append((message_at - sent) * 1000)
                to_board.append((board_at - sent) * 1000)
            print(
                f"SSE latency, road → browser message: median {statistics.median(to_message):.1f} ms,"
                f" max {max(to_message):.1f} ms; → board fragment ({ASSETS} assets) re-rendered: median"
                f" {statistics.median(to_board):.0f} ms, max {max(to_board):.0f} ms ({EVENTS} alerts;"
                " the page waits 50 ms to coalesce a burst before it re-fetches)"
            )
        finally:
            browser.close()
            loop.call_soon_threadsafe(server.stop)
            serving.result(timeout=10)
            store.close()


PAINT = "const p = performance.getEntriesByType('paint'); return p.length ? p[p.length - 1].startTime : null"


def first_paint(browser: Browser) -> float:
    """The page's first-contentful-paint in ms since navigation (chromium records it just after)."""
    deadline = time.time() + 5
    while time.time() < deadline:
        fcp = browser.js(PAINT)
        if fcp is not None:
            return float(fcp)
        time.sleep(0.01)
    raise TimeoutError("no paint entry within 5 s")


def wait_marks(browser: Browser, asset: str) -> tuple[float, float]:
    """(message seen, fragment swapped) in epoch seconds, as the page recorded them."""
    deadline = time.time() + 10
    while time.time() < deadline:
        marks = browser.js(
            "const l = document.getElementById('live');"
            f"return (l.dataset.lastEvent || '').includes('{asset}')"
            " && l.dataset.messageAt && l.dataset.updated"
            " && Number(l.dataset.updated) >= Number(l.dataset.messageAt) ? [Number(l.dataset.messageAt),"
            " Number(l.dataset.updated)] : null"
        )
        if marks:
            return marks[0] / 1000, marks[1] / 1000
        time.sleep(0.005)
    raise TimeoutError(f"{asset}: the board did not update within 10 s")


if __name__ == "__main__":
    main()
