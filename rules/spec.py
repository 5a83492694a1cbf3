"""What a rule says, as written in YAML; validated with the rest of the config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from monitord.core.units import Duration
from monitord.ingest.profiles import AssetType

Severity = Literal["critical", "major", "minor", "warning", "info"]
Priority = Literal["P1", "P2", "P3", "P4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AppliesTo(_Strict):
    type: AssetType | None = None
    tags: list[str] = []
    ids: list[str] = []


class TicketPolicy(_Strict):
    priority: Priority = "P3"
    skill: str = "general"
    auto_resolve: bool = Field(True, description="resolve the ticket when the alert resolves")


class Flapping(_Strict):
    window: Duration = 600.0
    transitions: int = Field(6, ge=2, le=100)


class RuleSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_.\-]+$")
    applies_to: AppliesTo
    when: str
    for_: Duration = Field(0.0, alias="for")
    clear: str | None = None
    clear_for: Duration = 0.0
    severity: Severity = "major"
    params: dict[str, float] = {}
    labels: dict[str, str] = {}
    summary: str = ""
    description: str = ""
    ticket: TicketPolicy | None = TicketPolicy()
    flapping: Flapping = Flapping()
    root_cause: bool = Field(False, description="explains alerts of assets that depend on this one")
    life_safety: bool = Field(
        False,
        description="a person may be in danger: always its own ticket and page, never inhibited, muted "
        "by a maintenance window or joined to another ticket; silenced only by a silence naming it",
    )
