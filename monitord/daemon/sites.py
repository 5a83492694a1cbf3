"""Many sites, one store: the daemon's start-up check that its ticket code is its site's alone.

Daemon layer, called by ``Monitord`` once tickets are restored and held
decisions made. Sites sharing one InfluxDB tell their tickets apart by the
code in the id (docs/storage.md#ticket-ids); two sites configured with one
code would repeat ids, which no single config can show, so the store is asked.
"""

from __future__ import annotations

import asyncio
import logging

from monitord.core.errors import StoreError
from monitord.store.base import Store

log = logging.getLogger(__name__)


async def ticket_code_alone(store: Store, code: str) -> None:
    """Log an error naming the other sites of the store whose tickets carry ``code``, if any."""
    users = getattr(store, "code_users", None)  # a store shared by sites (InfluxDB)
    if users is None:
        return
    try:
        others: set[str] = await asyncio.to_thread(users, code)
    except StoreError as exc:  # a check, not a condition of monitoring: tickets go on regardless
        log.warning("could not check that site.code %s is this site's alone: %s", code, exc)
        return
    if others:
        log.error(
            "site.code %s: site(s) %s of the same store also number tickets WO-%s-...; "
            "give each site its own site.code, or ticket ids repeat across sites",
            code,
            ", ".join(sorted(others)),
            code,
        )
