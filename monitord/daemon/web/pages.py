"""Server-rendered pages: the Jinja2 environment (templates shipped in the package) and ``page``.

Every text a person reads goes through ``_``: ``translator(locale)`` installed as Jinja2's gettext
callables. The locale comes from ``?lang=`` when given (zh_CN or en), else the person's ``locale``, else the
site's ``api.locale``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from monitord.core.i18n import translator
from monitord.core.units import format_duration

TEMPLATES = Path(__file__).with_name("templates")
LOCALES = {"zh_cn": "zh_CN", "zh-cn": "zh_CN", "zh": "zh_CN", "en": "en"}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
    undefined=jinja2.StrictUndefined,  # a name missing from a page's context is a bug, not a blank
)


def locale_of(request: Request, lang: str = "", person: str | None = None) -> str:
    """``?lang=`` when given, else the person's own, else the site's."""
    default: str = person or request.app.state.web.locale
    return LOCALES.get((lang or "").lower(), default)


def render(template: str, context: dict[str, Any], locale: str) -> str:
    _ = translator(locale)
    env = _env.overlay()
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the i18n extension
        gettext=_, ngettext=lambda s, p, n: _(s if n == 1 else p), newstyle=True
    )
    tz = context.get("tz")
    env.filters["age"] = format_duration
    env.filters["clock"] = lambda ts: dt.datetime.fromtimestamp(ts, tz).strftime("%m-%d %H:%M:%S")
    return env.get_template(template).render(locale=locale, **context)


def page(
    request: Request, template: str, context: dict[str, Any], lang: str = "", status: int = 200
) -> HTMLResponse:
    who = context.get("who")
    locale = locale_of(request, lang, getattr(who, "locale", None))
    tz = request.app.state.tz
    body = render(template, {"tz": tz, "lang": lang, "who": None, **context}, locale)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
