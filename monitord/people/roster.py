"""Who is on call: teams by skill, rotations, and the escalation chain.

The ticket's skill (from the rule) picks the team, the rotation picks the
person; escalation goes on-call person → team lead → duty manager.
"""

from __future__ import annotations

import datetime
import datetime as dt
import re
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from monitord.core.i18n import Locale
from monitord.core.schema import Strict
from monitord.core.units import Duration

HASHED = re.compile(r"sha256:[0-9a-f]{64}")
MIN_TOKEN = 8  # a person's login: short enough to guess is too short


class SignedRobot(Strict):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = Field(None, description="signing secret (DingTalk, Feishu)")


URL = r"^https?://"


class Contact(Strict):
    """A person and the channels they carry; every channel given is used."""

    name: str
    webhook: str | None = Field(None, pattern=URL, description="JSON POST, schema in docs/notifications.md")
    wecom: str | None = Field(None, pattern=URL, description="企业微信 group robot URL")
    dingtalk: SignedRobot | None = Field(None, description="钉钉 robot, signed when a secret is given")
    feishu: SignedRobot | None = Field(None, description="飞书 robot, signed when a secret is given")
    slack: str | None = Field(None, pattern=URL, description="Slack incoming webhook URL")
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    mqtt: str | None = Field(None, description="topic on the site's broker, e.g. for a duty-room panel")
    console: bool = Field(False, description="print to the daemon's terminal (demo, duty desk)")
    role: Literal["viewer", "technician", "dispatcher", "admin"] = Field(
        "technician", description="what this person may do in the console and API (docs/console.md)"
    )
    token: str | None = Field(
        None, description="this person's API/console login token: ${ENV}, or its hash as sha256:<hex>"
    )
    locale: Locale | None = Field(None, description="zh-CN or en: this person's pages (default: the site's)")

    @field_validator("token")
    @classmethod
    def _token(cls, token: str | None) -> str | None:
        # A token nobody can type (a hash mistyped) or anybody can guess (an empty ${NAME}, "1234")
        # would lock its person out of the console or let others in: both are config errors.
        if token is None:
            return None
        if token.startswith("sha256:") and not HASHED.fullmatch(token):
            text = 'a hashed token is sha256: and 64 hex digits (printf %s "$TOKEN" | sha256sum)'
            raise PydanticCustomError("token", text)
        if not token.startswith("sha256:") and len(token) < MIN_TOKEN:
            text = (
                f"a token needs at least {MIN_TOKEN} characters (an unset ${{NAME}}?): openssl rand -hex 16"
            )
            raise PydanticCustomError("token", text)
        return token

    def channels(self) -> list[tuple[str, str]]:
        """(channel, address) for every channel this person carries."""
        out = []
        for kind in ("webhook", "wecom", "slack", "email", "mqtt"):
            value = getattr(self, kind)
            if value:
                out.append((kind, value))
        for kind in ("dingtalk", "feishu"):
            robot = getattr(self, kind)
            if robot:
                out.append((kind, robot.url + ("#" + robot.secret if robot.secret else "")))
        if self.console:
            out.append(("console", ""))
        return out


class Rotation(Strict):
    every: Duration = 86400.0
    handover: str = Field("08:00", pattern=r"^\d{2}:\d{2}$")
    start: datetime.date = datetime.date(2026, 1, 1)


class TeamConfig(Strict):
    skills: list[str] = Field(min_length=1)
    members: list[Contact] = Field(min_length=1)
    lead: Contact | None = None
    rotation: Rotation = Rotation()


class Override(Strict):
    """Leave or a swap: ``instead`` is on call for ``team`` between ``start`` and ``end``."""

    team: str
    start: datetime.datetime
    end: datetime.datetime
    instead: Contact
    reason: str = ""


class RosterConfig(Strict):
    timezone: str = "UTC"
    teams: dict[str, TeamConfig]
    duty_manager: Contact | None = None
    overrides: list[Override] = []
    people: list[Contact] = Field(
        [], description="console users on no rotation (dispatchers, viewers): never paged by the roster"
    )


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
