"""What an instance of a site's fleet says on the broker, and the one rule that names the HA leader.

Daemon layer, under ``fleet`` (the connection that sends and hears these):
``Presence`` is the retained JSON of ``{topic}/{site}/instances/{instance}``,
``Claim`` the retained JSON of ``{topic}/{site}/leader``, ``should_claim``
the rule every instance applies to the same retained messages, and
``role_words`` the roles as a person reads them (console, ``monitord
fleet``). Pure: no I/O, so the rule is tested on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from monitord.core.i18n import translations

log = logging.getLogger(__name__)

ACTIVE, STANDBY = "active", "standby"


@dataclass(frozen=True)
class Presence:
    """One instance as its retained presence message says (the JSON of ``…/instances/NAME``)."""

    instance: str
    state: str  # "online", or "offline" (its will, or a clean stop)
    mode: str = ""
    role: str = ""
    shard: int = 0
    shards: int = 1
    since: float = 0.0  # when it took this role
    pid: int = 0
    host: str = ""
    api: str = ""

    @property
    def online(self) -> bool:
        return self.state == "online"

    def payload(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def parse(cls, name: str, payload: bytes) -> Presence | None:
        """The presence in ``payload``, or None (logged) when it is not one: a stray publisher on the
        topic must not make an instance look online or offline."""
        try:
            body = json.loads(payload)
            return cls(**{**body, "instance": name}) if isinstance(body, dict) else None
        except (ValueError, TypeError) as exc:
            log.warning("fleet: ignoring presence of %r: %s", name, exc)
            return None


@dataclass(frozen=True)
class Claim:
    """The retained leader claim of an HA site: who holds it, and how many claims came before."""

    instance: str
    epoch: int

    @classmethod
    def parse(cls, payload: bytes) -> Claim | None:
        if not payload:  # an empty retained message clears the topic
            return None
        try:
            body = json.loads(payload)
            return cls(str(body["instance"]), int(body["epoch"]))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("fleet: ignoring leader claim %r: %s", payload[:80], exc)
            return None


def role_words(locale: str) -> dict[str, str]:
    """Roles and states in ``locale`` ("active" is a fleet role here, not a ticket's state)."""
    catalog = translations(locale)
    return {
        "active": catalog.pgettext("fleet", "active"),
        "standby": catalog.pgettext("fleet", "standby"),
        "single": catalog.pgettext("fleet", "single"),
        "shard": catalog.pgettext("fleet", "shard"),
        "online": catalog.pgettext("fleet", "online"),
        "offline": catalog.pgettext("fleet", "offline"),
    }


def should_claim(me: str, online: Iterable[str], claim: Claim | None) -> bool:
    """Whether ``me`` claims the lead now: no claim, or its holder is not online, and ``me`` comes
    first by name among the online instances. The same rule in every instance, fed the same retained
    messages, names the same one."""
    live = sorted({*online, me})
    if claim is not None and claim.instance in live:
        return False
    return live[0] == me
