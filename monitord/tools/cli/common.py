"""What several command groups share: the store, API and language options, and reading times typed in."""

from __future__ import annotations

import argparse
from datetime import tzinfo
from pathlib import Path

from monitord.config.site import SiteConfig, load_config
from monitord.core.errors import MonitordError
from monitord.core.i18n import DEFAULT, UnknownLocale, normalise
from monitord.core.units import parse_time
from monitord.tools.apiclient import ApiClient


def locale_arg(text: str) -> str:
    """``--lang``'s value, normalised (zh-CN, zh_CN, en, ...); anything else is a usage error."""
    try:
        return normalise(text)
    except UnknownLocale as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def lang_args(p: argparse.ArgumentParser) -> None:
    """The language of what a command prints for people (see ``locale_of``)."""
    # SUPPRESS: given before or after a subcommand (``tickets --lang zh-CN list``, ``tickets ack --lang
    # zh-CN``), a sub-parser's default must not undo the parent's value.
    p.add_argument(
        "--lang",
        type=locale_arg,
        default=argparse.SUPPRESS,
        help="zh-CN or en: what is printed for people (default: the config's site.locale, else en)",
    )


def locale_of(args: argparse.Namespace, config: SiteConfig | None) -> str:
    """``--lang`` if given, else the site's language, else English."""
    lang: str | None = getattr(args, "lang", None)
    return lang or (config.site.locale if config is not None else DEFAULT)


def store_args(p: argparse.ArgumentParser) -> None:
    """Where commands that read the store find it (see ``storage.open_reader``)."""
    p.add_argument(
        "--config", help="site config: its store, its SLAs, its time zone for times shown, and its language"
    )
    lang_args(p)
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


def api_client(args: argparse.Namespace, locale: str = DEFAULT) -> ApiClient:
    """The daemon's API as the holder of ``--token``; its refusals come back in ``locale``."""
    return ApiClient(args.api, args.token, locale=locale)


def time_arg(text: str | None, tz: tzinfo | None) -> float | None:
    """An optional time option (epoch seconds or ISO 8601, naive ones in ``tz``)."""
    if text is None:
        return None
    try:
        return parse_time(text, tz)
    except ValueError as exc:
        raise MonitordError(str(exc)) from None
