"""Translations for what people read (placeholder: every message id comes back unchanged).

The gettext catalogs (zh-CN, en) replace this at merge; the signature is the contract:
``translator(locale)`` gives the ``_`` that templates and Python texts call.
"""

from __future__ import annotations

from collections.abc import Callable


def translator(locale: str) -> Callable[[str], str]:
    """The ``_`` for ``locale`` ("zh_CN" or "en"); here, the message id itself."""
    del locale

    def _(message: str) -> str:
        return message

    return _
