"""The words of a page: a ticket's notification text and e-mail subject in the reader's language.

People stage, used by the dispatcher (text) and the e-mail channel (subject).
English stays one line, as it always was; Chinese is written for a 值班
technician reading a robot message on a phone: a 【P1 电梯】 head, one fact a
line, and what to do last. Every msgid is a format string with named fields
only, so a translation may put them in any order (tests/test_i18n.py checks
that it keeps them all).
"""

from __future__ import annotations

from monitord.core.i18n import N_, translator
from monitord.tickets.desk import Ticket
from monitord.tickets.labels import CATEGORIES, label

OPENED = N_(
    "[{priority}] {ticket} {category}: {subject} @ {location}: {summary}{caller} — since {since}."
    " Acknowledge: POST {ack_url} or `monitord tickets ack {ticket}`."
)
ESCALATED = N_(
    "[{priority}] {ticket} {category}: {subject} @ {location}: {summary}{caller} — since {since}"
    " (escalated, level {level}: nobody acknowledged yet)."
    " Acknowledge: POST {ack_url} or `monitord tickets ack {ticket}`."
)
REOPENED = N_(
    "[{priority}] {ticket} {category}: {subject} @ {location}: {summary}{caller} — since {since};"
    " back after it was resolved. Acknowledge: POST {ack_url} or `monitord tickets ack {ticket}`."
)
#: What the page is about: a device, or a resident's request (报修, which names no device) and who
#: reported it, so the assignee can call back.
DEVICE = N_("{name} ({asset})")
REQUEST = N_("repair request")
CALLER = N_(" (reported by {reporter}, {phone})")
#: The console's page of the ticket, signed for the reader (docs/console.md): the phone's way in.
LINK = N_(" On your phone: {link}")


def page_text(
    t: Ticket,
    *,
    name: str,
    summary: str,
    since: str,
    level: int,
    event: str,
    ack_url: str,
    locale: str,
    link: str = "",
) -> str:
    """The notification text every channel carries (robots, Slack, e-mail body, console).

    ``name`` is the asset's as the site file writes it, ``summary`` already in ``locale``, ``since``
    formatted in the site's zone; ``event`` is opened, reopened or escalated.
    """
    _ = translator(locale)
    # One whole message per kind of page, so a translation can be written as a message, not in pieces.
    if event == "escalated" or level:
        template = _(ESCALATED)
    elif event == "reopened":
        template = _(REOPENED)
    else:
        template = _(OPENED)
    request = t.source == "request"
    return template.format(
        priority=t.priority,
        category=label(CATEGORIES, t.category, locale),
        ticket=t.id,
        subject=_(REQUEST) if request else _(DEVICE).format(name=name, asset=t.asset),
        caller=_(CALLER).format(reporter=t.reporter, phone=t.phone) if request else "",
        location=t.location or _("unknown location"),
        summary=summary,
        since=since,
        level=level,
        ack_url=ack_url,
    ) + (_(LINK).format(link=link) if link else "")


def email_subject(ticket: str, priority: str, asset_name: str, summary: str, locale: str) -> str:
    _ = translator(locale)
    return _("[{priority}] {ticket} {name}: {summary}").format(
        priority=priority, ticket=ticket, name=asset_name, summary=summary
    )
