"""What a person reads for a ticket's state and category (trade), in their language.

Tickets stage. The desk keeps machine names (``in_progress``, ``elevator``);
screens and messages show these labels. The msgids are marked here with
``N_`` so extraction finds them; a category no catalog knows (a site's own
skill) is shown as written.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitord.core.i18n import N_, translator

STATES = {
    "open": N_("open"),
    "acknowledged": N_("acknowledged"),
    "in_progress": N_("in progress"),
    "resolved": N_("resolved"),
    "closed": N_("closed"),
    "cancelled": N_("cancelled"),
}

#: The skills of the built-in rule packs, plus the default of a rule without one. The msgid is the
#: name itself, so English screens show what the rule says.
CATEGORIES = {
    "electrical": N_("electrical"),
    "elevator": N_("elevator"),
    "energy": N_("energy"),
    "hvac": N_("hvac"),
    "it": N_("it"),
    "plumbing": N_("plumbing"),
    "general": N_("general"),
}

#: What happened to a ticket (``TicketEvent.event``), as a word.
EVENTS = {
    "opened": N_("opened"),
    "appended": N_("appended"),
    "flapping": N_("flapping"),
    "explained": N_("explained"),
    "acknowledged": N_("acknowledged"),
    "started": N_("started"),
    "commented": N_("commented"),
    "assigned": N_("assigned"),
    "escalated": N_("escalated"),
    "resolved": N_("resolved"),
    "closed": N_("closed"),
    "cancelled": N_("cancelled"),
    "reopened": N_("reopened"),
    "recurred": N_("recurred"),
    "symptom": N_("symptom"),
    "linked": N_("linked"),
    "breached": N_("breached"),
    "undelivered": N_("undelivered"),
    "reported": N_("reported by a resident"),
    "followed_up": N_("followed up"),
    "complained": N_("complaint"),
    "complaint_closed": N_("complaint closed"),
    "complaint_dismissed": N_("complaint dismissed"),
}

#: An alert's state (``AlertEvent.state``).
ALERT_STATES = {"firing": N_("firing"), "resolved": N_("resolved"), "flapping": N_("flapping")}


def label(names: Mapping[str, str], key: str, locale: str) -> str:
    """``key``'s label from one of the tables above, in ``locale``; a key the table lacks as written."""
    return translator(locale)(names[key]) if key in names else key
