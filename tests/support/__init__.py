"""Every helper the tests share. Test modules import from here (or its modules), never from each
other or from conftest; conftest holds the fixtures and builds them from this package.

- ``net``: free_port, wait_port, run (a bounded scenario), eventually (poll until true)
- ``webhooks``: WebhookReceiver, a real HTTP server recording what it receives (and down for a
  while if asked); BlackHole, a port that accepts and never answers
- ``influx``: InfluxServer (Debian's influxd on free ports) and V2WriteProxy (/api/v2/write)
- ``daemon``: the demo site on free ports (as a config, or a file for ``monitord run``), the daemon
  running against simulators, its /metrics, the people's
  roster, API calls, and ``evaluated_past`` (proof the daemon evaluated after an instant)
- ``timeline``: the pipeline on a manual clock, with pushes and expectations over intervals
- ``packs``: which rule tests show a pack rule firing and honestly quiet
- ``configs``: a good small site file and its variants, ``problems`` (what load_config says) and
  ``check`` (``monitord check`` as a process); ``ONE_PUMP``, the smallest timeline site
- ``modbus_raw``: a raw Modbus TCP server whose replies a test writes byte by byte, ``poll_raw``
- ``mosquitto``: a Mosquitto a test can stop and start (a broker outage)
- ``alertmanager``: Debian's Prometheus Alertmanager on a free port, notifying a webhook receiver
- ``tls``: a throw-away PKI made with ``openssl`` (CA, broker and client certificates, a CA that
  signed neither)
- ``json_fuzz``: hostile JSON strategies (hypothesis) for the payload fuzz tests
"""

from tests.support.daemon import (
    SKILLS,
    TOKEN,
    SiteThread,
    daemon_yaml,
    demo_site,
    evaluated_past,
    evaluations,
    get,
    good,
    metric,
    poll_once,
    post,
    running,
    sample_time,
    simulated,
    site_yaml,
    text_of,
    token_of,
    with_people,
)
from tests.support.influx import InfluxServer, V2WriteProxy
from tests.support.net import eventually, free_port, run, wait_port
from tests.support.timeline import T0, Seen, Timeline, pump_site, restored_core
from tests.support.webhooks import BlackHole, WebhookReceiver

__all__ = [
    "SKILLS",
    "T0",
    "TOKEN",
    "BlackHole",
    "InfluxServer",
    "Seen",
    "SiteThread",
    "Timeline",
    "V2WriteProxy",
    "WebhookReceiver",
    "daemon_yaml",
    "demo_site",
    "evaluated_past",
    "evaluations",
    "eventually",
    "free_port",
    "get",
    "good",
    "metric",
    "poll_once",
    "post",
    "pump_site",
    "restored_core",
    "run",
    "running",
    "sample_time",
    "simulated",
    "site_yaml",
    "text_of",
    "token_of",
    "wait_port",
    "with_people",
]
