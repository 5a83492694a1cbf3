"""Several sites' configs at once: no two sites may number tickets under one code, nor share a file.

Config layer, used by ``monitord check`` with several files. Ticket ids carry
the site's code (``WO-<code>-YYYYMMDD-NNNN``, docs/storage.md#ticket-ids), so
sites that share a store tell their tickets apart by it; two sites with one
code (given, or derived from ``site.id`` in capitals; a sharded site's shards
number theirs ``<code>-S<k>``) would repeat ids. A
notification log, a SQLite file or a spool folder is one site's own: the
daemon refuses another site's log at start-up (people/logsite.py), and two
sites writing one SQLite file or one spool would mix their rounds. Files of one
site (an HA pair's, a campus's shards) share its code and files rightly and
are not compared. The daemon still asks its store at start-up
(daemon/sites.py), which also finds sites whose files were not checked
together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from monitord.config.shards import shard_code
from monitord.config.site import SiteConfig, SqliteStoreConfig
from monitord.config.spoolcheck import spool_folder
from monitord.config.yamlio import load_yaml_raw, problem


def clashes(configs: Sequence[tuple[Path, SiteConfig]]) -> list[str]:
    """``file:line key: message`` at the second (third, ...) site that takes a ticket code or a file
    an earlier site already took."""
    first: dict[tuple[str, str], tuple[Path, str]] = {}  # (what, code or path) → (file, site id)
    out = []
    for path, config in configs:
        site = config.site.id
        for what, value, key, hint in _claims(config):
            seen = first.setdefault((what, value), (path, site))
            if seen[1] != site:
                out.append(problem(load_yaml_raw(path), key, _said(what, value, hint, seen)))
    return out


def _claims(config: SiteConfig) -> Iterator[tuple[str, str, tuple[str, ...], str]]:
    """What a site takes for its own: (what, value, the key that sets it, how it came about).
    Paths as the daemon, started in this folder, would open them."""
    code = config.site.ticket_code
    derived = "" if config.site.code else f" (derived from site.id {config.site.id!r}: set site.code)"
    code_key = ("site", "code") if config.site.code else ("site", "id")
    yield "code", code, code_key, derived
    if config.fleet.mode == "shard":  # each shard numbers its own: TA-S1 is site TA's shard 1's code
        for k in range(config.fleet.shards):
            yield "code", shard_code(code, k), code_key, f" (its shard {k}'s)"
    store, notify = config.store, config.notify
    log_key = (
        ("notify", "log")
        if notify.log
        else ("store", "path" if isinstance(store, SqliteStoreConfig) else "spool")
    )
    log_hint = "" if notify.log else " (beside the store: set notify.log)"
    yield "log", str(config.notify_log.absolute()), log_key, log_hint
    if isinstance(store, SqliteStoreConfig):
        yield "sqlite", str(Path(store.path).absolute()), ("store", "path"), ""
    spool_key = ("store", "spool") if store.spool else ("store", "path")
    spool_hint = "" if store.spool else " (beside the store file: set store.spool)"
    yield "spool", str(spool_folder(store).absolute()), spool_key, spool_hint


def _said(what: str, value: str, hint: str, seen: tuple[Path, str]) -> str:
    other = f"site {seen[1]!r}'s in {seen[0]}"
    if what == "code":
        return (
            f"ticket code {value}{hint} is also {other}: ticket ids WO-{value}-... would repeat "
            "across the two sites; give each site its own site.code"
        )
    name = {"log": "notification log", "sqlite": "SQLite store", "spool": "spool folder"}[what]
    return f"{name} {value}{hint} is also {other}: give each site its own"
