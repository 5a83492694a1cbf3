"""Many sites, one store: is this site's ticket code its alone — at start-up, and for ``check --online``.

Daemon layer, called by ``Monitord`` once tickets are restored and held
decisions made, and by ``monitord check --online``. Sites sharing one InfluxDB
tell their tickets apart by the code in the id (docs/storage.md#ticket-ids);
two sites configured with one code would repeat ids, which no single config
can show (``config/across_sites`` compares the files checked together), so the
store is asked.
"""

from __future__ import annotations

import asyncio
import logging

from monitord.core.errors import StoreError
from monitord.store.base import Store

log = logging.getLogger(__name__)


def code_users(store: Store, code: str) -> set[str] | None:
    """Other sites of the store whose tickets carry ``code``; None for a store no other site shares
    (SQLite). Raises ``StoreError`` when the store cannot be asked."""
    users = getattr(store, "code_users", None)  # a store shared by sites (InfluxDB)
    if users is None:
        return None
    others: set[str] = users(code)
    return others


async def ticket_code_alone(store: Store, code: str) -> None:
    """Log an error naming the other sites of the store whose tickets carry ``code``, if any."""
    try:
        others = await asyncio.to_thread(code_users, store, code)
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
