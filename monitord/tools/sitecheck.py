"""``monitord check --online``: ask each site's store whether another site numbers tickets with its code.

Tools layer, called by the ``check`` command after the files passed. The same
question the daemon asks at start-up (``daemon.sites.code_users``), asked
before the site goes live. A store that cannot be reached is a warning (the
files themselves are fine); another site using the code is an error (exit 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monitord.config.site import InfluxStoreConfig, SiteConfig
from monitord.core.errors import StoreError
from monitord.core.i18n import translator
from monitord.daemon.sites import code_users
from monitord.store.open import open_store


def online_code_check(configs: Sequence[tuple[Path, SiteConfig]], lang: str | None = None) -> int:
    """``lang``: ``--lang``, else each site's language."""
    status = 0
    for path, config in configs:
        _ = translator(lang or config.site.locale)
        code = config.site.ticket_code
        if not isinstance(config.store, InfluxStoreConfig):  # one SQLite file per site: nothing to ask
            print(_("{path}: the store is a SQLite file of its own; no other site to ask").format(path=path))
            continue
        store = open_store(config, writer=False)  # a reader: no writer thread, the spool left alone
        try:
            others = code_users(store, code) or set()
        except StoreError as exc:
            print(
                _(
                    "warning: {path}: cannot ask the store whether ticket code {code} is this site's alone: "
                    "{error}"
                ).format(path=path, code=code, error=exc)
            )
            continue
        finally:
            store.close()
        if others:
            status = 1
            print(
                _(
                    "error: {path}: site(s) {sites} of the same store already number tickets WO-{code}-...; "
                    "give each site its own site.code"
                ).format(path=path, sites=", ".join(sorted(others)), code=code)
            )
        else:
            print(
                _("{path}: no other site of the store numbers tickets WO-{code}-...").format(
                    path=path, code=code
                )
            )
    return status
