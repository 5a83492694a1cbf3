"""Whose notification log this is: one site's outbox, sent log, silences and secret, never two sites'.

People layer, beside ``notify`` and ``identity``, which keep their tables in
the same SQLite file (``notify.log``). Sites that share one InfluxDB keep
their notification logs apart (docs/storage.md#many-sites): two instances
of different sites started with the default paths in one folder would
otherwise share silences (a silence of one site's ``P1`` muting another's)
and resume each other's pages. The first site to open a log claims it; another
site is refused with the file and the key to set. ``kept`` holds such
one-row facts of the log (the owner here, the site secret in ``identity``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from monitord.core.errors import ConfigError


def kept(log: Path, table: str, value: str) -> str:
    """The value a one-row ``table`` of the log holds: ``value`` if it held none yet (then kept)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(log, timeout=30)
    try:
        with db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY CHECK (id = 1), v TEXT)")
            db.execute(f"INSERT OR IGNORE INTO {table} VALUES (1, ?)", (value,))
        return str(db.execute(f"SELECT v FROM {table}").fetchone()[0])
    finally:
        db.close()


def claim(log: Path, site: str) -> None:
    """Record ``site`` as the owner of the log at ``log``; ConfigError if another site owns it."""
    owner = kept(log, "log_site", site)
    if owner != site:
        raise ConfigError(
            [
                f"notify.log: {log} is the notification log of site {owner!r}, not {site!r}: give each "
                "site its own notify.log (and store.spool)"
            ]
        )
