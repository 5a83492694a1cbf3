"""Who is on call: teams by skill, rotations, and the escalation chain.

The ticket's skill (from the rule) picks the team, the rotation picks the
person; escalation goes on-call person → team lead → duty manager.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from monitord.config.site import Contact, RosterConfig, TeamConfig


class Roster:
    def __init__(self, config: RosterConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self._by_skill: dict[str, TeamConfig] = {}
        for team in config.teams.values():
            for skill in team.skills:
                self._by_skill.setdefault(skill, team)

    def team(self, skill: str) -> TeamConfig | None:
        return self._by_skill.get(skill)

    def oncall(self, skill: str, at: float) -> Contact | None:
        team = self.team(skill)
        if team is None:
            return None
        for o in self.config.overrides:  # leave and swaps come before the rotation
            start = o.start.replace(tzinfo=o.start.tzinfo or self.tz).timestamp()
            end = o.end.replace(tzinfo=o.end.tzinfo or self.tz).timestamp()
            if self.config.teams.get(o.team) is team and start <= at < end:
                return o.instead
        r = team.rotation
        hour, minute = (int(x) for x in r.handover.split(":"))
        start = dt.datetime.combine(r.start, dt.time(hour, minute), self.tz).timestamp()
        shift = int((at - start) // r.every)
        return team.members[shift % len(team.members)]

    def chain(self, skill: str, at: float) -> list[Contact]:
        """Whom to tell, level by level: on-call person, team lead, duty manager."""
        team = self.team(skill)
        people = [self.oncall(skill, at), team.lead if team else None, self.config.duty_manager]
        out: list[Contact] = []
        for p in people:
            if p is not None and p not in out:
                out.append(p)
        return out
