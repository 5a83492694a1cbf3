"""Fault scenarios: YAML timelines of faults injected into simulated assets.

```yaml
scenario: demo
timeline:
  - {at: 8s, asset: A-P1, fault: dry_run}
  - {at: 40s, asset: A-P1, clear: dry_run}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from monitord.config.site import SiteConfig
from monitord.config.yamlio import load_yaml, problem
from monitord.core.errors import ConfigError
from monitord.core.units import Duration

from .models import MODELS


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    at: Duration
    asset: str
    fault: str | None = None
    clear: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.fault is None) == (self.clear is None):
            raise PydanticCustomError("step", "give exactly one of fault or clear")
        return self

    @property
    def name(self) -> str:
        return self.fault or self.clear or ""


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    scenario: str
    description: str = ""
    timeline: list[Step] = Field(default_factory=list)

    @property
    def duration(self) -> float:
        return max((s.at for s in self.timeline), default=0.0)


def load_scenario(path: Path, site: SiteConfig) -> Scenario:
    raw: Any = load_yaml(path)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([problem(raw, tuple(e["loc"]), e["msg"]) for e in exc.errors()]) from None
    types = {a.id: a.type for a in site.assets}
    problems = []
    for i, step in enumerate(scenario.timeline):
        if step.asset not in types:
            problems.append(problem(raw, ("timeline", i, "asset"), f"unknown asset {step.asset!r}"))
            continue
        model = MODELS.get(types[step.asset])
        if model is None or not model.knows(step.name):
            known = sorted(model.FAULTS | {"offline", "silent"}) if model else []
            key = "fault" if step.fault else "clear"
            problems.append(
                problem(
                    raw,
                    ("timeline", i, key),
                    f"{types[step.asset]} has no fault {step.name!r}; known: {', '.join(known)}",
                )
            )
    if problems:
        raise ConfigError(problems)
    return scenario
