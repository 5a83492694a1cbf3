"""Which store backend a config asks for: the one registration point for backends."""

from __future__ import annotations

from pathlib import Path

from monitord.config.site import InfluxStoreConfig, SiteConfig
from monitord.core.metrics import Metrics
from monitord.store.base import Store


def open_store(config: SiteConfig, metrics: Metrics | None = None, *, writer: bool = True) -> Store:
    s = config.store
    if isinstance(s, InfluxStoreConfig):
        from monitord.store.influx import InfluxStore, InfluxTarget

        assets = {a.id: (a.type, str(a.location.get("building", ""))) for a in config.assets}
        points = {a.id: tuple(config.profile(a.profile).points) for a in config.assets}
        target = InfluxTarget(s.url, s.bucket, s.org, s.token, s.username, s.password)
        return InfluxStore(
            target,
            config.site.id,
            assets,
            Path(s.spool),
            spool_max_bytes=s.spool_max_mb * 2**20,
            flush_interval=s.flush_interval,
            metrics=metrics,
            writer=writer,
            points=points,
        )
    from monitord.store.sqlite import SqliteStore

    return SqliteStore(
        Path(s.path),
        spool_dir=Path(s.spool) if s.spool else None,
        spool_max_bytes=s.spool_max_mb * 2**20,
        flush_interval=s.flush_interval,
        writer=writer,
        metrics=metrics,
    )
