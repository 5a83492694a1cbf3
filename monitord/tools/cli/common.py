"""What several command groups share: the store and API options, and reading times typed in."""

from __future__ import annotations

import argparse
from datetime import tzinfo
from pathlib import Path

from monitord.config.site import SiteConfig, load_config
from monitord.core.errors import MonitordError
from monitord.core.units import parse_time
from monitord.tools.apiclient import ApiClient


def store_args(p: argparse.ArgumentParser) -> None:
    """Where commands that read the store find it (see ``storage.open_reader``)."""
    p.add_argument("--config", help="site config: its store, its SLAs, and its time zone for times shown")
    p.add_argument(
        "--store",
        help="SQLite store file (default: the config's store, else ./monitord-data/monitord.db"
        " or the demo's ./monitord-data/demo.db)",
    )


def config_and_store(args: argparse.Namespace) -> tuple[SiteConfig | None, Path | None]:
    """``--config`` (loaded) if given, and ``--store`` if given (it wins over the config's store)."""
    return (load_config(args.config) if args.config else None), (Path(args.store) if args.store else None)


def api_args(p: argparse.ArgumentParser) -> None:
    """How commands that act through the daemon reach it (see ``api_client``)."""
    p.add_argument("--api", help="daemon API (default $MONITORD_API or http://127.0.0.1:9109)")
    p.add_argument("--token", help="API token (default $MONITORD_TOKEN)")


def api_client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.api, args.token)


def time_arg(text: str | None, tz: tzinfo | None) -> float | None:
    """An optional time option (epoch seconds or ISO 8601, naive ones in ``tz``)."""
    if text is None:
        return None
    try:
        return parse_time(text, tz)
    except ValueError as exc:
        raise MonitordError(str(exc)) from None
