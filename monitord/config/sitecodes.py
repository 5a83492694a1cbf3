"""Several sites' configs at once: no two sites may number tickets under one code.

Config layer, used by ``monitord check`` with several files. Ticket ids carry
the site's code (``WO-<code>-YYYYMMDD-NNNN``, docs/storage.md#ticket-ids), so
sites that share a store tell their tickets apart by it; two sites with one
code (given, or derived from ``site.id`` in capitals) would repeat ids. Files
of one site (an HA pair's, a campus's shards) share its code rightly and are
not compared. The daemon still asks its store at start-up (daemon/sites.py),
which also finds sites whose files were not checked together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monitord.config.site import SiteConfig
from monitord.config.yamlio import load_yaml_raw, problem


def code_clashes(configs: Sequence[tuple[Path, SiteConfig]]) -> list[str]:
    """``file:line key: message`` at the second (third, ...) site that takes a code already taken."""
    first: dict[str, tuple[Path, str]] = {}  # code → (file, site id) of the first site with it
    out = []
    for path, config in configs:
        code, site = config.site.ticket_code, config.site.id
        seen = first.setdefault(code, (path, site))
        if seen[1] == site:
            continue
        key = ("site", "code") if config.site.code else ("site", "id")
        how = "" if config.site.code else f" (derived from site.id {site!r}: set site.code)"
        out.append(
            problem(
                load_yaml_raw(path),
                key,
                f"ticket code {code}{how} is also site {seen[1]!r}'s in {seen[0]}: ticket ids "
                f"WO-{code}-... would repeat across the two sites; give each site its own site.code",
            )
        )
    return out
