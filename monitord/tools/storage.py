"""The tools' way into a store: open it by config or by path, read the ticket desk and alerts
back, and move samples between a store and CSV.

``monitord tickets``, ``report``, ``rules explain`` and ``samples`` all start here, so each
question (which store? is it there? what does its desk hold?) has one answer.
"""

from __future__ import annotations

from pathlib import Path

from monitord.alerting.tracker import AlertEvent
from monitord.config.site import SiteConfig, SqliteStoreConfig
from monitord.core.errors import MonitordError
from monitord.store.base import Store
from monitord.store.open import open_store
from monitord.store.samples_csv import read_csv, write_csv
from monitord.store.sqlite import SqliteStore
from monitord.tickets.desk import TicketDesk


def open_sqlite(path: Path, *, writer: bool = False) -> SqliteStore:
    """A SQLite store file that must already exist (a reader never creates an empty one)."""
    if not path.exists():
        raise MonitordError(f"no store at {path}")
    return SqliteStore(path, writer=writer)


#: Where a reader looks with neither a store nor a config: the daemon's usual file, then the demo's.
DEFAULT_STORES = (Path("monitord-data/monitord.db"), Path("monitord-data/demo.db"))


def open_reader(config: SiteConfig | None, path: Path | None) -> Store:
    """The SQLite file at ``path`` if given, else the store ``config`` names (any backend), else the
    first of ``DEFAULT_STORES`` that exists."""
    if path is not None:
        return open_sqlite(path)
    if config is not None:
        if isinstance(config.store, SqliteStoreConfig):
            return open_sqlite(Path(config.store.path))
        return open_store(config, writer=False)
    found = next((p for p in DEFAULT_STORES if p.exists()), None)
    if found is None:
        tried = " or ".join(f"./{p}" for p in DEFAULT_STORES)
        raise MonitordError(f"no store at {tried}: give --store FILE or --config SITE.yaml")
    return open_sqlite(found)


def sqlite_reader(config: SiteConfig, path: Path | None) -> SqliteStore:
    """A SQLite store to read samples from: ``path`` if given, else the config's own store."""
    if path is not None:
        return open_sqlite(path)
    if not isinstance(config.store, SqliteStoreConfig):
        raise MonitordError(
            "rules explain reads a SQLite store: give --store (from InfluxDB: `monitord samples export"
            " --config SITE.yaml --csv F`, then `samples import --csv F --store DB`)"
        )
    return open_sqlite(Path(config.store.path))


def restore_desk(store: Store) -> TicketDesk:
    """The ticket desk as the store's ticket events leave it."""
    desk = TicketDesk()
    desk.restore(store.ticket_events())
    return desk


def read_history(store: Store) -> tuple[TicketDesk, list[AlertEvent]]:
    """The restored ticket desk and every alert event; closes ``store``."""
    try:
        return restore_desk(store), store.alert_events()
    finally:
        store.close()


def read_desk(store: Store) -> TicketDesk:
    """The restored ticket desk; closes ``store``."""
    try:
        return restore_desk(store)
    finally:
        store.close()


def export_samples(
    reader: Store, csv_path: Path, asset: str | None, since: float | None, until: float | None
) -> int:
    """Samples of a store opened to read (one asset, a time range, or all) to CSV; returns the rows
    written; closes ``reader``."""
    try:
        return write_csv(reader.samples(asset, since, until), csv_path)
    finally:
        reader.close()


def import_samples(csv_path: Path, store_path: Path) -> int:
    """A CSV export into a SQLite store (created if missing); returns the batches imported."""
    store = SqliteStore(store_path)
    count = 0
    try:
        for frame in read_csv(csv_path):
            store.write_samples(list(frame.batches()))
            count += len(frame)
        store.flush(timeout=600)
    finally:
        store.close()
    return count
