"""Running the daemon in the foreground: until Ctrl-C, SIGTERM or a duration; then a clean shutdown.

``monitord run`` and ``monitord demo`` both run the daemon this way, with a console
reporter that prints alerts and tickets as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Awaitable, Callable

from monitord.config.fleet import Member
from monitord.config.site import SiteConfig, site_zone
from monitord.daemon.app import Monitord
from monitord.people.console import ConsoleReporter

#: seconds a thread runs before another that waits may take the interpreter (CPython: 5 ms)
SWITCH_INTERVAL = 0.001


async def until_stopped(main: Callable[[asyncio.Event], Awaitable[None]], duration: float | None) -> None:
    """Run ``main(stop)``; ``stop`` is set on Ctrl-C, SIGTERM or after ``duration`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await main(stop)


def own_the_interpreter() -> None:
    """Tune the interpreter for a process that is the daemon (not a test running one in process):
    what start-up made (modules, config, the API's routes and models) lives as long as the daemon,
    so it goes out of the cyclic collector's reach, and a full collection under a flood of data
    walks only what came since (its pauses held an evaluation and a page 70-100 ms); and a page's
    thread, woken while the loop and the MQTT reader keep the interpreter busy, waits at most
    ``SWITCH_INTERVAL`` for its turn each time it asks, not CPython's 5 ms (up to 100 ms under a
    10k msg/s flood, 18 ms after): docs/performance.md#latency-flood."""
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL)


async def run_daemon(
    config: SiteConfig, stop: asyncio.Event, *, metrics_port: int | None = None, member: Member | None = None
) -> None:
    """The daemon with a console reporter, until ``stop`` is set; then a clean shutdown."""
    app = Monitord(config, metrics_port=metrics_port, member=member or Member.from_args(None, None))
    console = ConsoleReporter(app.core.assets, tz=site_zone(config), locale=config.site.locale)
    app.core.road.alert_listeners.append(console.alert)
    app.core.road.ticket_listeners.append(console.ticket)
    daemon = asyncio.create_task(app.run(), name="monitord")
    stopper = asyncio.create_task(stop.wait())
    started = asyncio.create_task(app.started.wait())
    await asyncio.wait([daemon, started], return_when=asyncio.FIRST_COMPLETED)
    if app.started.is_set():
        own_the_interpreter()
        print(f"metrics: {app.metrics_url}", flush=True)
        print(f"console: {app.api_url}/console", flush=True)
    await asyncio.wait([daemon, stopper], return_when=asyncio.FIRST_COMPLETED)
    app.stop()
    stopper.cancel()
    started.cancel()
    await daemon
