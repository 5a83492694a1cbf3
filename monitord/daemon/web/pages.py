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

from monitord.core.i18n import N_, UnknownLocale, ngettext, normalise, translator
from monitord.core.units import format_duration
from monitord.tickets.labels import CATEGORIES, EVENTS, STATES

#: Machine words the pages show that the ticket labels do not cover: actions, roles, the queue's
#: "active", the timeline's "notified" — marked here so extraction finds them (the msgid is the
#: word: English pages show it).
WORDS = {
    w: w
    for w in (
        N_("ack"),
        N_("start"),
        N_("comment"),
        N_("assign"),
        N_("resolve"),
        N_("close"),
        N_("cancel"),
        N_("viewer"),
        N_("technician"),
        N_("dispatcher"),
        N_("admin"),
        N_("active"),
        N_("notified"),  # the ticket page's timeline: a page sent (from the outbox, not a ticket event)
    )
}

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
    # a state, event, trade, action or role in the reader's language; an unknown word as written
    env.filters["said"] = lambda word: _(
        next((t[word] for t in (STATES, EVENTS, CATEGORIES, WORDS) if word in t), word)
    )
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
