"""Server-rendered pages: the Jinja2 environment (templates shipped in the package) and ``page``.

Every text a person reads goes through ``_``: ``translator(locale)`` installed as Jinja2's gettext
callables. The locale comes from ``?lang=`` when given (zh_CN or en), else the person's ``locale``,
else the site's ``site.locale``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from monitord.core.i18n import UnknownLocale, ngettext, normalise, translator
from monitord.core.units import format_duration

TEMPLATES = Path(__file__).with_name("templates")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
    undefined=jinja2.StrictUndefined,  # a name missing from a page's context is a bug, not a blank
)


def locale_of(request: Request, lang: str = "", person: str | None = None) -> str:
    """``?lang=`` when given (and known), else the person's own, else the site's."""
    for choice in (lang, person, request.app.state.web.locale):
        if choice:
            try:
                return normalise(choice)
            except UnknownLocale:
                continue  # a ?lang= nobody wrote a catalog for: the next choice
    return "en"


def render(template: str, context: dict[str, Any], locale: str) -> str:
    _ = translator(locale)
    env = _env.overlay()
    env.install_gettext_callables(  # type: ignore[attr-defined]  # added by the i18n extension
        gettext=_, ngettext=ngettext(locale), newstyle=True
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
