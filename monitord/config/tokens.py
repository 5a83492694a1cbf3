"""The site file's logins, checked across people (config layer, beside ``site``'s cross-checks).

A contact's own token is checked where it is written (``people.roster.Contact``: a real hash, not too
short); here, that no two people share one, nor a person the daemon's ``api.token``: the API could
not tell them apart, and one of them would act and read with the other's role.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from monitord.config.yamlio import problem
from monitord.people.identity import hash_token
from monitord.people.roster import Contact, RosterConfig


def _contacts(roster: RosterConfig) -> Iterator[tuple[tuple[Any, ...], Contact]]:
    """Every contact of the roster with where it is written (a person may appear more than once)."""
    for name, team in roster.teams.items():
        for i, c in enumerate(team.members):
            yield ("roster", "teams", name, "members", i), c
        if team.lead is not None:
            yield ("roster", "teams", name, "lead"), team.lead
    if roster.duty_manager is not None:
        yield ("roster", "duty_manager"), roster.duty_manager
    for i, o in enumerate(roster.overrides):
        yield ("roster", "overrides", i, "instead"), o.instead
    for i, c in enumerate(roster.people):
        yield ("roster", "people", i), c


def token_problems(roster: RosterConfig | None, api_token: str | None, raw: Any) -> list[str]:
    """``file:line key: ...`` for every token another person (or ``api.token``) already holds."""
    holders: dict[str, str] = {hash_token(api_token): "api.token"} if api_token else {}
    out = []
    for loc, c in _contacts(roster) if roster is not None else ():
        if c.token is None:
            continue
        digest = c.token if c.token.startswith("sha256:") else hash_token(c.token)
        first = holders.setdefault(digest, c.name)
        if first != c.name:
            out.append(
                problem(raw, (*loc, "token"), f"{c.name} has the same token as {first}: give each their own")
            )
    return out
