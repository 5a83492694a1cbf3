"""Who is calling: roles, per-person tokens, and the signed tokens for sessions and notification links.

Sits in the people stage beside the roster it reads: every roster ``Contact`` with a ``token`` is an
identity with a ``role``; the daemon's old single ``api.token`` is the ``admin`` identity the CLI uses.
Tokens are compared by their SHA-256 (a contact's token may be given already hashed, ``sha256:<hex>``,
so the config need not hold it in clear). ``Signer`` makes and checks HMAC-signed, expiring tokens:
the console's session cookie and the per-person, per-ticket link each notification carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from monitord.people.logsite import kept
from monitord.people.roster import Contact, RosterConfig

Role = Literal["viewer", "technician", "dispatcher", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "technician", "dispatcher", "admin")

# The least role each change needs. Technicians work tickets; dispatchers also route and stop them
# and mute alerts; admins everything.
NEEDS: dict[str, Role] = {
    "ack": "technician",
    "start": "technician",
    "comment": "technician",
    "resolve": "technician",
    "close": "technician",
    "reopen": "technician",
    "assign": "dispatcher",
    "cancel": "dispatcher",
    "silence": "dispatcher",
    "request": "technician",  # a resident's 报修, taken at the desk or at the door
    "follow_up": "dispatcher",  # 回访 and 投诉 are the duty desk's
    "complain": "dispatcher",
    "complaint_close": "dispatcher",
    # Not a change: a resident's phone in full (a read shows a viewer ``138****5678``). Whoever
    # works a 报修 calls the resident back; a wall screen or a visitor at the desk need not see it.
    "phone": "technician",
}
LINK_ACTIONS = ("ack", "start", "comment", "resolve")  # what a signed link lets its person do


def may(role: Role, action: str) -> bool:
    """Whether ``role`` may do ``action`` (an unknown action needs admin)."""
    return ROLES.index(role) >= ROLES.index(NEEDS.get(action, "admin"))


def hash_token(token: str) -> str:
    """How a token is kept and compared: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    via: str = "token"  # token, session or link: how the caller proved it
    locale: str | None = None  # the person's console language, if they set one


def people(roster: RosterConfig | None) -> list[Contact]:
    """Every contact of the roster once (members, leads, stand-ins, duty manager, other people)."""
    if roster is None:
        return []
    found: dict[str, Contact] = {}
    for team in roster.teams.values():
        for c in (*team.members, team.lead):
            if c is not None:
                found.setdefault(c.name, c)
    for o in roster.overrides:
        found.setdefault(o.instead.name, o.instead)
    for c in (roster.duty_manager, *roster.people):
        if c is not None:
            found.setdefault(c.name, c)
    return list(found.values())


class Identities:
    """Token → identity for the roster's people, plus the ``api.token`` admin (named ``api``)."""

    def __init__(self, contacts: Iterable[Contact], admin_token: str | None) -> None:
        self._by_hash: dict[str, Identity] = {}
        self.roles: dict[str, Role] = {}
        self.locales: dict[str, str | None] = {}
        for c in contacts:
            self.roles[c.name] = c.role
            self.locales[c.name] = c.locale
            if c.token:
                digest = c.token if c.token.startswith("sha256:") else hash_token(c.token)
                self._by_hash[digest] = Identity(c.name, c.role, locale=c.locale)
        if admin_token:
            self._by_hash[hash_token(admin_token)] = Identity("api", "admin")
            self.roles.setdefault("api", "admin")

    @property
    def any(self) -> bool:
        return bool(self._by_hash)

    def by_token(self, token: str) -> Identity | None:
        digest = hash_token(token)
        for known, who in self._by_hash.items():  # constant time per entry: no early-out on a prefix
            if hmac.compare_digest(known, digest):
                return who
        return None

    def named(self, name: str, via: str) -> Identity | None:
        """The identity of a person a signed token names (None: no longer on the roster)."""
        role = self.roles.get(name)
        return None if role is None else Identity(name, role, via, self.locales.get(name))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 over a small JSON claim with an expiry: ``<claim>.<signature>``, URL-safe."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, purpose: str, claims: dict[str, str], expires: float) -> str:
        body = _b64(json.dumps({**claims, "p": purpose, "exp": round(expires)}, sort_keys=True).encode())
        return f"{body}.{self._mac(body)}"

    def verify(self, purpose: str, token: str, now: float) -> dict[str, str] | Literal["expired"] | None:
        """The claims; None when forged, tampered with or for another purpose; "expired" when late."""
        body, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            claims = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(claims, dict) or claims.get("p") != purpose:
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            return "expired"
        return {k: str(v) for k, v in claims.items() if k not in ("p", "exp")}

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())


def site_secret(configured: str | None, log: Path) -> bytes:
    """The configured secret, else one generated once and kept in the notification log database."""
    if configured:
        return configured.encode()
    return kept(log, "site_secret", secrets.token_hex(32)).encode()


def ticket_link(signer: Signer, base_url: str, person: str, ticket: str, now: float, ttl: float) -> str:
    """The page of ``ticket`` for ``person``, signed, valid for ``ttl`` seconds."""
    token = signer.sign("link", {"who": person, "t": ticket}, now + ttl)
    return f"{base_url.rstrip('/')}/console/tickets/{ticket}?link={token}"
