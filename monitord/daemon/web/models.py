"""Request and response bodies of the JSON API: they validate input and generate ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from monitord.alerting.mute import Matcher
from monitord.core.units import Duration


class Body(BaseModel):
    # Unknown keys are refused (422 naming them) so a typo never passes for an empty field.
    model_config = ConfigDict(extra="forbid")


class ActionBody(Body):
    note: str = Field("", max_length=4000)
    assignee: str = Field("", max_length=200, description="for assign: the person's roster name")
    actor: str | None = Field(
        None, description="ignored: the actor recorded is the caller the daemon authenticated"
    )


class SilenceBody(Body):
    matcher: Matcher
    reason: str = Field(min_length=1, max_length=1000)
    expires_in: Duration = Field(description="how long it lasts: seconds or e.g. 2h (at most 30 days)")
    author: str | None = Field(None, description="ignored: the author is the authenticated caller")


class Error(BaseModel):
    error: str


class TicketEventOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    ticket: str
    event: str
    ts: float
    actor: str
    state: str
    note: str = ""


class TicketOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    asset: str
    rule: str
    priority: str
    category: str
    state: str
    summary: str
    assignee: str = ""
    opened_at: float
    events: list[dict[str, Any]] | None = None


class SilenceOut(BaseModel):
    id: str
    matcher: dict[str, Any]
    author: str
    reason: str
    created: float
    expires: float
    active: bool | None = None


class Health(BaseModel):
    status: str
    problems: list[str] = []
    fleet: dict[str, Any] | None = None  # mode, instance, role, shard, shards, leader


class Me(BaseModel):
    name: str
    role: str
    via: str
