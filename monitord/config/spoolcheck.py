"""Can the daemon make and write the store's spool folder: a config check, so ``monitord check`` says so.

Config layer, called by ``site.cross_check``. The spool is where the store's
writes wait while the store (InfluxDB) or the file (SQLite) refuses them; a
folder that cannot be made would be found only at start-up, or on a store
outage by a backend that spools late. Checked here: the nearest part of the
path that exists is a folder this process may write in. A full disk is not a
config error (it is counted and reported while it lasts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monitord.config.yamlio import problem


def default_spool(path: Path) -> Path:
    """Where a SQLite store's spool goes when the config names none: a folder beside the file."""
    return path.with_name(path.name + ".spool")


def spool_folder(store: Any) -> Path:
    """The spool folder a store config names, or its default."""
    return Path(store.spool) if store.spool else default_spool(Path(store.path))


def spool_problems(store: Any, raw: Any) -> list[str]:
    folder = spool_folder(store)
    key = ("store", "spool") if store.spool else ("store", "path")
    at = folder.absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    if at.exists() and not at.is_dir():
        return [problem(raw, key, f"spool folder {folder}: {at} is a file, not a folder")]
    if not os.access(at, os.W_OK | os.X_OK):
        return [problem(raw, key, f"spool folder {folder}: cannot write in {at}")]
    return []
