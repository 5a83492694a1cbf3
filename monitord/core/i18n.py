"""Languages: gettext catalogs for what people read (zh-CN and en).

Core layer, used by every stage that writes text for a person (notifications,
the console, ticket labels, rule summaries) and by the web console's Jinja2
templates. The catalogs are Babel ``.po`` files under
``monitord/locale/<locale>/LC_MESSAGES/monitord.po``, read at run time with
Babel (no compile step, so a wheel needs only the ``.po`` files); English is
the source language, so an English msgstr may stay empty. How to add a
message or a language: docs/i18n.md.
"""

from __future__ import annotations

import gettext
import io
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "monitord"
#: The locales with a catalog, in their canonical (gettext) spelling.
LOCALES = ("en", "zh_CN")
DEFAULT = "en"

_ALIASES = {
    "en": "en",
    "en_us": "en",
    "en_gb": "en",
    "zh": "zh_CN",
    "zh_cn": "zh_CN",
    "zh_hans": "zh_CN",
    "zh_hans_cn": "zh_CN",
}


class UnknownLocale(ValueError):
    """A locale with no catalog; the message lists the ones there are."""


def normalise(locale: str) -> str:
    """``zh-CN``, ``zh_CN``, ``zh-cn``, ``zh`` → ``zh_CN``; ``en``, ``en-US`` → ``en``.

    Raises ``UnknownLocale`` for anything else (config check turns that into a file:line error).
    """
    key = locale.strip().replace("-", "_").lower()
    if key not in _ALIASES:
        raise UnknownLocale(f"unknown locale {locale!r}; known: zh-CN, en")
    return _ALIASES[key]


def _checked(value: str) -> str:
    try:
        return normalise(value)
    except UnknownLocale as exc:
        raise PydanticCustomError("locale", str(exc)) from None


#: A config value naming a language (``site.locale``, a person's ``locale``), stored normalised.
Locale = Annotated[str, AfterValidator(_checked)]


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / normalise(locale) / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """The catalog of ``locale`` as a gettext object (for Jinja2's ``install_gettext_translations``).

    An unknown locale, or a catalog that cannot be read, gives English (the msgids) and a warning:
    at run time a wrong locale must not keep a page from going out.
    """
    try:
        path = catalog_path(locale)
    except UnknownLocale as exc:
        log.warning("%s: texts stay in English", exc)
        return gettext.NullTranslations()
    try:
        # Babel behind one import: only reading a catalog needs it.
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with path.open("rb") as f:
            catalog = read_po(f, locale=path.parts[-3], domain=DOMAIN)
        buf = io.BytesIO()
        write_mo(buf, catalog, use_fuzzy=False)  # fuzzy entries are drafts: their msgid is shown instead
        buf.seek(0)
        return gettext.GNUTranslations(buf)
    except (OSError, ValueError, ImportError) as exc:
        log.warning("message catalog %s unreadable (%s): texts stay in English", path, exc)
        return gettext.NullTranslations()


def translator(locale: str) -> Callable[[str], str]:
    """``gettext`` for ``locale`` ("zh_CN", "zh-CN" or "en"); English for an unknown one."""
    return translations(locale).gettext


def ngettext(locale: str) -> Callable[[str, str, int], str]:
    """``ngettext`` for ``locale``: ``ngettext(locale)("{n} ticket", "{n} tickets", n).format(n=n)``."""
    return translations(locale).ngettext


def N_(message: str) -> str:  # the conventional name, which extraction looks for
    """Mark a msgid for extraction where it is defined; translate it where it is shown."""
    return message


def english(message: str) -> str:
    """The identity translator: English, the source language."""
    return message


class Worded(Exception):
    """An error a person reads: ``message`` is a msgid filled with ``values``.

    ``str()`` is the English (what logs and the audit trail keep); ``said(locale)`` is the reader's
    words. The values a subclass names in ``translated`` are msgids themselves (a role, an action)
    and are said in the reader's words too; a message made elsewhere, with no values and no msgid,
    is said as written.
    """

    translated: tuple[str, ...] = ()

    def __init__(self, message: str, **values: str) -> None:
        super().__init__(message.format(**values) if values else message)
        self.message, self.values = message, values

    def said(self, locale: str) -> str:
        _ = translator(locale)
        if not self.values:
            return _(self.message)
        words = {k: _(v) if k in self.translated else v for k, v in self.values.items()}
        return _(self.message).format(**words)
