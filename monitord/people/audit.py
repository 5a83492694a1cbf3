"""What a person changed: one audit event per state-changing call of the API or console.

An ``AuditEvent`` travels the same ``EventRoad`` as alert and ticket events (stored, then told to
listeners) so the trail cannot miss a change the people around it saw. The actor is the identity the
daemon authenticated, never a name the client sent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditEvent:
    ts: float
    actor: str  # the authenticated identity
    role: str
    via: str  # token, session or link
    address: str  # the client's address as the daemon saw it (behind a proxy: the proxy's)
    action: str  # e.g. ticket.ack, silence.add, login
    target: str  # ticket or silence id ("" when none)
    outcome: int  # the HTTP status answered
    detail: str = ""
