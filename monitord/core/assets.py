"""An asset as every stage sees it: id, type, where it is, what it depends on, its parameters.

The config builds these once (``SiteConfig.domain_assets``); the rule engine,
muting, the pipeline and the people stages take them, never the config schema.
``params`` are already merged: the profile's device facts, then the asset's
own overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Asset:
    id: str
    type: str
    name: str = ""
    location: Mapping[str, str | int] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def where(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.location.items())
